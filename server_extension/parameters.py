"""Papermill-style notebook parameters.

A notebook declares its parameters in the first code cell tagged ``parameters``::

    epochs = 10
    lr: float = 1e-3
    model = "resnet18"

A job may override them. The new values are checked against the declared types and
written into a cell tagged ``injected-parameters`` placed right after the parameters
cell, so the kernel runs the defaults first and then the overrides (as papermill does).
"""

from __future__ import annotations

import ast
import copy
import json
import keyword
import math
from dataclasses import dataclass
from typing import Any

import nbformat

PARAMETER_TYPES = ("int", "float", "bool", "str", "list", "dict")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
MAX_PARAMETERS = 100
MAX_PARAMETERS_BYTES = 64 * 1024

# bool comes before int: bool is a subclass of int in Python.
_PYTHON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (list, "list"),
    (dict, "dict"),
)


@dataclass(frozen=True)
class Parameter:
    """One parameter declared in a notebook's ``parameters`` cell."""

    name: str
    type: str
    value: Any


class ParameterError(ValueError):
    """A given parameter is refused; ``name`` is the parameter at fault (None: all of them)."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _parameters_cell_index(nb: nbformat.NotebookNode) -> int | None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in _tags(cell):
            return index
    return None


def _type_of(value: Any) -> str | None:
    for python_type, name in _PYTHON_TYPES:
        if isinstance(value, python_type):
            return name
    return None


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:
        pass
    # IPython magics and shell escapes are not Python; blank them out and try again.
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def declared_parameters(nb: nbformat.NotebookNode) -> list[Parameter]:
    """The literal assignments of the notebook's ``parameters`` cell, in source order.

    Non-literal assignments (``x = f()``) and values of other types (None, tuples...) are
    skipped: they cannot be type-checked. A simple annotation naming one of the six types
    wins over the value's type when the value fits it (``lr: float = 1`` is a float).
    """
    index = _parameters_cell_index(nb)
    if index is None:
        return []
    tree = _parse(nb.cells[index].source)
    if tree is None:
        return []
    found: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value_node, annotation = node.targets, node.value, None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value_node, annotation = [node.target], node.value, node.annotation
        else:
            continue
        try:
            value = ast.literal_eval(value_node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        type_name = _type_of(value)
        if type_name is None:
            continue
        if isinstance(annotation, ast.Name) and annotation.id in PARAMETER_TYPES:
            try:
                value = _coerce(annotation.id, value, "")
                type_name = annotation.id
            except ParameterError:
                pass
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = Parameter(target.id, type_name, value)
    return list(found.values())


def _is_json(value: Any) -> bool:
    """True for values JSON can carry and ``repr`` turns back into the same Python value."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    return False


def _describe(value: Any) -> str:
    type_name = "None" if value is None else _type_of(value) or type(value).__name__
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except ValueError:  # circular, or an int too long to print
        text = "..."
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type_name} {text}"


def _coerce(type_name: str, value: Any, name: str) -> Any:
    """``value`` as the declared type, or ParameterError."""
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "list": isinstance(value, list),
        "dict": isinstance(value, dict),
    }[type_name]
    if not ok:
        raise ParameterError(
            f'parameter "{name}": expected {type_name}, got {_describe(value)}', name
        )
    if type_name == "float":
        try:
            return float(value)
        except OverflowError:
            message = f'parameter "{name}": the number is too large for a float'
            raise ParameterError(message, name) from None
    return value


def check_parameters(declared: list[Parameter], given: dict[str, Any]) -> dict[str, Any]:
    """The values to inject for ``given``, checked against the ``declared`` parameters.

    Declared parameters must keep their type (an int is accepted for a float and
    becomes a float). Undeclared names are allowed, as papermill allows them, but every
    value must be plain JSON data so that its ``repr`` is valid Python.
    """
    if not isinstance(given, dict):
        raise ParameterError(f"parameters must be an object, got {_describe(given)}")
    if len(given) > MAX_PARAMETERS:
        raise ParameterError(f"too many parameters: {len(given)} (at most {MAX_PARAMETERS})")
    types = {parameter.name: parameter.type for parameter in declared}
    values: dict[str, Any] = {}
    for name, value in given.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ParameterError(f"parameter name {name!r} is not a Python identifier", name)
        if name in types:
            value = _coerce(types[name], value, name)
        if not _is_json(value):
            raise ParameterError(
                f'parameter "{name}": {_describe(value)} is not JSON data '
                "(null, booleans, finite numbers, strings, lists, objects with string keys)",
                name,
            )
        values[name] = value
    try:
        size = len(json.dumps(values, ensure_ascii=False).encode())
    except ValueError as error:  # e.g. an int beyond Python's int/str conversion limit
        raise ParameterError(f"parameters cannot be encoded as JSON: {error}") from None
    if size > MAX_PARAMETERS_BYTES:
        raise ParameterError(
            f"parameters are too large: {size} bytes of JSON (at most {MAX_PARAMETERS_BYTES})"
        )
    return values


def _new_cell(nb: nbformat.NotebookNode, cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    # Cell ids exist from nbformat 4.5 on; an older notebook with one would not validate.
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        cell.pop("id", None)
    return cell


def injected_cell(values: dict[str, Any]) -> nbformat.NotebookNode:
    """A code cell tagged ``injected-parameters`` assigning ``values`` (papermill's style)."""
    lines = ["# Parameters", *(f"{name} = {value!r}" for name, value in values.items())]
    return nbformat.v4.new_code_cell("\n".join(lines) + "\n", metadata={"tags": [INJECTED_TAG]})


def inject(nb: nbformat.NotebookNode, values: dict[str, Any]) -> nbformat.NotebookNode:
    """A copy of ``nb`` with ``values`` injected right after its parameters cell (or first).

    An ``injected-parameters`` cell left by an earlier run is replaced, not duplicated.
    """
    nb = copy.deepcopy(nb)
    if not values:
        return nb
    nb.cells = [cell for cell in nb.cells if INJECTED_TAG not in _tags(cell)]
    index = _parameters_cell_index(nb)
    position = 0 if index is None else index + 1
    nb.cells.insert(position, _new_cell(nb, injected_cell(values)))
    return nb

"""Papermill-style parameters: what the parameters cell declares, what a job may pass."""

import math

import nbformat
import pytest

from server_extension.parameters import (
    PARAMETER_TYPES,
    Parameter,
    ParameterError,
    check_parameters,
    declared_parameters,
    inject,
    injected_cell,
)


def notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


PARAMETERS = code(
    "\n".join(
        [
            "import os",
            "epochs = 10",
            "lr = 0.001",
            "verbose = True",
            "model = 'resnet18'",
            "layers = [64, 128]",
            "options = {'seed': 1}",
            "scale: float = 1",
            "count: int = 3",
            "path = None  # not one of the six types",
            "shape = (3, 224)  # a tuple",
            "home = os.environ['HOME']  # not a literal",
            "x = y = 5",
        ]
    ),
    "parameters",
)


def test_parameters_cell_is_parsed_with_types() -> None:
    nb = notebook(code("seed = 99"), PARAMETERS, code("epochs = 1", "parameters"))
    assert declared_parameters(nb) == [
        Parameter("epochs", "int", 10),
        Parameter("lr", "float", 0.001),
        Parameter("verbose", "bool", True),
        Parameter("model", "str", "resnet18"),
        Parameter("layers", "list", [64, 128]),
        Parameter("options", "dict", {"seed": 1}),
        Parameter("scale", "float", 1.0),
        Parameter("count", "int", 3),
        Parameter("x", "int", 5),
        Parameter("y", "int", 5),
    ]
    assert {p.type for p in declared_parameters(nb)} <= set(PARAMETER_TYPES)


def test_no_parameters_cell_declares_nothing() -> None:
    assert declared_parameters(notebook(code("epochs = 10"))) == []
    assert declared_parameters(notebook()) == []


def test_magics_in_the_parameters_cell_are_tolerated() -> None:
    nb = notebook(code("%matplotlib inline\n!nvidia-smi\nepochs = 3", "parameters"))
    assert declared_parameters(nb) == [Parameter("epochs", "int", 3)]


def test_unparsable_parameters_cell_declares_nothing() -> None:
    assert declared_parameters(notebook(code("epochs = (", "parameters"))) == []


DECLARED = declared_parameters(notebook(PARAMETERS))


def test_values_of_the_declared_types_are_accepted() -> None:
    given = {"epochs": 20, "lr": 1, "verbose": False, "layers": [], "options": {"a": [1]}}
    values = check_parameters(DECLARED, given)
    assert values == given
    assert isinstance(values["lr"], float)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"epochs": "ten"}, 'parameter "epochs": expected int, got str "ten"'),
        ({"epochs": True}, 'parameter "epochs": expected int, got bool true'),
        ({"epochs": 2.5}, 'parameter "epochs": expected int, got float 2.5'),
        ({"lr": "fast"}, 'parameter "lr": expected float, got str "fast"'),
        ({"verbose": 1}, 'parameter "verbose": expected bool, got int 1'),
        ({"model": None}, 'parameter "model": expected str, got None null'),
        ({"layers": {"a": 1}}, 'parameter "layers": expected list, got dict {"a": 1}'),
        ({"options": [1]}, 'parameter "options": expected dict, got list [1]'),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_parameter(
    given: dict, message: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        check_parameters(DECLARED, given)
    assert str(caught.value) == message
    assert caught.value.name == next(iter(given))


def test_undeclared_parameters_are_allowed_if_json() -> None:
    given = {"extra": {"nested": [1, 2.5, None, True, "s"]}, "other": None}
    assert check_parameters(DECLARED, given) == given


@pytest.mark.parametrize(
    "value", [{1, 2}, math.nan, math.inf, (1, 2), {1: "a"}, [object()], b"bytes"]
)
def test_values_that_are_not_json_are_refused(value: object) -> None:
    with pytest.raises(ParameterError) as caught:
        check_parameters(DECLARED, {"extra": value})
    assert caught.value.name == "extra"


@pytest.mark.parametrize("name", ["1st", "has space", "class", "a-b", ""])
def test_names_must_be_python_identifiers(name: str) -> None:
    with pytest.raises(ParameterError) as caught:
        check_parameters(DECLARED, {name: 1})
    assert caught.value.name == name


def test_number_and_size_of_parameters_are_limited() -> None:
    assert len(check_parameters([], {f"p{i}": i for i in range(100)})) == 100
    with pytest.raises(ParameterError) as caught:
        check_parameters([], {f"p{i}": i for i in range(101)})
    assert caught.value.name is None
    with pytest.raises(ParameterError, match="too large") as caught:
        check_parameters([], {"text": "x" * 70_000})
    assert caught.value.name is None


def test_injected_cell_round_trips_values() -> None:
    values = {"a": True, "b": None, "c": 0.1, "d": "it's", "e": [1, {"k": False}], "f": 10**20}
    cell = injected_cell(values)
    assert cell.cell_type == "code"
    assert cell.metadata.tags == ["injected-parameters"]
    assert cell.source.splitlines()[0] == "# Parameters"
    assert cell.source.splitlines()[1] == "a = True"
    namespace: dict = {}
    exec(cell.source, namespace)
    assert {k: namespace[k] for k in values} == values


def test_injected_cell_goes_right_after_the_parameters_cell() -> None:
    nb = notebook(code("import x"), PARAMETERS, code("print(epochs)"))
    out = inject(nb, {"epochs": 3})
    assert [c.metadata.get("tags") for c in out.cells] == [
        None,
        ["parameters"],
        ["injected-parameters"],
        None,
    ]
    assert out.cells[2].source == "# Parameters\nepochs = 3\n"
    assert len(nb.cells) == 3, "the original notebook is left alone"
    nbformat.validate(out)


def test_injected_cell_goes_first_without_a_parameters_cell() -> None:
    out = inject(notebook(code("print(epochs)")), {"epochs": 3})
    assert out.cells[0].metadata.tags == ["injected-parameters"]
    assert len(out.cells) == 2


def test_an_earlier_injected_cell_is_replaced() -> None:
    once = inject(notebook(PARAMETERS, code("print(epochs)")), {"epochs": 3})
    twice = inject(once, {"epochs": 4})
    injected = [c for c in twice.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert [c.source for c in injected] == ["# Parameters\nepochs = 4\n"]
    assert twice.cells.index(injected[0]) == 1


def test_no_values_leave_a_copy_unchanged() -> None:
    nb = notebook(PARAMETERS)
    out = inject(nb, {})
    assert out == nb
    assert out is not nb


def test_older_notebooks_without_cell_ids_stay_valid() -> None:
    nb = notebook(PARAMETERS)
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    nbformat.validate(inject(nb, {"epochs": 3}))

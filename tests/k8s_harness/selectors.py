"""Label and field selectors with the grammar and errors of k8s.io/apimachinery."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .common import get_path
from .errors import ApiError, bad_request
from .names import label_key_errors, label_value_errors

_SPECIAL = set(" \t\n,()=!<>")


@dataclass(frozen=True)
class Requirement:
    """One label requirement such as ``tier in (a,b)``."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """Evaluate against a label map."""
        has = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if not has:
            return False
        try:
            number = int(value)  # type: ignore[arg-type]
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.op == "gt" else number < bound


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str] | None) -> bool:
        """Whether every requirement holds."""
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\n":
            i += 1
        elif text.startswith(("==", "!="), i):
            tokens.append(text[i : i + 2])
            i += 2
        elif ch in ",()=!<>":
            tokens.append(ch)
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in _SPECIAL:
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def _fail(detail: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {detail}")


def _check_key(key: str) -> None:
    errs = label_key_errors(key)
    if errs:
        raise _fail(f'invalid label key "{key}": {"; ".join(errs)}')


def _check_value(value: str) -> None:
    errs = label_value_errors(value)
    if errs:
        raise _fail(f'values[0][]: Invalid value: "{value}": {"; ".join(errs)}')


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a ``labelSelector`` query value (raises 400 BadRequest like the server)."""
    if not text or not text.strip():
        return LabelSelector()
    tokens = _tokenize(text)
    reqs: list[Requirement] = []
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    while pos < len(tokens):
        negate = False
        if peek() == "!":
            negate = True
            pos += 1
        key = peek()
        if key is None or key in ",()=!<>" or key in ("==", "!="):
            raise _fail(f"found '{key or ''}', expected: identifier")
        pos += 1
        _check_key(key)
        op_tok = peek()
        if negate:
            if op_tok not in (None, ","):
                raise _fail(f"found '{op_tok}', expected: ',' or 'end of string'")
            reqs.append(Requirement(key, "!"))
        elif op_tok in (None, ","):
            reqs.append(Requirement(key, "exists"))
        elif op_tok in ("=", "==", "!="):
            pos += 1
            value = peek()
            if value is None or value == ",":
                value = ""
            elif value in "()=!<>" or value in ("==", "!="):
                raise _fail(f"found '{value}', expected: identifier")
            else:
                pos += 1
            _check_value(value)
            reqs.append(Requirement(key, "!=" if op_tok == "!=" else "=", (value,)))
        elif op_tok in ("in", "notin"):
            pos += 1
            if peek() != "(":
                raise _fail(f"found '{peek() or ''}', expected: '('")
            pos += 1
            values: list[str] = []
            while True:
                tok = peek()
                if tok is None:
                    raise _fail("found '', expected: ',', ')' or identifier")
                if tok == ")":
                    pos += 1
                    break
                if tok == ",":
                    pos += 1
                    if peek() in (",", ")"):
                        values.append("")
                    continue
                if tok in "()=!<>" or tok in ("==", "!="):
                    raise _fail(f"found '{tok}', expected: ',', ')' or identifier")
                values.append(tok)
                pos += 1
            if not values:
                raise _fail("for 'in', 'notin' operators, values set can't be empty")
            for value in values:
                _check_value(value)
            reqs.append(Requirement(key, op_tok, tuple(values)))
        elif op_tok in ("<", ">"):
            pos += 1
            value = peek() or ""
            pos += 1
            if not re.fullmatch(r"-?[0-9]+", value):
                raise _fail(
                    f"for 'Gt', 'Lt' operators, the value must be an integer, got {value!r}"
                )
            reqs.append(Requirement(key, "gt" if op_tok == ">" else "lt", (value,)))
        else:
            raise _fail(f"found '{op_tok}', expected: '=', '!=', '==', 'in', notin'")
        if peek() is not None:
            if peek() != ",":
                raise _fail(f"found '{peek()}', expected: ',' or 'end of string'")
            pos += 1
            if peek() is None:
                raise _fail("found '', expected: identifier")
    return LabelSelector(tuple(reqs))


def selector_from_match(match: dict | None) -> LabelSelector:
    """Build a selector from a metav1.LabelSelector (matchLabels + matchExpressions)."""
    if not match:
        return LabelSelector()
    reqs = [Requirement(k, "=", (v,)) for k, v in (match.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in match.get("matchExpressions") or []:
        reqs.append(
            Requirement(expr["key"], ops[expr["operator"]], tuple(expr.get("values") or ()))
        )
    return LabelSelector(tuple(reqs))


# --- field selectors -----------------------------------------------------------------------


def _bool(value: object) -> str:
    return "true" if value else "false"


def _str(*path: str) -> Callable[[dict], str]:
    return lambda obj: str(get_path(obj, *path, default="") or "")


_COMMON_FIELDS: dict[str, Callable[[dict], str]] = {
    "metadata.name": _str("metadata", "name"),
    "metadata.namespace": _str("metadata", "namespace"),
}
# Per-resource selectable fields, as registered by each API server strategy.
_FIELDS: dict[str, dict[str, Callable[[dict], str]]] = {
    "pods": {
        "spec.nodeName": _str("spec", "nodeName"),
        "spec.restartPolicy": _str("spec", "restartPolicy"),
        "spec.schedulerName": _str("spec", "schedulerName"),
        "spec.serviceAccountName": _str("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: _bool(get_path(o, "spec", "hostNetwork")),
        "status.phase": _str("status", "phase"),
        "status.podIP": _str("status", "podIP"),
        "status.nominatedNodeName": _str("status", "nominatedNodeName"),
    },
    "events": {
        "involvedObject.kind": _str("involvedObject", "kind"),
        "involvedObject.namespace": _str("involvedObject", "namespace"),
        "involvedObject.name": _str("involvedObject", "name"),
        "involvedObject.uid": _str("involvedObject", "uid"),
        "involvedObject.apiVersion": _str("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _str("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _str("involvedObject", "fieldPath"),
        "reason": _str("reason"),
        "reportingComponent": _str("reportingComponent"),
        "source": _str("source", "component"),
        "type": _str("type"),
    },
    "secrets": {"type": _str("type")},
    "namespaces": {"status.phase": _str("status", "phase")},
    "nodes": {"spec.unschedulable": lambda o: _bool(get_path(o, "spec", "unschedulable"))},
    "jobs": {"status.successful": lambda o: str(get_path(o, "status", "succeeded", default=0))},
}


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of ``field=value`` / ``field!=value`` terms."""

    terms: tuple[tuple[str, str, str], ...] = ()
    getters: tuple[Callable[[dict], str], ...] = ()

    def matches(self, obj: dict) -> bool:
        """Whether the object satisfies every term."""
        for (_, op, value), getter in zip(self.terms, self.getters, strict=True):
            actual = getter(obj)
            if (actual == value) != (op == "="):
                return False
        return True


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if text[i] == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    return parts


def _unescape(value: str) -> str:
    out, i = "", 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence in {value!r}")
            out += value[i + 1]
            i += 2
        else:
            out += value[i]
            i += 1
    return out


def parse_field_selector(text: str | None, plural: str) -> FieldSelector:
    """Parse a ``fieldSelector`` for a resource; unknown fields are a 400 like the server's."""
    if not text or not text.strip():
        return FieldSelector()
    supported = {**_COMMON_FIELDS, **_FIELDS.get(plural, {})}
    terms, getters = [], []
    for part in _split_unescaped(text, ","):
        if not part:
            continue
        parsed = None
        for op_text, op_name in (("!=", "!="), ("==", "="), ("=", "=")):
            idx = part.find(op_text)
            if idx > 0:
                parsed = (part[:idx].strip(), op_name, _unescape(part[idx + len(op_text) :]))
                break
        if parsed is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = parsed
        if field not in supported:
            raise bad_request(f"field label not supported: {field}")
        terms.append((field, op, value))
        getters.append(supported[field])
    return FieldSelector(tuple(terms), tuple(getters))

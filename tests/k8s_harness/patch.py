"""PATCH bodies: JSON merge patch, JSON patch and strategic merge patch.

Strategic merge patch follows the ``x-kubernetes-patch-strategy`` / ``-merge-key`` extensions of
the official schema: lists with strategy ``merge`` and a merge key (containers, env, volumes,
volumeMounts, ports, conditions, ...) are merged item by item; ``merge`` lists of scalars
(finalizers) are unioned; every other list is replaced. Maps merge recursively and ``null``
deletes a key. Directives supported: ``$patch: replace`` and ``$patch: delete`` (on maps and on
list items), ``$retainKeys``, ``$deleteFromPrimitiveList/<field>``; ``$setElementOrder/<field>``
is accepted and ignored (item order after a merge is: existing items, then new ones).
"""

from __future__ import annotations

from typing import Any

from .common import deep_copy
from .errors import ApiError, bad_request
from .schema import SchemaNav, schema_nav

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return deep_copy(patch)
    result = deep_copy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 --------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _unprocessable(f'invalid JSON pointer "{path}"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _parent(doc: Any, tokens: list[str], op: str, path: str) -> tuple[Any, str]:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            raise _unprocessable(f"{op} operation does not apply: doc is missing path: {path}")
    return cur, tokens[-1]


def _get(doc: Any, path: str, op: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, op, path)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _unprocessable(f"{op} operation does not apply: doc is missing path: {path}")


def _remove(doc: Any, path: str, op: str) -> Any:
    tokens = _pointer(path)
    parent, last = _parent(doc, tokens, op, path)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _unprocessable(f"{op} operation does not apply: doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any, op: str, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, op, path)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise _unprocessable(f"{op} operation does not apply: doc is missing key: {path}")
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = value
            else:
                parent.insert(int(last), value)
        else:
            raise _unprocessable(f"{op} operation does not apply: index out of range: {path}")
    else:
        raise _unprocessable(f"{op} operation does not apply: doc is missing path: {path}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = deep_copy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation:
            raise bad_request("invalid JSON patch operation: missing 'op'")
        op, path = operation["op"], operation.get("path")
        if not isinstance(path, str):
            raise _unprocessable(f"{op} operation does not apply: missing path")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise _unprocessable(f"{op} operation does not apply: missing value")
        if op == "add":
            doc = _add(doc, path, deep_copy(operation["value"]), op)
        elif op == "replace":
            doc = _add(doc, path, deep_copy(operation["value"]), op, replace=True)
        elif op == "remove":
            _remove(doc, path, op)
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise _unprocessable(f"{op} operation does not apply: missing from")
            value = _remove(doc, source, op) if op == "move" else deep_copy(_get(doc, source, op))
            doc = _add(doc, path, value, op)
        elif op == "test":
            if _get(doc, path, op) != operation["value"]:
                raise _unprocessable(f"testing value {path} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {op}")
    return doc


# --- strategic merge patch ---------------------------------------------------------------------


def _strip(value: Any) -> Any:
    """Remove patch directives from a value that is inserted as a whole."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
    return value


def _smp_map(nav: SchemaNav, original: dict, patch: dict, schema: dict | None) -> dict | None:
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    if directive is not None:
        raise bad_request(f"Unknown patch type: {directive}")
    result = deep_copy(original)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = nav.child(schema, key)
        current = result.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged = _smp_map(nav, current, value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and isinstance(current, list):
            result[key] = _smp_list(nav, current, value, sub)
        elif isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        else:
            result[key] = _strip(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(nav: SchemaNav, original: list, patch: list, schema: dict | None) -> list:
    strategy = (schema or {}).get("x-kubernetes-patch-strategy", "")
    merge_key = (schema or {}).get("x-kubernetes-patch-merge-key")
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return _strip([i for i in patch if not (isinstance(i, dict) and "$patch" in i)])
    if "merge" not in strategy.split(","):
        return _strip(patch)
    if not merge_key:
        result = deep_copy(original)
        for item in patch:
            if item not in result:
                result.append(deep_copy(item))
        return result
    item_schema = nav.items(schema)
    result = deep_copy(original)
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"strategic merge patch: list item {item!r} is not a map")
        if merge_key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {merge_key}")
        index = next(
            (i for i, cur in enumerate(result) if cur.get(merge_key) == item[merge_key]), None
        )
        if item.get("$patch") == "delete":
            result = [cur for cur in result if cur.get(merge_key) != item[merge_key]]
        elif index is None:
            result.append(_strip(item))
        else:
            merged = _smp_map(nav, result[index], item, item_schema)
            if merged is None:
                result.pop(index)
            else:
                result[index] = merged
    return result


def strategic_merge_patch(target: dict, patch: Any, api_version: str, kind: str) -> dict:
    """Strategic merge patch guided by the official schema of ``kind``."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch: the patch must be a JSON object")
    nav = schema_nav()
    merged = _smp_map(nav, target, patch, nav.for_kind(api_version, kind))
    return merged if merged is not None else {}


def apply_patch(target: dict, patch: Any, content_type: str, api_version: str, kind: str) -> dict:
    """Apply a parsed PATCH body of the given content type."""
    if content_type == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise bad_request("merge patch: the patch must be a JSON object")
        return merge_patch(target, patch)
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    if content_type == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch, api_version, kind)
    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")

"""The official OpenAPI schemas (from kubernetes-validate): object validation and navigation."""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

import kubernetes_validate
from kubernetes_validate import utils as kv_utils

from .common import K8S_VERSION
from .errors import FieldError, invalid

# kubernetes_validate.validate re-reads and re-parses its schema files (the definitions file is
# about 1.5 MB) on every call: ~15 ms. The reader is a pure function of (file, version), so
# memoising it keeps validate()'s behaviour exactly and makes each call ~1 ms.
if not hasattr(kv_utils.schema_contents, "cache_info"):
    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)

_UNEXPECTED_RE = re.compile(r"\('([^']+)' was unexpected\)|\(('[^)]+') were unexpected\)")


def field_path(path: list[Any] | tuple[Any, ...]) -> str:
    """Render a JSON path as Kubernetes field paths are written (``spec.containers[0].image``)."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out or "<root>"


def schema_error(obj: dict) -> FieldError | None:
    """Validate with ``kubernetes_validate.validate(obj, K8S_VERSION, strict=True)``.

    Returns the first error as a field error (``None`` when the object is valid). Unknown fields
    are named individually so the message points at the culprit.
    """
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = list(exc.path)
        if exc.validator == "additionalProperties":
            m = _UNEXPECTED_RE.search(exc.message)
            names = re.findall(r"'([^']+)'", m.group(0)) if m else []
            if names:
                bad = names[0]
                value = exc.instance.get(bad) if isinstance(exc.instance, dict) else None
                return invalid(
                    field_path([*path, bad]),
                    value,
                    f"field not declared in schema ({exc.message})",
                )
        return invalid(field_path(path), exc.instance, exc.message)
    except kubernetes_validate.utils.SchemaNotFoundError as exc:
        return invalid("kind", obj.get("kind"), exc.message)
    return None


class SchemaNav:
    """Walks the bundled schema definitions (for strategic-merge-patch list strategies)."""

    def __init__(self) -> None:
        # The same schema directory kubernetes_validate.validate uses for K8S_VERSION.
        version = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) <= K8S_VERSION][-1]
        defs = kv_utils.schema_contents(
            f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", K8S_VERSION
        )
        self.defs: dict[str, dict] = defs["$defs"]
        self._by_kind: dict[tuple[str, str, str], str] = {}
        for name, node in self.defs.items():
            for gvk in node.get("x-kubernetes-group-version-kind", []):
                self._by_kind.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)

    def for_kind(self, api_version: str, kind: str) -> dict | None:
        """The root schema of a kind, e.g. ``("v1", "Pod")``."""
        group, _, version = api_version.rpartition("/")
        name = self._by_kind.get((group, version, kind))
        return self.defs[name] if name else None

    def resolve(self, node: dict | None) -> dict | None:
        """Follow ``$ref`` links."""
        seen = 0
        while node is not None and "$ref" in node and seen < 50:
            node = self.defs.get(node["$ref"].rsplit("/", 1)[-1])
            seen += 1
        return node

    def child(self, node: dict | None, key: str) -> dict | None:
        """The (unresolved) schema of property ``key`` of an object schema."""
        node = self.resolve(node)
        if not node:
            return None
        props = node.get("properties") or {}
        if key in props:
            return props[key]
        extra = node.get("additionalProperties")
        return extra if isinstance(extra, dict) else None

    def items(self, node: dict | None) -> dict | None:
        """The item schema of an array schema."""
        node = self.resolve(node)
        return node.get("items") if node else None


@functools.lru_cache(maxsize=1)
def schema_nav() -> SchemaNav:
    """The shared navigator (the definitions file is large; load it once)."""
    return SchemaNav()


_TIME_REFS = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": "%Y-%m-%dT%H:%M:%SZ",
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": "%Y-%m-%dT%H:%M:%S.%fZ",
}


def _time_format(node: dict | None) -> str | None:
    ref = (node or {}).get("$ref", "")
    return _TIME_REFS.get(ref.rsplit("/", 1)[-1])


def normalize_times(obj: dict, api_version: str, kind: str) -> dict:
    """Re-serialise every metav1.Time/MicroTime like the server does (UTC, ``Z``; Time has
    seconds precision), so ``+00:00`` from Python clients compares equal to what was stored.
    Raises ValueError for unparsable times."""
    nav = schema_nav()

    def walk(value: Any, node: dict | None) -> Any:
        fmt = _time_format(node)
        if fmt and isinstance(value, str):
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.timezone.utc)
            return parsed.astimezone(dt.timezone.utc).strftime(fmt)
        if isinstance(value, dict):
            return {k: walk(v, nav.child(node, k)) for k, v in value.items()}
        if isinstance(value, list):
            items = nav.items(node)
            return [walk(v, items) for v in value]
        return value

    return walk(obj, nav.for_kind(api_version, kind))

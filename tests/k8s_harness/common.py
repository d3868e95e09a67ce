"""Shared helpers: the pinned Kubernetes version, timestamps, copies and name suffixes."""

from __future__ import annotations

import copy
import datetime as dt
import random
from typing import Any

# The harness pretends to be this Kubernetes release; schemas come from kubernetes-validate.
K8S_VERSION = "1.33"
K8S_GIT_VERSION = "v1.33.0"

# The alphabet the API server uses for generateName suffixes (no vowels, no confusables).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# generateName prefixes are cut so that prefix + 5 random chars fit a 63-char label.
MAX_GENERATE_NAME_PREFIX = 58


def utcnow() -> dt.datetime:
    """Return the current time in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def rfc3339(when: dt.datetime | None = None) -> str:
    """Format a time the way metav1.Time serialises (seconds precision, Z suffix)."""
    when = when or utcnow()
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_nano(when: dt.datetime | None = None) -> str:
    """Format a time with fractional seconds, as kubelet log timestamps are."""
    when = when or utcnow()
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp written by :func:`rfc3339`."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def deep_copy(obj: Any) -> Any:
    """Deep-copy a JSON-like value (objects handed out must never alias the store)."""
    return copy.deepcopy(obj)


def prune_nulls(value: Any) -> Any:
    """Drop ``null`` members recursively, as decoding into Go structs does."""
    if isinstance(value, dict):
        return {k: prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune_nulls(v) for v in value]
    return value


def random_suffix(rng: random.Random, length: int = 5) -> str:
    """Return a random name suffix like the API server's generateName does."""
    return "".join(rng.choice(_SUFFIX_ALPHABET) for _ in range(length))


def get_path(obj: Any, *path: str | int, default: Any = None) -> Any:
    """Read a nested value, returning ``default`` when any step is missing."""
    cur = obj
    for step in path:
        if isinstance(step, int):
            if not isinstance(cur, list) or step >= len(cur):
                return default
        elif not isinstance(cur, dict) or step not in cur:
            return default
        cur = cur[step]
    return cur


def meta(obj: dict) -> dict:
    """Return (creating if needed) the metadata map of an object."""
    return obj.setdefault("metadata", {})


def set_condition(
    obj: dict,
    type_: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
    *,
    probe_time: bool = False,
) -> bool:
    """Insert or update ``status.conditions[type]``; lastTransitionTime (and lastProbeTime when
    asked for) move only when the status changes. Returns whether the status changed."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    cond = next((c for c in conditions if c.get("type") == type_), None)
    if cond is None:
        cond = {"type": type_}
        conditions.append(cond)
    changed = cond.get("status") != status
    now = rfc3339()
    if changed:
        cond["lastTransitionTime"] = now
        if probe_time:
            cond["lastProbeTime"] = now
    cond["status"] = status
    for key, value in (("reason", reason), ("message", message)):
        if value:
            cond[key] = value
        else:
            cond.pop(key, None)
    return changed


def get_condition(obj: dict, type_: str) -> dict | None:
    """The condition of a type, if present."""
    for cond in get_path(obj, "status", "conditions", default=[]) or []:
        if cond.get("type") == type_:
            return cond
    return None

"""Small helpers the process kubelet shares: timestamps, nested reads, conditions."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def rfc3339(when: dt.datetime | None = None) -> str:
    """A time as metav1.Time serialises it (seconds, Z suffix)."""
    return (when or utcnow()).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(when: dt.datetime | None = None) -> str:
    """A time as metav1.MicroTime serialises it (Lease renewTime); log lines carry it too."""
    return (when or utcnow()).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def deep_copy(obj: Any) -> Any:
    return copy.deepcopy(obj)


def get_path(obj: Any, *path: str | int, default: Any = None) -> Any:
    """A nested value, or ``default`` when any step is missing."""
    cur = obj
    for step in path:
        if isinstance(step, int):
            if not isinstance(cur, list) or step >= len(cur):
                return default
        elif not isinstance(cur, dict) or step not in cur:
            return default
        cur = cur[step]
    return cur


def set_condition(
    obj: dict, type_: str, status: str, reason: str | None = None, message: str | None = None
) -> None:
    """Insert or update ``status.conditions[type]``; lastTransitionTime moves on changes only."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    cond = next((c for c in conditions if c.get("type") == type_), None)
    if cond is None:
        cond = {"type": type_}
        conditions.append(cond)
    if cond.get("status") != status:
        cond["lastTransitionTime"] = rfc3339()
    cond["status"] = status
    for key, value in (("reason", reason), ("message", message)):
        if value:
            cond[key] = value
        else:
            cond.pop(key, None)

"""Turning store events into the watch events one client (with its selectors) should see."""

from __future__ import annotations

from .resources import ResourceType
from .selectors import FieldSelector, LabelSelector
from .store import StoreEvent


class WatchFilter:
    """Applies label/field selectors with the API server's transition rules: an object that
    starts matching is ADDED, one that stops matching is DELETED."""

    def __init__(self, rt: ResourceType, labels: LabelSelector, fields: FieldSelector) -> None:
        self.rt = rt
        self.labels = labels
        self.fields = fields

    def _matches(self, obj: dict | None) -> bool:
        if obj is None:
            return False
        return self.labels.matches(obj["metadata"].get("labels")) and self.fields.matches(obj)

    def apply(self, ev: StoreEvent) -> dict | None:
        """The watch event to send for a store event, or None."""
        new_ok = self._matches(ev.obj)
        if ev.type == "ADDED":
            kind = "ADDED" if new_ok else None
        elif ev.type == "DELETED":
            kind = "DELETED" if new_ok else None
        else:
            old_ok = self._matches(ev.prev)
            kind = {
                (True, True): "MODIFIED",
                (False, True): "ADDED",
                (True, False): "DELETED",
            }.get((old_ok, new_ok))
        if kind is None:
            return None
        return {"type": kind, "object": ev.obj}

    def bookmark(self, rv: int, initial_events_end: bool = False) -> dict:
        """A BOOKMARK event carrying only a resourceVersion."""
        md: dict = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_events_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": md},
        }

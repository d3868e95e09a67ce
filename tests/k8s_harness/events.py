"""core/v1 Events as the scheduler, kubelet and controllers record them (with aggregation)."""

from __future__ import annotations

import random
import threading

from .common import rfc3339
from .errors import ApiError
from .registry import Registry
from .resources import resolve

_EVENTS = resolve("events")


class EventRecorder:
    """Creates Events; a repeat of the same event bumps ``count`` like client-go's recorder."""

    def __init__(self, registry: Registry, rng: random.Random) -> None:
        self.registry = registry
        self.rng = rng
        self._lock = threading.Lock()
        self._seen: dict[tuple, tuple[str, str]] = {}

    def record(
        self,
        involved: dict,
        type_: str,
        reason: str,
        message: str,
        component: str,
        host: str | None = None,
        field_path: str | None = None,
    ) -> None:
        """Record an event about ``involved`` (any stored object)."""
        md = involved["metadata"]
        namespace = md.get("namespace") or "default"
        key = (md.get("uid"), type_, reason, message, component, field_path)
        now = rfc3339()
        with self._lock:
            prior = self._seen.get(key)
            if prior is not None:

                def bump(ev: dict) -> None:
                    ev["count"] = ev.get("count", 1) + 1
                    ev["lastTimestamp"] = now

                if self.registry.mutate(_EVENTS, prior[0], prior[1], bump, subresource=None):
                    return
            ref = {
                "kind": involved.get("kind"),
                "namespace": md.get("namespace"),
                "name": md["name"],
                "uid": md.get("uid"),
                "apiVersion": involved.get("apiVersion"),
                "resourceVersion": md.get("resourceVersion"),
            }
            if field_path:
                ref["fieldPath"] = field_path
            source = {"component": component}
            if host:
                source["host"] = host
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": f"{md['name']}.{self.rng.getrandbits(64):016x}",
                    "namespace": namespace,
                },
                "involvedObject": {k: v for k, v in ref.items() if v},
                "reason": reason,
                "message": message,
                "source": source,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": type_,
                "reportingComponent": component,
                "reportingInstance": host or "",
            }
            try:
                created = self.registry.create(_EVENTS, namespace, event)
            except ApiError:
                return  # e.g. the namespace is terminating; the real recorder drops these too
            self._seen[key] = (namespace, created["metadata"]["name"])

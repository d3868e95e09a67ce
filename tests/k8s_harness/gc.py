"""Background controllers for object lifecycles: garbage collection (ownerReferences and
foreground deletion), namespace termination, and PVC binding/protection."""

from __future__ import annotations

import contextlib
import logging

from .common import get_path
from .errors import ApiError
from .registry import DeleteOptions, Registry
from .resources import resolve
from .store import Store, StoreEvent

log = logging.getLogger(__name__)
_PVC_PROTECTION = "kubernetes.io/pvc-protection"


class LifecycleController:
    """One loop that reacts to store changes with a (cheap) sweep over all objects."""

    def __init__(self, registry: Registry, store: Store) -> None:
        self.registry = registry
        self.store = store

    @staticmethod
    def _relevant(ev: StoreEvent) -> bool:
        if ev.plural == "events":
            return False
        md = ev.obj["metadata"]
        return (
            ev.type == "DELETED"
            or bool(md.get("deletionTimestamp"))
            or ev.plural == "persistentvolumeclaims"
            or (ev.type == "ADDED" and bool(md.get("ownerReferences")))
        )

    async def run(self) -> None:
        """Sweep after every burst of relevant changes, until cancelled."""
        sub = self.store.subscribe(None)
        try:
            while True:
                events = [await sub.queue.get()]
                while not sub.queue.empty():
                    events.append(sub.queue.get_nowait())
                if any(self._relevant(ev) for ev in events):
                    try:
                        self.sweep()
                    except Exception:  # keep the controller alive; tests see the log
                        log.exception("lifecycle sweep failed")
        finally:
            sub.close()

    def _delete(self, plural: str, obj: dict) -> None:
        md = obj["metadata"]
        # Already gone or being deleted by someone else is fine.
        with contextlib.suppress(ApiError):
            self.registry.delete(
                resolve(plural), md.get("namespace", ""), md["name"], DeleteOptions()
            )

    def sweep(self) -> None:
        """Converge every object once."""
        objects = list(self.store.all_objects())
        uids = {o["metadata"].get("uid") for _, o in objects}
        dependents: dict[str, list[tuple[str, dict]]] = {}
        for plural, obj in objects:
            refs = obj["metadata"].get("ownerReferences") or []
            for ref in refs:
                dependents.setdefault(ref.get("uid"), []).append((plural, obj))
            deleting = bool(obj["metadata"].get("deletionTimestamp"))
            if refs and not deleting and not any(r.get("uid") in uids for r in refs):
                self._delete(plural, obj)
        for plural, obj in objects:
            md = obj["metadata"]
            if not md.get("deletionTimestamp"):
                if (
                    plural == "persistentvolumeclaims"
                    and get_path(obj, "status", "phase") == "Pending"
                ):
                    self._bind_pvc(obj)
                continue
            if "foregroundDeletion" in (md.get("finalizers") or []):
                self._foreground(plural, obj, dependents.get(md.get("uid"), []))
            if plural == "namespaces":
                self._terminate_namespace(obj, objects)
            if plural == "persistentvolumeclaims":
                self._release_pvc(obj, objects)

    def _remove_finalizer(self, plural: str, obj: dict, finalizer: str) -> None:
        md = obj["metadata"]

        def drop(o: dict) -> None:
            fins = [f for f in o["metadata"].get("finalizers") or [] if f != finalizer]
            if fins:
                o["metadata"]["finalizers"] = fins
            else:
                o["metadata"].pop("finalizers", None)

        self.registry.mutate(
            resolve(plural),
            md.get("namespace", ""),
            md["name"],
            drop,
            subresource=None,
            uid=md["uid"],
        )

    def _foreground(self, plural: str, owner: dict, deps: list[tuple[str, dict]]) -> None:
        if not deps:
            self._remove_finalizer(plural, owner, "foregroundDeletion")
            return
        for dep_plural, dep in deps:
            if not dep["metadata"].get("deletionTimestamp"):
                self._delete(dep_plural, dep)

    def _terminate_namespace(self, ns: dict, objects: list[tuple[str, dict]]) -> None:
        name = ns["metadata"]["name"]
        remaining = [
            (p, o)
            for p, o in objects
            if p != "namespaces" and o["metadata"].get("namespace") == name
        ]
        for plural, obj in remaining:
            if not obj["metadata"].get("deletionTimestamp"):
                self._delete(plural, obj)
        if remaining:
            return

        def finalize(o: dict) -> None:
            o["spec"]["finalizers"] = [
                f for f in o["spec"].get("finalizers") or [] if f != "kubernetes"
            ]

        self.registry.mutate(resolve("namespaces"), "", name, finalize, subresource=None)

    def _bind_pvc(self, pvc: dict) -> None:
        md = pvc["metadata"]

        def bind(o: dict) -> None:
            spec = o["spec"]
            spec["volumeName"] = f"pvc-{md['uid']}"
            o["status"] = {
                "phase": "Bound",
                "accessModes": list(spec.get("accessModes") or []),
                "capacity": {"storage": get_path(spec, "resources", "requests", "storage")},
            }
            o["metadata"].setdefault("annotations", {}).update(
                {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                }
            )

        self.registry.mutate(
            resolve("persistentvolumeclaims"),
            md["namespace"],
            md["name"],
            bind,
            subresource="binding",
            uid=md["uid"],
        )

    def _release_pvc(self, pvc: dict, objects: list[tuple[str, dict]]) -> None:
        md = pvc["metadata"]
        if _PVC_PROTECTION not in (md.get("finalizers") or []):
            return
        for plural, pod in objects:
            if plural != "pods" or pod["metadata"].get("namespace") != md["namespace"]:
                continue
            if get_path(pod, "status", "phase") in ("Succeeded", "Failed"):
                continue
            for vol in get_path(pod, "spec", "volumes", default=[]) or []:
                if get_path(vol, "persistentVolumeClaim", "claimName") == md["name"]:
                    return  # still in use
        self._remove_finalizer("persistentvolumeclaims", pvc, _PVC_PROTECTION)

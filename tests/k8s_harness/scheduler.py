"""A small default-scheduler: node selectors, required node affinity, taints, resource fit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from fractions import Fraction

from . import quantity
from .behavior import BehaviorPolicy
from .common import get_path, set_condition
from .events import EventRecorder
from .registry import Registry
from .resources import resolve
from .store import Store

log = logging.getLogger(__name__)
_PODS = resolve("pods")
_RETRY_SECONDS = 0.25


def pod_requests(spec: dict) -> dict[str, Fraction]:
    """Effective requests: max(sum over containers, each init container), plus one pod slot."""
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        for name, value in (get_path(c, "resources", "requests") or {}).items():
            total[name] = total.get(name, Fraction(0)) + quantity.parse(value)
    for c in spec.get("initContainers") or []:
        for name, value in (get_path(c, "resources", "requests") or {}).items():
            total[name] = max(total.get(name, Fraction(0)), quantity.parse(value))
    total["pods"] = Fraction(1)
    return total


def _expression_matches(expr: dict, labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels:
        try:
            actual, bound = int(labels[key]), int(values[0])
        except (ValueError, IndexError):
            return False
        return actual > bound if op == "Gt" else actual < bound
    return False


def node_affinity_matches(spec: dict, node: dict) -> bool:
    """nodeSelector and requiredDuringSchedulingIgnoredDuringExecution node affinity."""
    labels = get_path(node, "metadata", "labels", default={}) or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    terms = get_path(
        spec,
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
    )
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in terms:
        exprs, field_exprs = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not field_exprs:
            continue  # an empty term matches nothing
        if all(_expression_matches(e, labels) for e in exprs) and all(
            _expression_matches(e, fields) for e in field_exprs
        ):
            return True
    return False


def _tolerates(tolerations: list[dict], taint: dict) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        op = tol.get("operator") or "Equal"
        if not tol.get("key"):
            if op == "Exists":
                return True
            continue
        if tol["key"] != taint.get("key"):
            continue
        if op == "Exists" or tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def untolerated_taint(spec: dict, node: dict) -> dict | None:
    """The first NoSchedule/NoExecute taint the pod does not tolerate."""
    tolerations = spec.get("tolerations") or []
    for taint in get_path(node, "spec", "taints", default=[]) or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(
            tolerations, taint
        ):
            return taint
    return None


class Scheduler:
    """Binds pending pods (``schedulerName: default-scheduler``) to harness nodes."""

    def __init__(
        self, registry: Registry, store: Store, events: EventRecorder, policy: BehaviorPolicy
    ) -> None:
        self.registry = registry
        self.store = store
        self.events = events
        self.policy = policy
        self._not_before: dict[str, float] = {}
        self._last_message: dict[str, str] = {}

    async def run(self) -> None:
        """Retry pending pods on every pod/node change and periodically."""
        pods = self.store.subscribe("pods")
        nodes = self.store.subscribe("nodes")
        try:
            while True:
                self.schedule_pending()
                getters = [asyncio.ensure_future(s.queue.get()) for s in (pods, nodes)]
                try:
                    await asyncio.wait(
                        getters, timeout=_RETRY_SECONDS, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for g in getters:
                        g.cancel()
                for s in (pods, nodes):
                    while not s.queue.empty():
                        s.queue.get_nowait()
        finally:
            pods.close()
            nodes.close()

    def schedule_pending(self) -> None:
        """One scheduling pass over all pending pods."""
        pending = self.store.list(
            "pods",
            where=lambda p: (
                not get_path(p, "spec", "nodeName")
                and not p["metadata"].get("deletionTimestamp")
                and get_path(p, "spec", "schedulerName") == "default-scheduler"
                and get_path(p, "status", "phase") == "Pending"
            ),
        )
        pending.sort(
            key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["resourceVersion"])
        )
        live = {p["metadata"]["uid"] for p in pending}
        for uid in list(self._not_before):
            if uid not in live:
                self._not_before.pop(uid, None)
                self._last_message.pop(uid, None)
        if not pending:
            return
        usage = self._usage()
        for pod in pending:
            try:
                self._schedule_one(pod, usage)
            except Exception:
                log.exception("scheduling %s failed", pod["metadata"]["name"])

    def _usage(self) -> dict[str, dict[str, Fraction]]:
        """Requests of the pods placed on each node (finished pods free their share)."""
        usage: dict[str, dict[str, Fraction]] = {}
        placed = self.store.list(
            "pods",
            where=lambda p: (
                bool(get_path(p, "spec", "nodeName"))
                and get_path(p, "status", "phase") not in ("Succeeded", "Failed")
            ),
        )
        for pod in placed:
            node = get_path(pod, "spec", "nodeName")
            used = usage.setdefault(node, {})
            for name, amount in pod_requests(pod["spec"]).items():
                used[name] = used.get(name, Fraction(0)) + amount
        return usage

    def _schedule_one(self, pod: dict, usage: dict[str, dict[str, Fraction]]) -> None:
        md, spec = pod["metadata"], pod["spec"]
        uid = md["uid"]
        if uid not in self._not_before:
            self._not_before[uid] = time.monotonic() + self.policy.resolve(pod).schedule_delay
        if time.monotonic() < self._not_before[uid]:
            return
        if spec.get("schedulingGates"):
            self._set_unschedulable(
                pod,
                "SchedulingGated",
                "Scheduling is blocked due to non-empty scheduling gates",
                event=False,
            )
            return
        for vol in spec.get("volumes") or []:
            claim = get_path(vol, "persistentVolumeClaim", "claimName")
            if claim:
                pvc = self.store.get("persistentvolumeclaims", md["namespace"], claim)
                problem = None
                if pvc is None:
                    problem = f'persistentvolumeclaim "{claim}" not found'
                elif pvc["metadata"].get("deletionTimestamp"):
                    problem = f'persistentvolumeclaim "{claim}" is being deleted'
                if problem:
                    count = len(self.store.list("nodes"))
                    self._set_unschedulable(
                        pod,
                        "Unschedulable",
                        f"0/{count} nodes are available: {problem}. {self._preemption(count)}",
                    )
                    return
        nodes = self.store.list("nodes")
        requests = pod_requests(spec)
        reasons: Counter[str] = Counter()
        chosen = None
        for node in nodes:
            reason = self._filter(spec, requests, node, usage.get(node["metadata"]["name"], {}))
            if reason is None:
                chosen = node
                break
            reasons[reason] += 1
        if chosen is None:
            if not nodes:
                message = "no nodes available to schedule pods"
            else:
                detail = ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))
                message = (
                    f"0/{len(nodes)} nodes are available: {detail}. {self._preemption(len(nodes))}"
                )
            self._set_unschedulable(pod, "Unschedulable", message)
            return
        node_name = chosen["metadata"]["name"]
        if self._bind(pod, node_name):
            used = usage.setdefault(node_name, {})
            for name, amount in requests.items():
                used[name] = used.get(name, Fraction(0)) + amount

    @staticmethod
    def _preemption(count: int) -> str:
        return (
            f"preemption: 0/{count} nodes are available: {count} Preemption is not helpful for "
            "scheduling."
        )

    @staticmethod
    def _filter(
        spec: dict, requests: dict[str, Fraction], node: dict, used: dict[str, Fraction]
    ) -> str | None:
        """Why a node cannot take the pod (None: it can)."""
        unschedulable = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
        if get_path(node, "spec", "unschedulable") and not _tolerates(
            spec.get("tolerations") or [], unschedulable
        ):
            return "node(s) were unschedulable"
        if not node_affinity_matches(spec, node):
            return "node(s) didn't match Pod's node affinity/selector"
        taint = untolerated_taint(spec, node)
        if taint is not None:
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
        allocatable = get_path(node, "status", "allocatable", default={}) or {}
        for name, amount in sorted(requests.items()):
            if amount == 0:
                continue
            capacity = quantity.parse(allocatable[name]) if name in allocatable else Fraction(0)
            if used.get(name, Fraction(0)) + amount > capacity:
                return "Too many pods" if name == "pods" else f"Insufficient {name}"
        return None

    def _set_unschedulable(self, pod: dict, reason: str, message: str, event: bool = True) -> None:
        md = pod["metadata"]
        if self._last_message.get(md["uid"]) == message:
            return
        self._last_message[md["uid"]] = message

        def update(p: dict) -> None:
            set_condition(p, "PodScheduled", "False", reason, message)

        updated = self.registry.mutate(_PODS, md["namespace"], md["name"], update, uid=md["uid"])
        if updated is not None and event:
            self.events.record(updated, "Warning", "FailedScheduling", message, "default-scheduler")

    def _bind(self, pod: dict, node_name: str) -> bool:
        md = pod["metadata"]

        def bind(p: dict) -> None:
            p["spec"]["nodeName"] = node_name
            set_condition(p, "PodScheduled", "True")

        bound = self.registry.mutate(
            _PODS, md["namespace"], md["name"], bind, subresource="binding", uid=md["uid"]
        )
        if bound is None:
            return False
        self.events.record(
            bound,
            "Normal",
            "Scheduled",
            f"Successfully assigned {md['namespace']}/{md['name']} to {node_name}",
            "default-scheduler",
        )
        return True

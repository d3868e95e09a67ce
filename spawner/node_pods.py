"""The CPU and memory of pods the allocator did not place, on the nodes it manages.

The allocator checks a node's CPU and memory before it puts a slice there, but it only knows
what it placed itself. Pods the Kubernetes scheduler puts on a GPU-sharing node (CPU-only
notebooks, other teams' workloads, DaemonSets) take CPU and memory too; uncounted, the allocator
would pin a slice's pod to a node that cannot run it, and the pod would wait Pending.

:class:`OtherPods` keeps a list-and-watch of the cluster's pods (KubeSpawner's reflector: the
same resync and back-off the spawner's own pod watch has) and hands the requests of every
running pod on a managed node that holds no slice of ours to :meth:`Allocator.observe_pod`,
and forgets them when they end or leave.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gpu_fraction import keys
from gpu_fraction.allocator import Allocator
from gpu_fraction.errors import InventoryError
from gpu_fraction.quantity import MIB, parse_quantity

#: Terminal pods hold nothing; the API server filters them out of the list and the watch
#: (a pod that ends leaves the watch as a deletion).
LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


def pod_requests(pod: Mapping[str, Any]) -> tuple[int, int]:
    """What the scheduler counts for a pod: (CPU millicores, memory MiB), rounded up.

    Kubernetes' rule: the larger of the regular containers' sum (plus restartable init
    containers, i.e. sidecars) and the largest ordinary init container (plus the sidecars
    started before it); then the pod overhead. Pod-level ``spec.resources.requests``, where
    set, stand for the containers' sum. Raises :class:`InventoryError` for a quantity that
    cannot be read.
    """
    spec = pod.get("spec") or {}
    cpu, memory = 0, 0
    for container in spec.get("containers") or ():
        c, m = _requests_of(container)
        cpu, memory = cpu + c, memory + m
    pod_level = (spec.get("resources") or {}).get("requests") or {}
    if pod_level:
        cpu, memory = _amounts(pod_level, cpu, memory)
    sidecar_cpu, sidecar_memory, init_cpu, init_memory = 0, 0, 0, 0
    for container in spec.get("initContainers") or ():
        c, m = _requests_of(container)
        if container.get("restartPolicy") == "Always":  # a sidecar: runs beside the others
            sidecar_cpu, sidecar_memory = sidecar_cpu + c, sidecar_memory + m
        else:
            init_cpu = max(init_cpu, sidecar_cpu + c)
            init_memory = max(init_memory, sidecar_memory + m)
    cpu = max(cpu + sidecar_cpu, init_cpu)
    memory = max(memory + sidecar_memory, init_memory)
    overhead = spec.get("overhead") or {}
    over_cpu, over_memory = _amounts(overhead, 0, 0)
    return cpu + over_cpu, memory + over_memory


def _requests_of(container: Mapping[str, Any]) -> tuple[int, int]:
    return _amounts((container.get("resources") or {}).get("requests") or {}, 0, 0)


def _amounts(requests: Mapping[str, Any], cpu: int, memory: int) -> tuple[int, int]:
    """``requests``' CPU (millicores) and memory (MiB), rounded up; the defaults where absent."""
    if "cpu" in requests:
        cpu = math.ceil(parse_quantity(requests["cpu"], "cpu") * 1000)
    if "memory" in requests:
        memory = math.ceil(parse_quantity(requests["memory"], "memory") / MIB)
    return cpu, memory


def holds_a_slice(pod: Mapping[str, Any]) -> bool:
    """Whether the pod is one of ours: the allocator counts its CPU and memory already."""
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return labels.get(keys.PREFIX + "slice") == "true" or keys.ANN_ALLOCATION in annotations


def sync(
    allocator: Allocator,
    pods: Iterable[Mapping[str, Any]],
    managed: Callable[[str], bool],
    log: logging.Logger | None = None,
) -> tuple[int, int]:
    """Make what the allocator counts for other pods what ``pods`` hold now: observe each
    live pod on a managed node that holds no slice, forget those gone. Returns how many
    pods were (re)counted and how many forgotten. A pod whose requests cannot be read is
    logged and skipped (one odd pod must not stop the count)."""
    seen: set[str] = set()
    changed = 0
    for pod in pods:
        metadata = pod.get("metadata") or {}
        uid = metadata.get("uid")
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not uid or not node or not managed(node) or phase in ("Succeeded", "Failed"):
            continue
        if holds_a_slice(pod):
            continue
        try:
            cpu, memory = pod_requests(pod)
        except InventoryError as err:
            if log is not None:
                log.warning(
                    "pod %s/%s on node %s: its requests cannot be read (%s); not counted",
                    metadata.get("namespace"),
                    metadata.get("name"),
                    node,
                    err,
                )
            continue
        seen.add(uid)
        changed += allocator.observe_pod(node, uid, cpu, memory)
    forgotten = sum(allocator.forget_pod(uid) for uid in set(allocator.observed_pods()) - seen)
    return changed, forgotten


class OtherPods:
    """Watches the cluster's live pods and keeps the allocator's count of the others current.

    ``interval``: seconds between passes over the watched pods; a pass only touches the
    allocator where a pod came, went or changed its requests.
    """

    def __init__(
        self,
        allocator: Allocator,
        managed: Callable[[str], bool],
        log: logging.Logger,
        interval: float = 2.0,
    ) -> None:
        self.allocator = allocator
        self.managed = managed
        self.log = log
        self.interval = interval
        self._reflector: Any = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """List the pods once and count them (so the first placement knows them), then
        follow the watch. Raises what the first list raises (403 without the RBAC)."""
        from kubespawner.reflector import ResourceReflector

        reflector = ResourceReflector(kind="pods", omit_namespace=True, parent=None, log=self.log)
        # The reflector's selectors are equality-only dicts; ours need "!=".
        reflector.label_selector = f"{keys.PREFIX}slice!=true"
        reflector.field_selector = LIVE_PODS
        reflector.on_failure = lambda: self.log.error(
            "the watch of pods on GPU nodes gave up; their CPU and memory are no longer counted"
        )
        await reflector.start()
        self._reflector = reflector
        self.sync()
        self._task = asyncio.ensure_future(self._loop())

    def sync(self) -> tuple[int, int]:
        """One pass over the watched pods (see :func:`sync`)."""
        if self._reflector is None:
            return 0, 0
        pods = list(self._reflector.resources.values())
        return sync(self.allocator, pods, self.managed, self.log)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sync()
            except Exception:
                self.log.exception("counting the pods on GPU nodes failed; will retry")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._reflector is not None and self._reflector.watch_task is not None:
            self._reflector.watch_task.cancel()
            self._reflector = None

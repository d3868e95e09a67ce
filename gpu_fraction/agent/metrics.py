"""Prometheus metrics of the node agent, on a private registry.

GPU and process series are rebuilt from the latest tick's snapshot at every scrape (a custom
collector), so a process that went away simply has no series any more: nothing stale lingers, and
a scrape never sees half of one tick and half of the next. The policy counter is an ordinary
``Counter`` since counts must survive from tick to tick.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .policy import EVENT_REPORT, EVENT_SIGKILL, EVENT_SIGTERM
from .procmap import OwnedProcess
from .sampler import NodeSample

GPU_LABELS = ("node", "gpu", "uuid", "product")
PROCESS_LABELS = ("node", "gpu", "uuid", "pid", "pod_uid", "user", "allocation", "kind", "project")
SLICE_LABELS = ("node", "gpu", "uuid", "allocation", "pod_uid", "user", "kind")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    sample: NodeSample
    processes: tuple[OwnedProcess, ...]
    over_limit: int
    nvml_up: bool


class AgentMetrics:
    """The agent's metrics for one node; :meth:`update` once per tick."""

    def __init__(self, node: str, registry: CollectorRegistry | None = None) -> None:
        self.node = node
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._snapshot = _Snapshot(NodeSample(ok=False), (), 0, False)
        self.registry.register(_SnapshotCollector(self))
        self.policy_actions = Counter(
            "ai_console_policy_actions",
            "Actions the over-limit policy took: report (process over its GPU memory slice), "
            "sigterm, sigkill.",
            ["node", "action"],
            registry=self.registry,
        )
        for action in (EVENT_REPORT, EVENT_SIGTERM, EVENT_SIGKILL):
            # Present from the start at 0, so rate() works from the first action on.
            self.policy_actions.labels(node=node, action=action)

    def update(
        self,
        sample: NodeSample,
        processes: Sequence[OwnedProcess],
        over_limit: int,
        nvml_up: bool = True,
    ) -> None:
        """Replace what the next scrape reports with this tick's data."""
        snapshot = _Snapshot(sample, tuple(processes), over_limit, nvml_up)
        with self._lock:
            self._snapshot = snapshot

    def count_action(self, action: str) -> None:
        """Count one policy action (``report``, ``sigterm``, ``sigkill``)."""
        self.policy_actions.labels(node=self.node, action=action).inc()

    def render(self) -> bytes:
        """The text exposition, as ``/metrics`` serves it."""
        return generate_latest(self.registry)

    def _current(self) -> _Snapshot:
        with self._lock:
            return self._snapshot


class _SnapshotCollector(Collector):
    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        # Names only, so the registry can detect collisions without building a snapshot.
        return list(_families(self._metrics.node, None))

    def collect(self) -> Iterator[Metric]:
        return _families(self._metrics.node, self._metrics._current())


def _families(node: str, snap: _Snapshot | None) -> Iterator[Metric]:
    util = GaugeMetricFamily(
        "ai_console_gpu_utilization_percent",
        "Percent of time over the last sample period a kernel was running on the GPU (NVML).",
        labels=GPU_LABELS,
    )
    used = GaugeMetricFamily(
        "ai_console_gpu_memory_used_mib", "GPU memory in use, MiB (NVML).", labels=GPU_LABELS
    )
    total = GaugeMetricFamily(
        "ai_console_gpu_memory_total_mib", "GPU memory in total, MiB (NVML).", labels=GPU_LABELS
    )
    proc = GaugeMetricFamily(
        "ai_console_process_gpu_memory_mib",
        "GPU memory used by one process on one GPU, MiB, with the owner it maps to.",
        labels=PROCESS_LABELS,
    )
    limit = GaugeMetricFamily(
        "ai_console_slice_memory_limit_mib",
        "GPU memory slice of an allocation on one GPU, MiB (from its pod's annotations; "
        "from its processes' environment on the single-machine hub).",
        labels=SLICE_LABELS,
    )
    over = GaugeMetricFamily(
        "ai_console_processes_over_limit",
        "Processes of slices whose processes together use more GPU memory than the slice "
        "(plus tolerance).",
        labels=("node",),
    )
    gpus = GaugeMetricFamily(
        "ai_console_agent_gpus", "GPUs the agent sees on this node.", labels=("node",)
    )
    up = GaugeMetricFamily(
        "ai_console_agent_nvml_up",
        "1 when NVML answered on the last tick, 0 when there is no usable GPU driver.",
        labels=("node",),
    )
    if snap is not None:
        _fill(node, snap, util, used, total, proc, limit)
        over.add_metric([node], snap.over_limit)
        gpus.add_metric([node], len(snap.sample.gpus))
        up.add_metric([node], 1 if snap.nvml_up and snap.sample.ok else 0)
    yield from (util, used, total, proc, limit, over, gpus, up)


def _fill(
    node: str,
    snap: _Snapshot,
    util: GaugeMetricFamily,
    used: GaugeMetricFamily,
    total: GaugeMetricFamily,
    proc: GaugeMetricFamily,
    limit: GaugeMetricFamily,
) -> None:
    for gpu in snap.sample.gpus:
        labels = [node, str(gpu.index), gpu.uuid, gpu.product]
        # A value NVML could not read this tick is left out rather than reported as 0.
        if gpu.utilization_percent is not None:
            util.add_metric(labels, gpu.utilization_percent)
        if gpu.memory_used_mib is not None:
            used.add_metric(labels, gpu.memory_used_mib)
        if gpu.memory_total_mib is not None:
            total.add_metric(labels, gpu.memory_total_mib)
    slices: dict[tuple[str, ...], int] = {}
    for p in snap.processes:
        owner = p.owner
        proc.add_metric(
            [
                node,
                str(p.gpu_index),
                p.gpu_uuid,
                str(p.pid),
                owner.pod_uid or "",
                owner.user or "",
                owner.allocation_id or "",
                owner.kind or "",
                owner.project or "",
            ],
            p.used_memory_mib,
        )
        if owner.allocation_id and owner.memory_limit_mib is not None:
            key = (
                node,
                str(p.gpu_index),
                p.gpu_uuid,
                owner.allocation_id,
                owner.pod_uid or "",
                owner.user or "",
                owner.kind or "",
            )
            slices[key] = owner.memory_limit_mib
    for key, value in slices.items():
        limit.add_metric(list(key), value)


class MetricsServer:
    """``/metrics`` over HTTP in a daemon thread; :meth:`close` stops it and frees the port."""

    def __init__(self, registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
        self._server, self._thread = start_http_server(port, addr, registry=registry)

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

"""Hub-side Prometheus metrics of the GPU slices, served with JupyterHub's own on /hub/metrics.

JupyterHub serves prometheus_client's default ``REGISTRY`` there, so these live on it. What
the allocator holds now (slices, free capacity, quota use) is read at scrape time by
:class:`SliceCollector` from the hub's one :class:`~spawner.manager.GPUSliceManager`, so it
cannot drift from the allocator; what happened (placement latency, refusals) is counted as it
happens, by the manager.

Label values come from the inventory and the admin's configuration (GPU types, projects) or
from fixed sets (state, owner kind, refusal reason), never from users or refusal texts, so the
number of series stays bounded.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from fractions import Fraction
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpu_fraction.model import OWNER_KINDS, free_share

#: Why a reservation was refused. ``quota``: over the project's GPU quota; ``no_capacity``:
#: no GPU (or node) of the type has room now; ``unknown_gpu_type``: no GPU of that type at all;
#: ``lease``: this hub may not hand out slices (another hub holds the allocator Lease, or it
#: could not renew its own); ``expired``: the reservation lapsed before its pod was created and
#: its slice was taken meanwhile.
REFUSAL_REASONS = (
    "quota",
    "no_capacity",
    "unknown_gpu_type",
    "lease",
    "expired",
    "not_allowed",  # the hub's spawn check: a profile, project or image not the user's
    "node_filter",  # no GPU node the profile's node selector admits
)
#: Slice states: reserved (waiting for its pod or process), committed (it exists).
STATES = ("reserved", "committed")

ALLOCATION_SECONDS = Histogram(
    "ai_console_allocation_seconds",
    "Seconds the hub took to check a reservation against its project's quota and place it "
    "on a GPU, refused ones included (the allocator's lock is held meanwhile).",
    # A placement is a few dictionary look-ups; a refusal builds its reason. Sub-millisecond
    # is normal, tens of milliseconds means a very large or fragmented inventory.
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
REFUSALS = Counter(
    "ai_console_refusals",
    "GPU slice reservations the hub refused, by reason: " + ", ".join(REFUSAL_REASONS) + ".",
    ["reason"],
)
for _reason in REFUSAL_REASONS:
    REFUSALS.labels(reason=_reason)  # present at 0 from the start, so rate() works at once


def count_refusal(reason: str) -> None:
    """Count one refused reservation; ``reason`` must be one of :data:`REFUSAL_REASONS`."""
    if reason not in REFUSAL_REASONS:
        raise ValueError(f"refusal reason must be one of {', '.join(REFUSAL_REASONS)}")
    REFUSALS.labels(reason=reason).inc()


@contextmanager
def timed_allocation() -> Iterator[None]:
    """Observe the time the enclosed placement takes in ``ai_console_allocation_seconds``."""
    began = time.perf_counter()
    try:
        yield
    finally:
        ALLOCATION_SECONDS.observe(time.perf_counter() - began)


class SliceSource(Protocol):
    """What the collector reads from the slice manager (public methods only)."""

    project_quotas: Mapping[str, str]

    def usage(self) -> list[dict[str, Any]]: ...


class SliceCollector(Collector):
    """Builds the slice, capacity and quota gauges from the manager at every scrape."""

    def __init__(self, source: Callable[[], SliceSource | None]) -> None:
        #: Returns the manager to read now (None before the hub made one).
        self.source = source

    def describe(self) -> list[Metric]:
        # Names only: registering must not build the manager's snapshot.
        return list(_families(None))

    def collect(self) -> Iterator[Metric]:
        return _families(self.source())


_registered: weakref.WeakKeyDictionary[CollectorRegistry, SliceCollector] = (
    weakref.WeakKeyDictionary()
)
_register_lock = threading.Lock()


def register_collector(
    source: Callable[[], SliceSource | None], registry: CollectorRegistry = REGISTRY
) -> SliceCollector:
    """Register the scrape-time collector on ``registry`` once per process; a later call only
    points the registered one at ``source`` (registering twice would be a name collision)."""
    with _register_lock:
        collector = _registered.get(registry)
        if collector is None:
            collector = _registered[registry] = SliceCollector(source)
            registry.register(collector)
        else:
            collector.source = source
        return collector


def _families(source: SliceSource | None) -> Iterator[Metric]:
    slices = GaugeMetricFamily(
        "ai_console_slices",
        "GPU slices the allocator holds now, by GPU type, state (reserved: waiting for its "
        "pod or process; committed: it exists) and owner kind (notebook, job).",
        labels=("gpu_type", "state", "kind"),
    )
    capacity = GaugeMetricFamily(
        "ai_console_gpu_capacity",
        "GPUs the allocator manages, by GPU type.",
        labels=("gpu_type",),
    )
    free = GaugeMetricFamily(
        "ai_console_gpu_free",
        "GPUs' worth of free capacity, by GPU type: per GPU the smaller of its free share of "
        "memory and of compute (a slice needs both), summed. Used is capacity minus free.",
        labels=("gpu_type",),
    )
    quota = GaugeMetricFamily(
        "ai_console_project_gpu_quota",
        "A project's GPU quota (sum of slice sizes, as configured), for projects with one.",
        labels=("project",),
    )
    in_use = GaugeMetricFamily(
        "ai_console_project_gpu_in_use",
        "GPUs a project holds now (sum of its slices' sizes, notebooks and jobs together).",
        labels=("project",),
    )
    if source is not None:
        _fill(source, slices, capacity, free, quota, in_use)
    yield from (slices, capacity, free, quota, in_use)


def _fill(
    source: SliceSource,
    slices: GaugeMetricFamily,
    capacity: GaugeMetricFamily,
    free: GaugeMetricFamily,
    quota: GaugeMetricFamily,
    in_use: GaugeMetricFamily,
) -> None:
    gpus: dict[str, int] = {}
    free_by_type: dict[str, Fraction] = {}
    counts: dict[tuple[str, str, str], int] = {}
    held: dict[str, Fraction] = {}
    seen: set[str] = set()
    for entry in source.usage():  # one snapshot, taken under the allocator's lock
        gpu = entry["gpu"]
        gpus[gpu.gpu_type] = gpus.get(gpu.gpu_type, 0) + 1
        share = free_share(gpu, entry["free_memory_mib"], entry["free_compute"])
        free_by_type[gpu.gpu_type] = free_by_type.get(gpu.gpu_type, Fraction(0)) + share
        for allocation in entry["allocations"]:
            if allocation.id in seen:  # a multi-GPU slice is listed under each of its GPUs
                continue
            seen.add(allocation.id)
            state = "committed" if entry["committed"].get(allocation.id) else "reserved"
            key = (allocation.gpu_type, state, allocation.owner.kind)
            counts[key] = counts.get(key, 0) + 1
            project = allocation.owner.project
            if project:
                held[project] = held.get(project, Fraction(0)) + allocation.fraction
    for gpu_type in sorted(gpus):
        capacity.add_metric([gpu_type], gpus[gpu_type])
        free.add_metric([gpu_type], float(free_by_type[gpu_type]))
        for state in STATES:  # every state present, 0 included, so panels need no fill
            for kind in OWNER_KINDS:
                slices.add_metric([gpu_type, state, kind], counts.get((gpu_type, state, kind), 0))
    quotas = _quotas(source.project_quotas)
    for project, value in sorted(quotas.items()):
        quota.add_metric([project], float(value))
    for project in sorted(set(quotas) | set(held)):
        in_use.add_metric([project], float(held.get(project, 0)))


def _quotas(configured: Mapping[str, str]) -> dict[str, Fraction]:
    """The configured quotas as numbers; one that does not parse is left out, since a scrape
    must not fail (the reservation itself reports it)."""
    out = {}
    for project, text in configured.items():
        try:
            out[project] = Fraction(text)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
    return out

"""Live GPU figures for the hub, read from the node agents' ``/metrics``, and idle slices.

Each node agent already exposes per GPU its utilisation and memory in use, and per process the
GPU memory it holds with the allocation it belongs to (``gpu_fraction.agent.metrics``). The hub
reads those pages every ``interval`` seconds, so the admin page can draw live figures next to
each slice and flag the idle ones. The agents are found by label in the hub's namespace (the
chart's DaemonSet) or listed in ``urls``; a failed page keeps the last figures of that node,
marked by their age.

A notebook server whose slice stays idle ``cull_after_minutes`` is stopped through the hub's
API (as jupyterhub-idle-culler does), after its user was warned in Lab.

A slice counts as idle while none of its processes holds GPU memory (no CUDA context on its
GPU, as for a notebook left open) and, when it has its GPU to itself (a whole-GPU slice), while
the GPU's utilisation stays under ``idle_utilization_percent``. A fractional slice's own
utilisation cannot be told apart on a shared GPU, so for those only the first rule applies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Callable as Callable_
from traitlets import Float, Integer, List, Unicode
from traitlets.config import SingletonConfigurable

from gpu_fraction.model import GPU, Allocation


@dataclass
class GpuLive:
    """One GPU as its agent last reported it (``None``: NVML could not read it)."""

    utilization_percent: float | None = None
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    at: float = 0.0


@dataclass
class AgentPage:
    """What one agent's ``/metrics`` says."""

    gpus: dict[str, GpuLive] = field(default_factory=dict)  # by GPU uuid
    #: allocation id -> GPU memory its processes hold, MiB (only allocations with processes)
    slice_memory_mib: dict[str, float] = field(default_factory=dict)


def parse_agent_page(text: str, at: float) -> AgentPage:
    """The figures of an agent's text exposition."""
    page = AgentPage()
    gpu_fields = {
        "ai_console_gpu_utilization_percent": "utilization_percent",
        "ai_console_gpu_memory_used_mib": "memory_used_mib",
        "ai_console_gpu_memory_total_mib": "memory_total_mib",
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in gpu_fields:
                gpu = page.gpus.setdefault(sample.labels["uuid"], GpuLive(at=at))
                setattr(gpu, gpu_fields[sample.name], float(sample.value))
            elif sample.name == "ai_console_process_gpu_memory_mib":
                allocation = sample.labels.get("allocation") or ""
                if allocation:  # a process of no slice is nobody's usage here
                    held = page.slice_memory_mib.get(allocation, 0.0)
                    page.slice_memory_mib[allocation] = held + float(sample.value)
    return page


class AgentSamples(SingletonConfigurable):
    """The latest figures of every node agent, and for how long each slice has been idle."""

    urls = List(
        Unicode(),
        config=True,
        help="""Agents' /metrics URLs to read besides those found by label (the single-machine
        hub with an agent of its own, or agents outside the hub's namespace).""",
    )
    label_selector = Unicode(
        "",
        config=True,
        help="""Label selector of the agent pods in the hub's namespace; the chart sets that of
        its DaemonSet. Empty: agents are not looked for (only ``urls`` are read).""",
    )
    port = Integer(9410, config=True, help="Port of the agent pods' /metrics.")
    interval = Float(15.0, config=True, help="Seconds between two reads of every agent.")
    timeout = Float(5.0, config=True, help="Seconds one agent may take to answer.")
    idle_utilization_percent = Float(
        5.0,
        config=True,
        help="""A whole-GPU slice whose GPU is busy less than this percent counts as idle
        (fractional slices count as idle only while their processes hold no GPU memory).""",
    )
    idle_minutes = Float(
        30.0,
        config=True,
        help="Minutes a slice must stay idle before the admin page flags it.",
    )

    cull_after_minutes = Float(
        0.0,
        config=True,
        help="""Minutes a notebook's slice may stay idle before the hub stops its server (its
        user is warned in Lab from the moment it is flagged, after idle_minutes). 0: never.""",
    )
    stop_server = Callable_(
        None,
        allow_none=True,
        config=True,
        help="""Coroutine function (user, server_name) that stops a server through the hub's
        API; the hub's configuration sets it (hub_config.idle_culler). None: nothing is stopped.""",
    )

    def __init__(self, clock: Callable[[], float] = time.time, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.gpus: dict[str, GpuLive] = {}
        self.slice_memory_mib: dict[str, float] = {}
        self._idle_since: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    # --- reading the agents ---------------------------------------------------------------

    async def read(self, urls: Iterable[str]) -> int:
        """Read every agent page once; returns how many answered."""
        client = AsyncHTTPClient()
        pages = await asyncio.gather(*(self._fetch(client, url) for url in urls))
        answered = [p for p in pages if p is not None]
        for page in answered:
            self.gpus.update(page.gpus)
        if answered:
            # Slices of nodes that did not answer keep no stale memory figure.
            self.slice_memory_mib = {k: v for p in answered for k, v in p.slice_memory_mib.items()}
        return len(answered)

    async def _fetch(self, client: AsyncHTTPClient, url: str) -> AgentPage | None:
        try:
            response = await client.fetch(url, request_timeout=self.timeout)
        except (HTTPClientError, OSError) as err:
            self.log.warning("node agent %s did not answer: %s", url, err)
            return None
        return parse_agent_page(response.body.decode(), self.clock())

    def start(self, discover: Callable[[], object], slices: Callable[[], list]) -> None:
        """Read the agents every ``interval`` seconds; ``discover`` (async) lists agent URLs
        found by label, ``slices`` the committed allocations to track idleness for."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop(discover, slices))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self, discover: Callable[[], object], slices: Callable[[], list]) -> None:
        while True:
            try:
                found = await discover()  # type: ignore[misc]
                urls = [*self.urls, *found]
                if urls:
                    await self.read(urls)
                    held = slices()
                    self.track_idle(held)
                    await self.cull(held)
            except Exception as err:
                self.log.warning("could not read the node agents: %s", err)
            await asyncio.sleep(self.interval)

    def readings_of(self, allocation: Allocation) -> dict[str, int | None]:
        """The slice as its agent reports it: ``memory_used_mib`` (its processes' GPU memory)
        and ``utilization_percent`` (of its whole GPUs; None for a fraction of a shared GPU);
        both None where no agent reports its GPUs."""
        reported = [self.gpus[u] for u in allocation.gpu_uuids if u in self.gpus]
        if not reported:
            return {"memory_used_mib": None, "utilization_percent": None}
        rates = [g.utilization_percent for g in reported if g.utilization_percent is not None]
        whole = allocation.is_whole and len(rates) == len(reported)
        return {
            "memory_used_mib": round(self.slice_memory_mib.get(allocation.id, 0.0)),
            "utilization_percent": round(sum(rates) / len(rates)) if whole else None,
        }

    def utilization_by_type(self, gpus: Iterable[GPU]) -> dict[str, list[float]]:
        """Per GPU type, the utilisation (percent) of each of ``gpus`` whose agent reported it
        within the last two reads; GPUs not reported (or too long ago) are left out."""
        fresh_after = self.clock() - 2 * self.interval
        by_type: dict[str, list[float]] = {}
        for gpu in gpus:
            live = self.gpus.get(gpu.uuid)
            if live is None or live.utilization_percent is None or live.at < fresh_after:
                continue
            by_type.setdefault(gpu.gpu_type, []).append(live.utilization_percent)
        return by_type

    # --- idle slices ----------------------------------------------------------------------

    def busy(self, allocation: Allocation) -> bool | None:
        """Whether the slice uses its GPU now; None when no agent reports its GPUs."""
        reported = [self.gpus[u] for u in allocation.gpu_uuids if u in self.gpus]
        if not reported:
            return None
        if self.slice_memory_mib.get(allocation.id, 0.0) > 0:
            if not allocation.is_whole:
                return True
            busy = [g.utilization_percent for g in reported if g.utilization_percent is not None]
            return not busy or max(busy) >= self.idle_utilization_percent
        return False

    def track_idle(self, allocations: Iterable[Allocation]) -> None:
        """Update when each slice became idle (dropped when busy, unknown or gone)."""
        now = self.clock()
        tracked: dict[str, float] = {}
        for allocation in allocations:
            if self.busy(allocation) is False:
                tracked[allocation.id] = self._idle_since.get(allocation.id, now)
        self._idle_since = tracked

    def idle_minutes_of(self, allocation_id: str) -> float | None:
        """Minutes the slice has been idle, when at least ``idle_minutes`` (else None)."""
        since = self._idle_since.get(allocation_id)
        if since is None:
            return None
        minutes = (self.clock() - since) / 60
        return minutes if minutes >= self.idle_minutes else None

    def stops_in_minutes_of(self, allocation: Allocation) -> float | None:
        """Minutes until the hub stops this notebook's server for idleness (None: it will
        not: not flagged idle, a job, or stopping is not configured)."""
        idle = self.idle_minutes_of(allocation.id)
        if idle is None or not self.cull_after_minutes or allocation.owner.kind != "notebook":
            return None
        return max(0.0, self.cull_after_minutes - idle)

    async def cull(self, allocations: Iterable[Allocation]) -> list[Allocation]:
        """Stop the servers whose slice stayed idle ``cull_after_minutes``; returns them."""
        if self.stop_server is None:
            return []
        due = [a for a in allocations if self.stops_in_minutes_of(a) == 0]
        for allocation in due:
            owner = allocation.owner
            self.log.warning(
                "stopping %s's server %r: its %s slice was idle for %.0f minutes",
                owner.user,
                owner.name,
                allocation.gpu_type,
                self.idle_minutes_of(allocation.id) or 0,
            )
            await self.stop_server(owner.user, owner.name)
            self._idle_since.pop(allocation.id, None)
        return due

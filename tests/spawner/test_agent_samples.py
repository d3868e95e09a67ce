"""Live GPU figures read from a real node agent's /metrics (the agent's own collector and HTTP
server), idle slices with a controllable clock, and what the admin page's data gains."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from fractions import Fraction

import pytest
from traitlets.config import Config

from gpu_fraction.agent.metrics import AgentMetrics, MetricsServer
from gpu_fraction.agent.procmap import OwnedProcess, ProcessOwner
from gpu_fraction.agent.sampler import GpuSample, NodeSample
from gpu_fraction.allocator import Allocator
from gpu_fraction.model import Allocation, Owner, SliceRequest
from gpu_fraction.simulated import simulated
from hub_config.console_view import console_view
from hub_config.loader import EXAMPLE, load_config
from spawner.agent_samples import AgentSamples, parse_agent_page
from spawner.manager import GPUSliceManager
from tests.allocations import allocation

BUSY, QUIET = "GPU-busy", "GPU-quiet"


def process(pid: int, uuid: str, mib: int, allocation: str) -> OwnedProcess:
    owner = ProcessOwner(allocation_id=allocation, user="alice", kind="notebook", project="cs101")
    return OwnedProcess(pid, 0 if uuid == BUSY else 1, uuid, mib, owner)


def agent_page(processes: list[OwnedProcess]) -> AgentMetrics:
    metrics = AgentMetrics("node-a")
    gpus = (
        GpuSample(0, BUSY, "NVIDIA A100", 81920, 20000, 80),
        GpuSample(1, QUIET, "NVIDIA A100", 81920, 1200, 2),
    )
    metrics.update(NodeSample(gpus), processes, over_limit=0)
    return metrics


@pytest.fixture
def agent() -> Iterator[tuple[AgentMetrics, str]]:
    metrics = agent_page(
        [
            process(11, BUSY, 12000, "training"),
            process(12, BUSY, 8000, "training"),
            process(21, QUIET, 1200, "whole-but-quiet"),
            process(22, QUIET, 0, ""),  # a process of no slice: nobody's usage
        ]
    )
    server = MetricsServer(metrics.registry, 0, "127.0.0.1")
    yield metrics, f"http://127.0.0.1:{server.port}/metrics"
    server.close()


def slice_on(allocation_id: str, uuid: str, fraction: str) -> Allocation:
    return allocation(allocation_id, "alice", "cs101", fraction, gpu_uuid=uuid, gpu_type="A100")


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_the_hub_reads_a_real_agents_page(agent: tuple[AgentMetrics, str]) -> None:
    _, url = agent
    samples = AgentSamples()
    assert await samples.read([url, "http://127.0.0.1:9/metrics"]) == 1  # one is down
    busy = samples.gpus[BUSY]
    assert (busy.utilization_percent, busy.memory_used_mib, busy.memory_total_mib) == (
        80,
        20000,
        81920,
    )
    assert samples.slice_memory_mib == {"training": 20000, "whole-but-quiet": 1200}


def test_the_page_parser_leaves_out_what_nvml_did_not_read() -> None:
    metrics = AgentMetrics("node-b")
    metrics.update(NodeSample((GpuSample(0, "GPU-x", "T4", 15360, None, None),)), [], 0)
    page = parse_agent_page(metrics.render().decode(), at=5.0)
    gpu = page.gpus["GPU-x"]
    assert gpu.utilization_percent is None and gpu.memory_used_mib is None
    assert gpu.memory_total_mib == 15360 and gpu.at == 5.0


async def test_idle_slices_are_flagged_after_the_configured_time(
    agent: tuple[AgentMetrics, str],
) -> None:
    _, url = agent
    clock = Clock()
    samples = AgentSamples(clock=clock, idle_minutes=30)
    await samples.read([url])
    held = [
        slice_on("training", BUSY, "1/4"),  # its processes hold memory: busy
        slice_on("forgotten", BUSY, "1/4"),  # no process on its GPU: idle
        slice_on("whole-but-quiet", QUIET, "1"),  # its own GPU, 2% busy: idle
        slice_on("elsewhere", "GPU-no-agent", "1/2"),  # no agent reports it: unknown
    ]
    assert [samples.busy(a) for a in held] == [True, False, False, None]
    # What the hub tells each slice's server of it (its Lab cannot read NVML in a container).
    assert [samples.readings_of(a) for a in held] == [
        {"memory_used_mib": 20000, "utilization_percent": None},  # a fraction: GPU shared
        {"memory_used_mib": 0, "utilization_percent": None},
        {"memory_used_mib": 1200, "utilization_percent": 2},  # its own GPU's utilisation
        {"memory_used_mib": None, "utilization_percent": None},
    ]
    samples.track_idle(held)
    clock.now += 29 * 60
    samples.track_idle(held)
    assert samples.idle_minutes_of("forgotten") is None  # not yet for 30 minutes
    clock.now += 2 * 60
    samples.track_idle(held)
    assert samples.idle_minutes_of("forgotten") == pytest.approx(31)
    assert samples.idle_minutes_of("whole-but-quiet") == pytest.approx(31)
    assert samples.idle_minutes_of("training") is None
    assert samples.idle_minutes_of("elsewhere") is None
    # The notebook wakes up: its process takes memory, and the idle clock starts over.
    metrics = agent_page([process(31, BUSY, 500, "forgotten")])
    server = MetricsServer(metrics.registry, 0, "127.0.0.1")
    try:
        await samples.read([f"http://127.0.0.1:{server.port}/metrics"])
    finally:
        server.close()
    samples.track_idle(held)
    assert samples.idle_minutes_of("forgotten") is None


async def test_the_admin_page_shows_live_figures_to_who_may_see_them() -> None:
    allocator = Allocator.from_inventory(simulated("node-a=A100:81920x1"))
    mine = allocator.reserve(
        SliceRequest("A100", Fraction(1, 4)), Owner("notebook", "student1", "cs101", "")
    )
    theirs = allocator.reserve(
        SliceRequest("A100", Fraction(1, 4)), Owner("notebook", "researcher", "vision-lab", "")
    )
    [gpu] = allocator.gpus()
    samples = AgentSamples()
    metrics = AgentMetrics("node-a")
    metrics.update(
        NodeSample((GpuSample(0, gpu.uuid, "NVIDIA A100", 81920, 9000, 40),)),
        [process(1, gpu.uuid, 4096, mine.id), process(2, gpu.uuid, 4904, theirs.id)],
        0,
    )
    server = MetricsServer(metrics.registry, 0, "127.0.0.1")
    try:
        await samples.read([f"http://127.0.0.1:{server.port}/metrics"])
    finally:
        server.close()
    config = load_config(EXAMPLE)
    for viewer, seen in (("admin", {mine.id: 4096, theirs.id: 4904}), ("teacher", {mine.id: 4096})):
        view = console_view(config, viewer, allocator.usage(), allocator.capacity(), samples)
        [shown] = view["nodes"][0]["gpus"]
        assert (shown["utilization_percent"], shown["memory_used_mib"]) == (40, 9000)
        visible = {s["id"]: s["memory_used_mib"] for s in shown["slices"] if s["visible"]}
        assert visible == seen
        hidden = [s for s in shown["slices"] if not s["visible"]]
        assert all("memory_used_mib" not in s and "id" not in s for s in hidden)


async def test_the_hub_keeps_reading_its_agents(agent: tuple[AgentMetrics, str]) -> None:
    _, url = agent
    config = Config()
    config.GPUSliceManager.inventory_source = "simulated"
    config.GPUSliceManager.simulated_gpus = "node-a=A100:81920x1"
    config.AgentSamples.urls = [url]
    config.AgentSamples.interval = 0.05
    await GPUSliceManager.instance(config=config).ready()
    for _ in range(100):
        if AgentSamples.instance().gpus:
            break
        await asyncio.sleep(0.05)
    assert AgentSamples.instance().gpus[BUSY].utilization_percent == 80


async def test_idle_servers_are_stopped_after_their_warning_time(
    agent: tuple[AgentMetrics, str],
) -> None:
    _, url = agent
    clock = Clock()
    stopped: list[tuple[str, str]] = []

    async def stop_server(user: str, server: str) -> None:
        stopped.append((user, server))

    samples = AgentSamples(
        clock=clock, idle_minutes=30, cull_after_minutes=60, stop_server=stop_server
    )
    await samples.read([url])
    forgotten = slice_on("forgotten", BUSY, "1/4")  # no process on its GPU: idle
    job = allocation("a-job", "alice", "cs101", "1/4", kind="job", gpu_uuid=BUSY)
    held = [forgotten, job, slice_on("training", BUSY, "1/4")]
    samples.track_idle(held)
    clock.now += 31 * 60
    samples.track_idle(held)
    # Flagged: its user is told how long is left; jobs end on their own and are never stopped.
    assert samples.stops_in_minutes_of(forgotten) == pytest.approx(29)
    assert samples.stops_in_minutes_of(job) is None
    assert await samples.cull(held) == [] and stopped == []
    clock.now += 29 * 60
    samples.track_idle(held)
    assert await samples.cull(held) == [forgotten]
    assert stopped == [("alice", "")]
    # Without cull_after_minutes nothing is ever stopped, however long idle.
    never = AgentSamples(clock=clock, idle_minutes=30, stop_server=stop_server)
    await never.read([url])
    never.track_idle(held)
    clock.now += 600 * 60
    never.track_idle(held)
    assert never.stops_in_minutes_of(forgotten) is None and await never.cull(held) == []

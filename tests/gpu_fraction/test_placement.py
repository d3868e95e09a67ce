"""Placement by node fragmentation: several GPU types, whole nodes kept for big jobs, CPU and
memory in the measure, refusals that say why, and never over capacity."""

from __future__ import annotations

import contextlib
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpu_fraction import refusal
from gpu_fraction.allocator import Allocator
from gpu_fraction.errors import AllocationRefused, InvalidRequestError, UnknownGPUTypeError
from gpu_fraction.model import GPU, NodeCapacity, Owner, SliceRequest
from gpu_fraction.node_fragmentation import CompiledMix

from .helpers import A100_MIB, RTX3090_MIB, make_gpus, make_nodes

BOB = Owner("job", "bob", "lab", "train")


def two_types() -> Allocator:
    """One A100 node and one T4 node, one GPU each."""
    gpus = make_gpus(1, 1, "A100", A100_MIB, prefix="a") + make_gpus(1, 1, "T4", 16384, "t")
    return Allocator(gpus)


def test_several_types_land_on_the_one_that_fragments_least():
    allocator = two_types()
    allocator.reserve(SliceRequest("T4", "1/2"), BOB)  # the T4 has a half-GPU hole
    # "A100" comes first in any fixed order; the hole on the T4 is where 1/2 fits best.
    request = SliceRequest(None, "1/2", gpu_types=frozenset({"A100", "T4"}))
    allocation = allocator.reserve(request, BOB)
    assert allocation.gpu_type == "T4" and allocation.node == "t-00"
    assert allocator.free_state()["GPU-A100-00-0"] == (A100_MIB, 100)


def test_a_request_with_no_type_places_on_any_type():
    allocator = two_types()
    allocator.reserve(SliceRequest("A100", 1), BOB)
    allocation = allocator.reserve(SliceRequest(None, "1/4"), BOB)
    assert allocation.gpu_type == "T4"
    assert allocator.reserve(SliceRequest(None, "1/2"), BOB).gpu_type == "T4"
    with pytest.raises(AllocationRefused, match="none of the acceptable GPU types"):
        allocator.reserve(SliceRequest(None, "1/2"), BOB)


def test_gpu_types_are_validated_and_unknown_ones_named():
    with pytest.raises(InvalidRequestError, match="not both"):
        SliceRequest("T4", "1/2", gpu_types=frozenset({"T4"}))
    with pytest.raises(InvalidRequestError):
        SliceRequest(None, "1/2", gpu_types=frozenset())
    with pytest.raises(InvalidRequestError):
        SliceRequest(None, "1/2", gpu_types=frozenset({"bad type"}))
    with pytest.raises(UnknownGPUTypeError, match="H100"):
        two_types().reserve(SliceRequest(None, "1/2", gpu_types=frozenset({"H100"})), BOB)
    # One known type among unknown ones is enough.
    request = SliceRequest(None, "1/2", gpu_types=frozenset({"H100", "T4"}))
    assert two_types().reserve(request, BOB).gpu_type == "T4"


def test_an_eight_gpu_node_stays_whole_through_a_stream_of_small_requests():
    gpus = make_gpus(4, 8)  # 32 GPUs for 19.5 GPUs of small requests
    allocator = Allocator(gpus, make_nodes(gpus, cpu_millis=96_000, memory_mib=393_216))
    sizes = ["1/8", "1/4", "1/2", 1, "1/4", 2, "1/8", 1, "1/2", "3/4"] * 3
    for size in sizes:
        allocator.reserve(SliceRequest("RTX3090", size, cpu_millis=2000), BOB)
    busy = {row["gpu"].node for row in allocator.usage() if row["allocations"]}
    whole_nodes = sorted({g.node for g in gpus} - busy)
    assert whole_nodes, "a stream of small requests broke into every node"
    job = allocator.reserve(SliceRequest("RTX3090", 8, cpu_millis=32_000), BOB)
    assert len(job.gpu_uuids) == 8 and job.node in whole_nodes


def test_a_node_whose_cpu_would_run_out_is_avoided_for_a_share_that_needs_cpu():
    gpus = make_gpus(2, 2)
    nodes = {"gpu-00": NodeCapacity("gpu-00", 8000, 65536), "gpu-01": NodeCapacity("gpu-01", 64000)}
    allocator = Allocator(gpus, nodes)
    # The mix has learnt that pods here ask for CPU (a half GPU and 2 CPUs).
    for _ in range(16):
        allocator._mix.record(SliceRequest("RTX3090", "1/2", cpu_millis=2000).shape)
    # Both nodes get a half-GPU hole; gpu-00 is left with 2 CPUs.
    allocator.reserve(SliceRequest("RTX3090", "1/2", cpu_millis=6000, node="gpu-00"), BOB)
    allocator.reserve(SliceRequest("RTX3090", "1/2", cpu_millis=2000, node="gpu-01"), BOB)
    # Filling gpu-00's hole would take its last CPUs and strand its free GPU: go to gpu-01,
    # although gpu-00's hole came first (which GPU order alone would pick).
    allocation = allocator.reserve(SliceRequest("RTX3090", "1/2", cpu_millis=2000), BOB)
    assert allocation.node == "gpu-01"


def test_a_node_without_cpu_is_not_used_and_the_refusal_says_so():
    gpus = make_gpus(1, 2)
    allocator = Allocator(gpus, make_nodes(gpus, cpu_millis=4000))
    allocator.reserve(SliceRequest("RTX3090", "1/4", cpu_millis=4000), BOB)
    with pytest.raises(AllocationRefused) as err:
        allocator.reserve(SliceRequest("RTX3090", "1/4", cpu_millis=1000), BOB)
    assert err.value.reason == (
        "the RTX3090 GPUs with 1/4 free are on nodes without 1 CPU to spare; "
        "ask for less CPU or memory, or wait"
    )


def test_refusal_wording_is_the_same_from_the_summary_and_from_a_scan():
    allocator = Allocator(make_gpus(2, 4))
    for size in ("3/4", "1/2", 1, 1, 2, "1/8"):
        allocator.reserve(SliceRequest("RTX3090", size), BOB)
    pool = allocator._pools["RTX3090"]
    for size in ("7/8", 1, 2, 4, 8):
        request = SliceRequest("RTX3090", size)
        summary = refusal._summary_reason(allocator, pool, request)
        assert summary == refusal._scan_reason(allocator, pool, request)
    with pytest.raises(AllocationRefused) as err:
        allocator.reserve(SliceRequest("RTX3090", 4), BOB)
    assert err.value.reason.startswith("no node has 4 free RTX3090 GPUs: the most free on one")


def test_reserve_pod_keeps_gpu_nodes_cpu_for_gpu_pods():
    gpus = make_gpus(1, 2)
    nodes = make_nodes(gpus, cpu_millis=16_000, memory_mib=65_536)
    nodes["cpu-00"] = NodeCapacity("cpu-00", 64_000, 262_144)
    allocator = Allocator(gpus, nodes)
    allocator.reserve(SliceRequest("RTX3090", "1/2", cpu_millis=12_000), BOB)
    pod = allocator.reserve_pod(8000, 16_384, BOB)
    assert pod.node == "cpu-00" and pod.gpu_uuids == ()
    assert allocator.node_usage()["cpu-00"] == (8000, 16_384)
    allocator.release(pod.id)
    assert allocator.node_usage()["cpu-00"] == (0, 0)
    with pytest.raises(AllocationRefused, match="no node has 100 CPU"):
        allocator.reserve_pod(100_000, 1, BOB)


def test_a_pod_not_placed_by_us_reduces_the_nodes_free_cpu():
    gpus = make_gpus(2, 1)
    allocator = Allocator(gpus, make_nodes(gpus, cpu_millis=16_000, memory_mib=65_536))
    # A pod the hub did not place (no allocation) runs on gpu-00 and asks for 12 CPUs.
    assert allocator.observe_pod("gpu-00", "uid-1", 12_000, 8192)
    assert not allocator.observe_pod("gpu-00", "uid-1", 12_000, 8192)  # seen again: once
    assert allocator.node_usage()["gpu-00"] == (12_000, 8192)
    request = SliceRequest("RTX3090", "3/4", cpu_millis=8000)
    first = allocator.reserve(request, BOB)
    assert first.node == "gpu-01"  # gpu-00's GPU is free, its CPU is not
    with pytest.raises(AllocationRefused) as err:
        allocator.reserve(request, BOB)
    assert err.value.reason == (
        "the RTX3090 GPUs with 3/4 free are on nodes without 8 CPU to spare; "
        "ask for less CPU or memory, or wait"
    )
    assert allocator.observed_pods() == {"uid-1": ("gpu-00", 12_000, 8192)}
    # Its requests change (or it moves): what is counted is replaced, not added.
    assert allocator.observe_pod("gpu-00", "uid-1", 4000, 8192)
    assert allocator.node_usage()["gpu-00"] == (4000, 8192)
    assert allocator.reserve(request, BOB).node == "gpu-00"
    assert allocator.forget_pod("uid-1") and not allocator.forget_pod("uid-1")
    assert allocator.node_usage()["gpu-00"] == (8000, 0)
    assert allocator.allocations() and all(a.id != "uid-1" for a in allocator.allocations())
    with pytest.raises(ValueError, match="negative"):
        allocator.observe_pod("gpu-00", "uid-2", -1, 0)


def test_a_cpu_only_pod_is_kept_off_a_node_an_observed_pod_filled():
    gpus = make_gpus(1, 1)
    nodes = make_nodes(gpus, cpu_millis=16_000, memory_mib=65_536)
    nodes["cpu-00"] = NodeCapacity("cpu-00", 16_000, 65_536)
    allocator = Allocator(gpus, nodes)
    allocator.observe_pod("cpu-00", "uid-9", 14_000, 0)
    with pytest.raises(AllocationRefused, match="no node has 4 CPU"):
        allocator.reserve_pod(4000, 0, BOB, nodes=frozenset({"cpu-00"}))
    assert allocator.reserve_pod(4000, 0, BOB).node == "gpu-00"


def test_node_fragmentation_counts_cpu_and_whole_gpu_counts():
    # Mix: a 1-GPU task needing 8 CPUs and a 1/2 share needing none, equally likely.
    mix = CompiledMix([((1, 1, 0, 100, 8000, 0), 0.5), ((1, 2, 0, 50, 0, 0), 0.5)])
    free = (RTX3090_MIB, RTX3090_MIB, 100)
    half = (RTX3090_MIB, RTX3090_MIB // 2, 50)
    assert mix.node([free, free], 16_000, None) == 0.0
    # Without CPU the 1-GPU task cannot use either free GPU: half of 2 GPUs is unusable.
    assert mix.node([free, free], 4000, None) == pytest.approx(1.0)
    # A half-used GPU: the 1-GPU task cannot use its free half.
    assert mix.node([half, free], 16_000, None) == pytest.approx(0.25)


def test_stranded_counts_free_gpus_the_nodes_cpu_cannot_serve():
    # One task: a whole GPU with 8 CPUs. A node with 4 free GPUs and 16 CPUs serves 2 of them.
    mix = CompiledMix([((1, 1, 0, 100, 8000, 0), 1.0)])
    assert mix.stranded(4.0, 16_000, None) == pytest.approx(2.0)
    assert mix.stranded(4.0, 32_000, None) == 0.0
    assert mix.stranded(4.0, None, None) == 0.0  # CPU not accounted
    # No task asks for CPU or memory: nothing is stranded for want of them.
    assert CompiledMix([((1, 2, 0, 50, 0, 0), 1.0)]).stranded(4.0, 0, 0) == 0.0


def test_a_share_opens_a_gpu_rather_than_leave_a_hole_only_rare_tasks_fit():
    # Two one-GPU nodes. The mix has learnt whole GPUs, 0.47 and 0.65 shares often, 0.32 less.
    gpus = make_gpus(2, 1)
    allocator = Allocator(gpus)
    for size in [1, 1, 1, 1, "47/100", "47/100", "65/100", "32/100"] * 4:
        allocator._mix.record(SliceRequest("RTX3090", size).shape)
    first = allocator.reserve(SliceRequest("RTX3090", "47/100"), BOB)
    # Into the 0.53 hole it would leave 0.21, which no task of the mix but a rare one fits;
    # on the other GPU it leaves 0.68 for a 0.65, and the 0.53 waits for another 0.47.
    third = allocator.reserve(SliceRequest("RTX3090", "32/100"), BOB)
    assert third.node != first.node
    assert allocator.reserve(SliceRequest("RTX3090", "47/100"), BOB).node == first.node
    assert allocator.reserve(SliceRequest("RTX3090", "65/100"), BOB).node == third.node


def test_terminal_counts_a_hole_by_what_is_left_when_its_best_partner_comes():
    # Whole GPUs (half the weight), 0.47 and 0.32 shares.
    mix = CompiledMix(
        [((1, 1, 0, 100, 0, 0), 0.5), ((47, 100, 0, 47, 0, 0), 0.3), ((32, 100, 0, 32, 0, 0), 0.2)]
    )
    assert mix.terminal(1.0) == 0.0  # a free GPU: whole-GPU tasks take it
    # 0.53 free: another 0.47 leaves 0.06; 0.21 free: nothing fits, all of it stays.
    assert mix.terminal(0.53) == pytest.approx(mix.terminal(0.06))
    assert mix.terminal(0.21) > mix.terminal(0.53) > mix.terminal(0.04) > 0
    # Few whole GPUs asked for: off (opening a GPU is no worse than filling a hole).
    shares = CompiledMix([((47, 100, 0, 47, 0, 0), 0.6), ((32, 100, 0, 32, 0, 0), 0.4)])
    assert shares.terminal(0.21) == 0.0


# --- never over capacity, with CPU and memory -------------------------------------------------

TYPES = ["RTX3090", "A100", "T4"]
SIZES = [Fraction(1, 8), Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), 1, 2, 4]


def inventory() -> tuple[list[GPU], dict[str, NodeCapacity]]:
    gpus: list[GPU] = []
    shapes = [("RTX3090", 24576, 4), ("A100", 81920, 2), ("T4", 16384, 2), ("RTX3090", 24576, 1)]
    for n, (gpu_type, memory, count) in enumerate(shapes):
        gpus += [GPU(f"n{n}", i, f"G-{n}-{i}", gpu_type, memory, gpu_type) for i in range(count)]
    nodes = {f"n{n}": NodeCapacity(f"n{n}", 12_000, 49_152) for n in range(len(shapes))}
    return gpus, nodes


class PlacementMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        gpus, self.nodes = inventory()
        self.allocator = Allocator(gpus, self.nodes)
        self.initial = self.allocator.free_state()
        self.live: dict[str, None] = {}

    @rule(
        size=st.sampled_from(SIZES),
        types=st.sampled_from([None, ("RTX3090",), ("A100", "T4"), tuple(TYPES)]),
        cpu=st.sampled_from([0, 1000, 4000, 9000]),
        memory=st.sampled_from([0, 4096, 30_000]),
    )
    def reserve(self, size, types, cpu, memory):
        if types is not None and len(types) == 1:
            request = SliceRequest(types[0], size, cpu_millis=cpu, host_memory_mib=memory)
        else:
            request = SliceRequest(
                None,
                size,
                cpu_millis=cpu,
                host_memory_mib=memory,
                gpu_types=frozenset(types) if types else None,
            )
        try:
            allocation = self.allocator.reserve(request, BOB)
        except AllocationRefused as err:
            assert err.reason
            return
        assert types is None or allocation.gpu_type in types
        self.live[allocation.id] = None

    @rule(cpu=st.sampled_from([1000, 6000]), memory=st.sampled_from([0, 20_000]))
    def reserve_pod(self, cpu, memory):
        with contextlib.suppress(AllocationRefused):
            self.live[self.allocator.reserve_pod(cpu, memory, BOB).id] = None

    @rule(
        node=st.sampled_from(["n0", "n1", "n2", "n3"]),
        uid=st.sampled_from(["p1", "p2", "p3"]),
        cpu=st.sampled_from([0, 2000, 7000]),
        memory=st.sampled_from([0, 10_000]),
    )
    def observe_pod(self, node, uid, cpu, memory):
        """A pod the scheduler placed beside ours: only where the node has the room."""
        usage = self.allocator.node_usage()
        counted = self.allocator.observed_pods().get(uid)
        used_cpu, used_mem = usage.get(node, (0, 0))
        if counted is not None and counted[0] == node:
            used_cpu, used_mem = used_cpu - counted[1], used_mem - counted[2]
        capacity = self.nodes[node]
        if used_cpu + cpu <= capacity.cpu_millis and used_mem + memory <= capacity.memory_mib:
            self.allocator.observe_pod(node, uid, cpu, memory)

    @rule(uid=st.sampled_from(["p1", "p2", "p3"]))
    def forget_pod(self, uid):
        known = uid in self.allocator.observed_pods()
        assert self.allocator.forget_pod(uid) == known

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def release(self, data):
        allocation_id = data.draw(st.sampled_from(list(self.live)))
        assert self.allocator.release(allocation_id)
        del self.live[allocation_id]

    @invariant()
    def within_capacity(self):
        assert self.allocator.audit() == []
        for node, (cpu, memory) in self.allocator.node_usage().items():
            assert 0 <= cpu <= self.nodes[node].cpu_millis
            assert 0 <= memory <= self.nodes[node].memory_mib

    def teardown(self):
        for allocation_id in list(self.live):
            self.allocator.release(allocation_id)
        for uid in list(self.allocator.observed_pods()):
            self.allocator.forget_pod(uid)
        assert self.allocator.free_state() == self.initial
        assert all(used == (0, 0) for used in self.allocator.node_usage().values())


PlacementMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPlacementMachine = PlacementMachine.TestCase

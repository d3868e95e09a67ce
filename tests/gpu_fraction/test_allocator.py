from fractions import Fraction

import pytest

from gpu_fraction.allocator import Allocator
from gpu_fraction.errors import (
    AllocationRefused,
    InvalidRequestError,
    UnknownAllocationError,
    UnknownGPUTypeError,
)
from gpu_fraction.model import NodeCapacity, Owner, SliceRequest

from .helpers import RTX3090_MIB, make_gpus, make_nodes

ALICE = Owner("notebook", "alice", "cs101", "alice-server")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def req(fraction, gpu_type="RTX3090", **kw) -> SliceRequest:
    return SliceRequest(gpu_type, fraction, **kw)


def test_quarter_slice_lands_with_memory_and_compute():
    allocator = Allocator(make_gpus(1, 1))
    a = allocator.reserve(req("1/4"), ALICE)
    assert a.memory_mib == RTX3090_MIB // 4
    assert (a.compute_min, a.compute_max) == (25, 100)
    assert a.node == "gpu-00" and a.gpu_uuids == ("GPU-RTX3090-00-0",)
    assert a.owner == ALICE
    assert "1/4 of RTX3090" in a.describe() and "gpu-00" in a.describe()
    assert allocator.free_state()["GPU-RTX3090-00-0"] == (RTX3090_MIB * 3 // 4, 75)


def test_four_quarters_fill_a_gpu_and_the_fifth_is_refused_with_a_reason():
    allocator = Allocator(make_gpus(1, 1))
    for _ in range(4):
        allocator.reserve(req("1/4"), ALICE)
    with pytest.raises(AllocationRefused) as err:
        allocator.reserve(req("1/4"), ALICE)
    assert "no RTX3090 has 1/4 free: 1 of 1 in use, largest free slice 0" in err.value.reason
    assert allocator.audit() == []


def test_refusal_reports_largest_free_slice():
    allocator = Allocator(make_gpus(1, 12))
    for _ in range(11):
        allocator.reserve(req(1), ALICE)
    allocator.reserve(req("3/4"), ALICE)
    with pytest.raises(AllocationRefused) as err:
        allocator.reserve(req("1/2"), ALICE)
    assert err.value.reason.startswith(
        "no RTX3090 has 1/2 free: 12 of 12 in use, largest free slice 1/4"
    )


def test_unknown_type_names_the_known_ones_and_changes_nothing():
    allocator = Allocator(make_gpus(1, 2))
    before = allocator.free_state()
    with pytest.raises(UnknownGPUTypeError) as err:
        allocator.reserve(req("1/2", gpu_type="H100"), ALICE)
    assert isinstance(err.value, ValueError) and err.value.field == "gpu_type"
    assert "RTX3090" in str(err.value)
    assert allocator.free_state() == before and allocator.allocations() == []


def test_binpack_fills_the_fullest_gpu_and_keeps_whole_gpus_free():
    allocator = Allocator(make_gpus(2, 4))
    slices = [allocator.reserve(req("1/8"), ALICE) for _ in range(8)]
    assert {s.gpu_uuids for s in slices} == {("GPU-RTX3090-00-0",)}
    # A node with fewer free GPUs is broken into first; whole nodes stay whole.
    allocator.reserve(req(4), ALICE)
    third = allocator.reserve(req("1/2"), ALICE)
    assert third.node == "gpu-00"


def test_spread_uses_the_least_loaded_gpu():
    allocator = Allocator(make_gpus(1, 4), policy="spread")
    uuids = {allocator.reserve(req("1/4"), ALICE).gpu_uuids[0] for _ in range(4)}
    assert len(uuids) == 4


def test_fragmentation_aware_choice_beats_plain_best_fit():
    """Best fit would put 1/4 on the GPU with 3/8 free, leaving 1/8 nobody asks for; the
    fragmentation measure prefers the GPU with 1/2 free, leaving a 1/4 that fits a 1/4."""
    allocator = Allocator(make_gpus(1, 2))
    a0 = allocator.reserve(req("1/2", node="gpu-00"), ALICE)
    allocator.reserve(req("1/8", node="gpu-00"), ALICE)  # same GPU -> 3/8 free
    allocator.reserve(req("1/2", node="gpu-00"), ALICE)  # second GPU -> 1/2 free
    assert a0.gpu_uuids == ("GPU-RTX3090-00-0",)
    # Teach the mix that only 1/4 requests happen.
    for _ in range(600):
        allocator._mix.record((1, 4))
    choice = allocator.reserve(req("1/4"), ALICE)
    assert choice.gpu_uuids == ("GPU-RTX3090-00-1",)


def test_whole_gpus_on_one_node_best_fit_node():
    allocator = Allocator(make_gpus(2, 4))
    allocator.reserve(req(1, node="gpu-01"), ALICE)  # gpu-01 now has 3 free
    two = allocator.reserve(req(2), ALICE)
    assert two.node == "gpu-01" and len(two.gpu_uuids) == 2
    four = allocator.reserve(req(4), ALICE)
    assert four.node == "gpu-00"
    with pytest.raises(AllocationRefused) as err:
        allocator.reserve(req(2), ALICE)
    assert "no node has 2 free RTX3090 GPUs: the most free on one node is 1" in err.value.reason


def test_node_and_zone_constraints():
    gpus = make_gpus(2, 1)
    nodes = {
        "gpu-00": NodeCapacity("gpu-00", zone="lab-a"),
        "gpu-01": NodeCapacity("gpu-01", zone="lab-b"),
    }
    allocator = Allocator(gpus, nodes)
    assert allocator.reserve(req("1/2", node="gpu-01"), ALICE).node == "gpu-01"
    assert allocator.reserve(req("1/2", zone="lab-a"), ALICE).node == "gpu-00"
    allocator.reserve(req("1/2", zone="lab-a"), ALICE)
    with pytest.raises(AllocationRefused, match="in zone lab-a"):
        allocator.reserve(req("1/4", zone="lab-a"), ALICE)
    with pytest.raises(AllocationRefused, match="no RTX3090 GPU on node nowhere"):
        allocator.reserve(req("1/4", node="nowhere"), ALICE)


def test_node_cpu_and_memory_are_accounted():
    gpus = make_gpus(2, 1)
    allocator = Allocator(gpus, make_nodes(gpus, cpu_millis=8000, memory_mib=32768))
    first = allocator.reserve(req("1/4", cpu_millis=6000, host_memory_mib=8192), ALICE)
    # The same GPU has room, but its node has only 2 CPUs left: the next pod goes elsewhere.
    second = allocator.reserve(req("1/4", cpu_millis=4000, host_memory_mib=8192), ALICE)
    assert second.node != first.node
    before = allocator.free_state()
    with pytest.raises(AllocationRefused, match="without 5 CPU to spare"):
        allocator.reserve(req("1/4", cpu_millis=5000), ALICE)
    assert allocator.free_state() == before
    allocator.release(first.id)
    assert allocator.reserve(req("1/4", cpu_millis=5000), ALICE).node == first.node


def test_reservation_expires_unless_committed():
    clock = FakeClock()
    allocator = Allocator(make_gpus(1, 1), reservation_ttl=30, clock=clock)
    kept = allocator.reserve(req("1/2"), ALICE)
    dropped = allocator.reserve(req("1/2"), ALICE)
    allocator.commit(kept.id)
    clock.now += 29
    assert allocator.expire() == []
    clock.now += 2
    assert [a.id for a in allocator.expire()] == [dropped.id]
    assert allocator.get(kept.id) == kept and allocator.is_committed(kept.id)
    with pytest.raises(UnknownAllocationError, match="released or expired"):
        allocator.commit(dropped.id)
    assert allocator.free_state()["GPU-RTX3090-00-0"] == (RTX3090_MIB // 2, 50)


def test_expired_reservation_frees_room_for_the_next_reserve():
    clock = FakeClock()
    allocator = Allocator(make_gpus(1, 1), reservation_ttl=10, clock=clock)
    allocator.reserve(req(1), ALICE)
    with pytest.raises(AllocationRefused):
        allocator.reserve(req(1), ALICE)
    clock.now += 11
    assert allocator.reserve(req(1), ALICE)


def test_release_is_idempotent_and_restores_everything():
    allocator = Allocator(make_gpus(2, 4))
    initial = allocator.free_state()
    allocations = [allocator.reserve(req(f), ALICE) for f in ("1/8", "1/4", 2, "1/2", 1)]
    for a in allocations:
        assert allocator.release(a.id) is True
        assert allocator.release(a.id) is False
    assert allocator.free_state() == initial
    assert allocator.capacity()["RTX3090"][Fraction(4)] == 2


def test_capacity_counts_slices_that_could_start_now():
    allocator = Allocator(make_gpus(2, 4))
    allocator.reserve(req("3/4"), ALICE)
    capacity = allocator.capacity()["RTX3090"]
    assert capacity[Fraction(1, 4)] == 7 * 4 + 1
    assert capacity[Fraction(1, 2)] == 7 * 2
    assert capacity[Fraction(1)] == 7
    assert capacity[Fraction(4)] == 1
    assert capacity[Fraction(8)] == 0


def test_bad_policy_and_ttl_are_refused():
    with pytest.raises(ValueError, match="policy"):
        Allocator(make_gpus(1, 1), policy="random")
    with pytest.raises(ValueError, match="reservation_ttl"):
        Allocator(make_gpus(1, 1), reservation_ttl=0)
    with pytest.raises(InvalidRequestError):
        Allocator(make_gpus(1, 1)).reserve(req("5/4"), ALICE)


def test_usage_lists_slices_per_gpu():
    allocator = Allocator(make_gpus(1, 2))
    a = allocator.reserve(req("1/4"), ALICE)
    allocator.commit(a.id)
    rows = {row["gpu"].uuid: row for row in allocator.usage()}
    row = rows[a.gpu_uuids[0]]
    assert row["allocations"] == [a] and row["committed"] == {a.id: True}
    assert row["free_memory_mib"] == RTX3090_MIB * 3 // 4


def test_from_a_simulated_inventory():
    from gpu_fraction.simulated import simulated

    allocator = Allocator.from_inventory(simulated("lab-1=RTX3090:24576x2"), policy="spread")
    allocation = allocator.reserve(req("1/2"), ALICE)
    assert allocation.simulated and allocation.node == "lab-1"
    assert "(simulated)" in allocation.describe()

"""Property tests: any sequence of reserve/commit/release/expire keeps every GPU within capacity,
and releasing everything returns the allocator to its initial state."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpu_fraction.allocator import Allocator
from gpu_fraction.errors import AllocationRefused, UnknownAllocationError
from gpu_fraction.model import GPU, Allocation, NodeCapacity, Owner, SliceRequest

SIZES = [
    Fraction(1, 8),
    Fraction(1, 4),
    Fraction(3, 8),
    Fraction(1, 2),
    Fraction(1),
    Fraction(2),
    Fraction(4),
]


def inventory() -> tuple[list[GPU], dict[str, NodeCapacity]]:
    gpus = []
    for n, (gpu_type, memory, count) in enumerate(
        [("RTX3090", 24576, 4), ("RTX3090", 24576, 2), ("A100", 81920, 4)]
    ):
        node = f"node-{n}"
        gpus += [GPU(node, i, f"GPU-{n}-{i}", gpu_type, memory, gpu_type) for i in range(count)]
    nodes = {f"node-{n}": NodeCapacity(f"node-{n}", 16000, 65536) for n in range(3)}
    return gpus, nodes


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        gpus, nodes = inventory()
        self.allocator = Allocator(gpus, nodes, reservation_ttl=10, clock=lambda: self.now)
        self.initial = self.allocator.free_state()
        self.live: dict[str, None] = {}  # in creation order: ids are random, not sortable

    @rule(
        fraction=st.sampled_from(SIZES),
        gpu_type=st.sampled_from(["RTX3090", "A100"]),
        policy=st.sampled_from(["binpack", "spread"]),
        cpu=st.sampled_from([0, 1000, 4000]),
        memory=st.sampled_from([None, 1000, 9000]),
        compute=st.sampled_from([None, 5, 60]),
    )
    def reserve(self, fraction, gpu_type, policy, cpu, memory, compute):
        if fraction >= 1:
            memory = compute = None
        request = SliceRequest(
            gpu_type, fraction, memory_mib=memory, compute_min=compute, cpu_millis=cpu
        )
        try:
            allocation = self.allocator.reserve(request, Owner("job", "u"), policy=policy)
        except AllocationRefused as err:
            assert err.reason
            return
        self.live[allocation.id] = None

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def commit(self, data):
        allocation_id = data.draw(st.sampled_from(list(self.live)))
        try:
            self.allocator.commit(allocation_id)
        except UnknownAllocationError:
            assert self.allocator.get(allocation_id) is None  # it had expired

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def release(self, data):
        allocation_id = data.draw(st.sampled_from(list(self.live)))
        self.allocator.release(allocation_id)
        assert self.allocator.release(allocation_id) is False
        self.live.pop(allocation_id, None)

    @rule(seconds=st.sampled_from([1, 5, 11]))
    def advance_clock_and_expire(self, seconds):
        self.now += seconds
        for allocation in self.allocator.expire():
            assert not self.allocator.is_committed(allocation.id)

    @invariant()
    def within_capacity(self):
        assert self.allocator.audit() == []

    def teardown(self):
        for allocation in self.allocator.allocations():
            self.allocator.release(allocation.id)
        assert self.allocator.free_state() == self.initial
        assert all(used == (0, 0) for used in self.allocator.node_usage().values())
        assert self.allocator.audit() == []


AllocatorMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAllocatorMachine = AllocatorMachine.TestCase


def _claim(gpus: list[GPU], draw, number: int) -> Allocation:
    """An allocation as a pod might claim it: on a GPU or two, or CPU only, sometimes odd
    (an unknown GPU, another node's GPU, one GPU twice, a node the allocator does not know)."""
    kind = draw(st.sampled_from(["share", "share", "share", "whole", "cpu", "odd"]))
    owner = Owner("notebook", "u")
    allocation_id = draw(st.sampled_from([f"a{number}"] * 5 + ["dup"]))
    node = draw(st.sampled_from(["node-0", "node-1", "node-2"]))
    cpu = draw(st.sampled_from([0, 1000, 6000]))
    memory = draw(st.sampled_from([0, 4096, 30000]))
    on_node = [g for g in gpus if g.node == node]
    if kind == "cpu":
        node = draw(st.sampled_from([node, "elsewhere"]))
        return Allocation.cpu_only(allocation_id, owner, node, cpu, memory)
    if kind == "whole":
        chosen = draw(st.lists(st.sampled_from(on_node), min_size=2, max_size=2, unique=True))
        mib, compute = chosen[0].memory_mib, 100
    else:
        chosen = [draw(st.sampled_from(on_node))]
        mib = draw(st.sampled_from([3072, 6144, 12288, 20000]))
        compute = draw(st.sampled_from([0, 12, 25, 50, 90]))
    uuids = [g.uuid for g in chosen]
    if kind == "odd":
        uuids = draw(
            st.sampled_from(
                [
                    ["GPU-gone"],
                    [next(g.uuid for g in gpus if g.node != node)],
                    [uuids[0], uuids[0]],
                ]
            )
        )
    return Allocation(
        allocation_id,
        owner,
        node,
        chosen[0].gpu_type,
        tuple(uuids),
        tuple(g.index for g in chosen[: len(uuids)]),
        Fraction(len(uuids)) if kind == "whole" else Fraction(1, 4),
        mib,
        chosen[0].memory_mib,
        compute,
        100,
        cpu,
        memory,
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data(), held=st.integers(0, 3), committed=st.booleans())
def test_adopt_many_does_what_adopting_one_by_one_does(data, held, committed):
    """Batch adoption (a restart) holds and refuses exactly what adopt() in turn would, with
    the same reasons, and leaves the same state behind."""
    gpus, nodes = inventory()
    claims = data.draw(st.lists(st.builds(lambda: None), max_size=30))
    claims = [_claim(gpus, data.draw, i) for i in range(len(claims))]
    one, many = Allocator(gpus, nodes), Allocator(gpus, nodes)
    for allocator in (one, many):  # something held before, and a pod counted on a node
        allocator.observe_pod("node-1", "uid-1", 3000, 8192)
        for i in range(held):
            allocator.adopt(Allocation.cpu_only(f"held{i}", Owner("job", "v"), "node-0", 2000, 0))
    if held and data.draw(st.booleans()):  # an id held already
        claims.append(Allocation.cpu_only("held0", Owner("job", "w"), "node-2", 0, 0))
    expected = []
    for claim in claims:
        try:
            one.adopt(claim, committed)
            expected.append(None)
        except AllocationRefused as err:
            expected.append(err.reason)
    assert many.adopt_many(claims, committed) == expected
    assert many.free_state() == one.free_state()
    assert many.node_usage() == one.node_usage()
    assert many.allocations() == one.allocations()
    assert [many.is_committed(a.id) for a in claims] == [one.is_committed(a.id) for a in claims]
    assert many.capacity() == one.capacity()
    assert many.audit() == one.audit() == []
    for allocation in many.allocations():  # and it keeps working
        many.release(allocation.id)
    many.forget_pod("uid-1")
    assert many.free_state() == Allocator(gpus, nodes).free_state()
    assert many.audit() == []

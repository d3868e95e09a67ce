"""Property tests: any sequence of reserve/commit/release/expire keeps every GPU within capacity,
and releasing everything returns the allocator to its initial state."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpu_fraction.allocator import Allocator
from gpu_fraction.errors import AllocationRefused, UnknownAllocationError
from gpu_fraction.model import GPU, NodeCapacity, Owner, SliceRequest

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

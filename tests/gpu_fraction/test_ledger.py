"""The cluster is the ledger: annotations round-trip and rebuild restores the live state."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_fraction import keys
from gpu_fraction.allocator import Allocator
from gpu_fraction.annotations import from_annotations, to_annotations
from gpu_fraction.errors import AllocationRefused, AnnotationError
from gpu_fraction.ledger import rebuild
from gpu_fraction.model import Allocation, Owner, SliceRequest

from .helpers import make_gpus, make_nodes


def pod(name: str, annotations: dict, created: str = "2026-11-29T10:00:00Z", phase="Running"):
    """A pod as the Kubernetes API returns it (raw JSON)."""
    return {
        "metadata": {
            "name": name,
            "namespace": "hub",
            "creationTimestamp": created,
            "annotations": annotations,
        },
        "status": {"phase": phase},
    }


def busy_allocator(seed: int = 7) -> tuple[Allocator, list[dict]]:
    gpus = make_gpus(3, 4)
    allocator = Allocator(gpus, make_nodes(gpus, cpu_millis=32000, memory_mib=131072))
    rng = random.Random(seed)
    pods = []
    for i in range(60):
        request = SliceRequest(
            "RTX3090", rng.choice(["1/8", "1/4", "1/2", 1, 2]), cpu_millis=rng.choice([0, 1000])
        )
        try:
            allocation = allocator.reserve(request, Owner("notebook", f"u{i}", "cs101", f"srv{i}"))
        except AllocationRefused:
            continue
        allocator.commit(allocation.id)
        pods.append(pod(f"jupyter-u{i}", to_annotations(allocation)))
    return allocator, pods


def test_annotations_round_trip():
    allocator = Allocator(make_gpus(1, 2))
    owner = Owner("job", "bob", "lab-x", "train-1")
    for request in (SliceRequest("RTX3090", "1/4", compute_max=50), SliceRequest("RTX3090", 2)):
        allocation = allocator.reserve(request, owner)
        annotations = to_annotations(allocation)
        assert all(isinstance(v, str) for v in annotations.values())
        assert all(k.startswith("ai-console/") for k in annotations)
        assert from_annotations(annotations, allocator.gpu_by_uuid) == allocation
        allocator.release(allocation.id)


def test_rebuild_equals_the_live_state():
    live, pods = busy_allocator()
    random.Random(1).shuffle(pods)
    fresh = Allocator(make_gpus(3, 4), make_nodes(make_gpus(3, 4), 32000, 131072))
    report = rebuild(fresh, pods)
    assert report.ok, report.summary()
    assert len(report.adopted) == len(pods) == len(live.allocations())
    assert fresh.free_state() == live.free_state()
    assert fresh.node_usage() == live.node_usage()
    assert sorted(a.id for a in fresh.allocations()) == sorted(a.id for a in live.allocations())
    assert fresh.capacity() == live.capacity()
    assert all(fresh.is_committed(a.id) for a in fresh.allocations())
    # The restored allocator keeps working: everything released gives a clean GPU set.
    for allocation in fresh.allocations():
        fresh.release(allocation.id)
    assert fresh.free_state() == Allocator(make_gpus(3, 4)).free_state()


def test_cpu_only_pods_hold_their_node_after_a_restart():
    """A pod placed without a GPU (reserve_pod) keeps its node's CPU and memory through a
    restart: the rebuilt allocator refuses what the live one refused."""
    gpus = make_gpus(2, 2)
    nodes = make_nodes(gpus, cpu_millis=16000, memory_mib=65536)
    live = Allocator(gpus, nodes)
    owner = Owner("notebook", "ann", "cs101", "cpu")
    on_gpu = live.reserve(SliceRequest("RTX3090", "1/4", cpu_millis=6000, node="gpu-00"), owner)
    cpu_only = live.reserve_pod(10000, 8192, owner, nodes=frozenset({"gpu-01"}))
    for allocation in (on_gpu, cpu_only):
        live.commit(allocation.id)
    annotations = to_annotations(cpu_only)
    assert from_annotations(annotations, live.gpu_by_uuid) == cpu_only
    pods = [pod("jupyter-gpu", to_annotations(on_gpu)), pod("jupyter-cpu", annotations)]

    def refusals(allocator):
        out = []
        for attempt in (
            lambda: allocator.reserve_pod(12000, 0, owner),
            lambda: allocator.reserve(SliceRequest("RTX3090", "1/8", cpu_millis=12000), owner),
        ):
            with pytest.raises(AllocationRefused) as err:
                attempt()
            out.append(err.value.reason)
        return out

    before = refusals(live)
    fresh = Allocator(gpus, nodes)
    report = rebuild(fresh, pods)
    assert report.ok, report.summary()
    assert {str(ref): a for ref, a in report.adopted}["hub/jupyter-cpu"] == cpu_only
    assert report.summary().startswith(
        "restored 1 GPU slices and 1 CPU-only pods' CPU and memory from pods"
    )
    assert fresh.node_usage() == live.node_usage() == {"gpu-00": (6000, 0), "gpu-01": (10000, 8192)}
    assert fresh.free_state() == live.free_state()
    assert fresh.is_committed(cpu_only.id)
    assert refusals(fresh) == before
    # Released, its node's CPU is free again.
    assert fresh.release(cpu_only.id)
    assert fresh.reserve_pod(12000, 0, owner).node == "gpu-01"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (keys.ANN_GPU_UUIDS, "GPU-RTX3090-00-0", "holds no GPU"),
        (keys.ANN_GPU_TYPE, "RTX3090", "has type 'none'"),
        (keys.ANN_MEMORY_MIB, "512", "must be 0..0"),
        (keys.ANN_CPU_MILLIS, "-5", "must be >= 0"),
        (keys.ANN_NODE, "", "missing"),
    ],
)
def test_a_malformed_cpu_only_pod_is_reported(key, value, message):
    allocation = Allocation.cpu_only("c1", Owner("job", "a"), "gpu-00", 2000, 1024)
    annotations = {**to_annotations(allocation), key: value}
    gpus = make_gpus(1, 1)
    report = rebuild(Allocator(gpus, make_nodes(gpus, 8000, 8192)), [pod("p", annotations)])
    assert [(str(p.pod), p.reason.split(":")[0]) for p in report.malformed] == [("hub/p", key)]
    assert message in report.malformed[0].reason


def test_a_cpu_only_pod_on_a_node_not_managed_is_a_conflict():
    allocation = Allocation.cpu_only("c1", Owner("job", "a"), "gone-node", 2000, 1024)
    gpus = make_gpus(1, 1)
    fresh = Allocator(gpus, make_nodes(gpus, 8000, 8192))
    report = rebuild(fresh, [pod("p", to_annotations(allocation))])
    assert [p.reason for p in report.conflicts] == [
        "node gone-node is not one of the nodes the allocator manages"
    ]
    assert fresh.node_usage() == {}


def test_conflicting_pods_are_reported_not_dropped():
    allocator = Allocator(make_gpus(1, 1))
    first = allocator.reserve(SliceRequest("RTX3090", "3/4"), Owner("notebook", "a"))
    allocator.release(first.id)
    second = allocator.reserve(SliceRequest("RTX3090", "1/2"), Owner("notebook", "b"))
    # Both claim the same GPU: together 5/4 of it.
    pods = [
        pod("late", to_annotations(second), created="2026-11-29T11:00:00Z"),
        pod("early", to_annotations(first), created="2026-11-29T09:00:00Z"),
    ]
    fresh = Allocator(make_gpus(1, 1))
    report = rebuild(fresh, pods)
    assert [str(ref) for ref, _ in report.adopted] == ["hub/early"]
    assert len(report.conflicts) == 1
    problem = report.conflicts[0]
    assert str(problem.pod) == "hub/late"
    assert "MiB free" in problem.reason
    assert not report.ok and "1 in conflict" in report.summary()
    assert fresh.audit() == []


def test_two_pods_with_one_allocation_id_the_older_keeps_it():
    """A pod copied with its annotations (same allocation id, another GPU) does not double the
    slice: the pod that started first holds it, the other is a conflict."""
    allocator = Allocator(make_gpus(1, 2))
    allocation = allocator.reserve(SliceRequest("RTX3090", "1/2"), Owner("job", "a"))
    other = next(g.uuid for g in make_gpus(1, 2) if g.uuid != allocation.gpu_uuids[0])
    copied = {**to_annotations(allocation), keys.ANN_GPU_UUIDS: other}
    pods = [
        pod("copy", copied, created="2026-11-29T11:00:00Z"),
        pod("first", to_annotations(allocation), created="2026-11-29T09:00:00Z"),
    ]
    fresh = Allocator(make_gpus(1, 2))
    report = rebuild(fresh, pods)
    assert [str(ref) for ref, _ in report.adopted] == ["hub/first"]
    assert [(str(p.pod), p.reason) for p in report.conflicts] == [
        ("hub/copy", f"allocation {allocation.id} is already held")
    ]
    assert fresh.free_state() == allocator.free_state()


def test_unknown_gpu_malformed_and_finished_pods():
    allocator = Allocator(make_gpus(1, 2))
    good = allocator.reserve(SliceRequest("RTX3090", "1/2"), Owner("job", "a"))
    bad_fraction = {**to_annotations(good), keys.ANN_FRACTION: "lots"}
    missing_user = {k: v for k, v in to_annotations(good).items() if k != keys.ANN_OWNER_USER}
    bad_memory = {**to_annotations(good), keys.ANN_MEMORY_MIB: "-3"}
    other_gpu = {**to_annotations(good), keys.ANN_GPU_UUIDS: "GPU-gone", keys.ANN_ALLOCATION: "x1"}
    done = {**to_annotations(good), keys.ANN_ALLOCATION: "x2"}
    pods = [
        pod("p-fraction", bad_fraction),
        pod("p-user", missing_user),
        pod("p-memory", bad_memory),
        pod("p-gone", other_gpu),
        pod("p-done", done, phase="Succeeded"),
        pod("p-plain", {"other/annotation": "1"}),
        {"metadata": {"name": "no-annotations", "namespace": "hub"}},
    ]
    report = rebuild(Allocator(make_gpus(1, 2)), pods)
    reasons = {str(p.pod): p.reason for p in report.malformed}
    assert reasons["hub/p-fraction"].startswith("ai-console/fraction:")
    assert reasons["hub/p-user"] == "ai-console/owner-user: missing"
    assert reasons["hub/p-memory"].startswith("ai-console/memory-mib: must be >= 1")
    assert [p.reason for p in report.conflicts] == ["GPU GPU-gone is not in the inventory"]
    assert report.finished == 1 and report.adopted == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (keys.ANN_GPU_UUIDS, "", "missing"),
        (keys.ANN_COMPUTE_MIN, "90", "above compute-max"),
        (keys.ANN_COMPUTE_MAX, "x", "whole number"),
        (keys.ANN_OWNER_KIND, "pod", "must be one of"),
        (keys.ANN_FRACTION, "3/2", "whole number of GPUs"),
    ],
)
def test_malformed_annotation_names_the_key(key, value, message):
    allocator = Allocator(make_gpus(1, 1))
    allocation = allocator.reserve(
        SliceRequest("RTX3090", "1/2", compute_max=60), Owner("job", "a")
    )
    annotations = {**to_annotations(allocation), key: value}
    with pytest.raises(AnnotationError) as err:
        from_annotations(annotations)
    assert isinstance(err.value, ValueError)
    assert key in str(err.value) and message in str(err.value)


def test_rebuild_accepts_kubernetes_client_objects():
    from types import SimpleNamespace

    allocator = Allocator(make_gpus(1, 1))
    allocation = allocator.reserve(SliceRequest("RTX3090", "1/4"), Owner("notebook", "a"))
    v1pod = SimpleNamespace(
        metadata=SimpleNamespace(
            name="jupyter-a",
            namespace="hub",
            annotations=to_annotations(allocation),
            creation_timestamp="2026-11-29T10:00:00Z",
        ),
        status=SimpleNamespace(phase="Pending"),
    )
    fresh = Allocator(make_gpus(1, 1))
    assert rebuild(fresh, [v1pod]).ok
    assert fresh.free_state() == allocator.free_state()


ANNOTATION_KEYS = sorted(
    getattr(keys, name) for name in dir(keys) if name.startswith("ANN_") and name != "ANN_NODE_GPUS"
)
ODD_VALUES = ["", "0", "1", "-1", " 7 ", "1/4", "2", "x", None, 5, "GPU-a,GPU-b", "GPU-a,", "101"]


@settings(max_examples=300, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(ANNOTATION_KEYS), st.sampled_from(ODD_VALUES), max_size=3
    ),
    dropped=st.sets(st.sampled_from(ANNOTATION_KEYS), max_size=2),
)
def test_quick_reading_agrees_with_the_checked_one(changes, dropped):
    """The straight pass a restart uses reads exactly what the checked reading accepts."""
    from gpu_fraction.annotations import _read_checked, _read_plain

    allocator = Allocator(make_gpus(1, 2))
    allocation = allocator.reserve(SliceRequest("RTX3090", "1/4"), Owner("job", "a", "p", "n"))
    annotations = {**to_annotations(allocation), **changes}
    for key in dropped:
        annotations.pop(key, None)
    lookup = allocator.gpu_by_uuid

    def outcome(read):
        try:
            return read(annotations, lookup)
        except ValueError as err:  # AnnotationError, or the owner's own checks
            return type(err), str(err)

    checked, plain = outcome(_read_checked), outcome(_read_plain)
    assert plain is None or plain == checked
    assert outcome(from_annotations) == checked

"""The requests of pods the allocator did not place, as the scheduler counts them."""

from __future__ import annotations

import logging

import pytest

from gpu_fraction import keys
from gpu_fraction.allocator import Allocator
from gpu_fraction.errors import AllocationRefused
from gpu_fraction.model import GPU, NodeCapacity, Owner, SliceRequest
from spawner.node_pods import pod_requests, sync


def container(cpu: str | None = None, memory: str | None = None, **extra) -> dict:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": "c", "resources": {"requests": requests}, **extra}


def pod(uid: str, node: str | None, *containers: dict, **spec) -> dict:
    return {
        "metadata": {"uid": uid, "name": uid, "namespace": "other"},
        "spec": {"nodeName": node, "containers": list(containers), **spec},
        "status": {"phase": "Running"},
    }


def test_requests_are_the_containers_sum_rounded_up() -> None:
    assert pod_requests(pod("a", "n", container("500m", "1Gi"), container("1.5", "100M"))) == (
        2000,
        1024 + 96,  # 100 MB is 95.4 MiB: rounded up, never under-counted
    )
    assert pod_requests(pod("b", "n", container())) == (0, 0)


def test_init_containers_sidecars_and_overhead_count_as_kubernetes_counts_them() -> None:
    spec = {
        "initContainers": [
            container("4", "1Gi"),  # runs alone, before the others: the max counts
            container("250m", "256Mi", restartPolicy="Always"),  # a sidecar: added
            container("1", "8Gi"),  # runs beside the sidecar started before it
        ],
        "overhead": {"cpu": "100m", "memory": "64Mi"},
    }
    cpu, memory = pod_requests(pod("a", "n", container("1", "2Gi"), **spec))
    assert cpu == max(1000 + 250, 4000, 250 + 1000) + 100
    assert memory == max(2048 + 256, 1024, 256 + 8192) + 64


def test_pod_level_requests_stand_for_the_containers() -> None:
    spec = {"resources": {"requests": {"cpu": "3", "memory": "3Gi"}}}
    assert pod_requests(pod("a", "n", container("1", "1Gi"), **spec)) == (3000, 3072)


def allocator() -> Allocator:
    gpus = [GPU("gpu-1", 0, "GPU-1", "NVIDIA GeForce RTX 3090", 24576, "RTX3090")]
    return Allocator(gpus, {"gpu-1": NodeCapacity("gpu-1", 8000, 32768)})


def quarter(cpu: int) -> SliceRequest:
    return SliceRequest("RTX3090", "1/4", cpu_millis=cpu, host_memory_mib=1024)


def test_other_pods_take_cpu_from_placement_until_they_go() -> None:
    a = allocator()
    managed = {"gpu-1"}.__contains__
    busy = pod("big", "gpu-1", container("7", "4Gi"))
    assert sync(a, [busy, pod("elsewhere", "cpu-9", container("64"))], managed) == (1, 0)
    assert a.node_usage()["gpu-1"] == (7000, 4096)
    with pytest.raises(AllocationRefused, match="CPU"):
        a.reserve(quarter(2000), Owner("notebook", "alice"))
    assert sync(a, [busy], managed) == (0, 0)  # seen again: counted once
    assert sync(a, [], managed) == (0, 1)  # it ended
    assert a.node_usage()["gpu-1"] == (0, 0)
    a.reserve(quarter(2000), Owner("notebook", "alice"))


def test_pods_holding_a_slice_pending_or_ended_are_not_counted_twice() -> None:
    a = allocator()
    ours = pod("ours", "gpu-1", container("4"))
    ours["metadata"]["labels"] = {keys.PREFIX + "slice": "true"}
    pending = pod("pending", None, container("4"))
    ended = pod("ended", "gpu-1", container("4"))
    ended["status"]["phase"] = "Succeeded"
    assert sync(a, [ours, pending, ended], {"gpu-1"}.__contains__) == (0, 0)
    assert a.observed_pods() == {}


def test_a_pod_whose_requests_cannot_be_read_is_skipped_and_logged(caplog) -> None:
    a = allocator()
    odd = pod("odd", "gpu-1", container("lots"))
    fine = pod("fine", "gpu-1", container("1"))
    with caplog.at_level(logging.WARNING):
        assert sync(a, [odd, fine], {"gpu-1"}.__contains__, logging.getLogger("t")) == (1, 0)
    assert "other/odd" in caplog.text and "not counted" in caplog.text
    assert set(a.observed_pods()) == {"fine"}

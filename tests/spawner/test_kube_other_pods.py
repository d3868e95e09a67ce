"""Pods the allocator did not place take CPU on a GPU node; placement leaves it to them
(real control plane, the hub's RBAC)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gpu_fraction import keys
from gpu_fraction.model import Owner, SliceRequest
from spawner.manager import GPUSliceManager
from spawner.slices import SliceRefused

from ..control_plane.api import ApiError
from .kube_setup import add_gpu_node, make_spawner, spawner_config


def room(cpu: str, memory: str) -> dict[str, str]:
    return {"cpu": cpu, "memory": memory, "pods": "110"}


def other_pod(name: str, node: str, cpu: str) -> dict:
    """A pod of another team, bound to ``node`` by the scheduler (nodeName), holding no slice."""
    container = {"name": "work", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}
    return {"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [container]}}


async def counted(node: str, cpu_millis: int, timeout: float = 20) -> None:
    """Wait until the hub counts ``cpu_millis`` of other pods on ``node``."""
    allocator = GPUSliceManager.instance().allocator
    for _ in range(int(timeout / 0.1)):
        if allocator.node_usage().get(node, (0, 0))[0] == cpu_millis:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{node}: counted {allocator.node_usage().get(node)}, not {cpu_millis}")


@pytest.fixture
def other_namespace(kube):
    name = f"{kube.namespace}-team"
    kube.admin.create("namespaces", {"metadata": {"name": name}})
    yield name
    with contextlib.suppress(ApiError):
        kube.admin.delete("namespaces", name)


async def test_a_slice_is_not_pinned_where_another_teams_pod_took_the_cpu(kube, other_namespace):
    node = "gpu-41"
    add_gpu_node(kube, node, gpus=1, allocatable=room("8", "64Gi"))
    kube.admin.create("pods", other_pod("training", node, "7"), other_namespace)
    config = spawner_config(
        kube.namespace,
        KubeSpawner__cpu_guarantee=2.0,
        GPUSliceManager__other_pods_interval=0.2,
    )
    spawner = make_spawner(config, "alice", "quarter")
    # The hub counts the other team's 7 CPUs from the first list: 2 more do not fit.
    with pytest.raises(SliceRefused, match="CPU"):
        await spawner.start()
    assert kube.get("pods", spawner.pod_name) is None  # refused before any pod was made
    assert GPUSliceManager.instance().allocations() == []
    # The other pod ends; the watch sees it go and the same spawn now runs there.
    kube.admin.delete("pods", "training", other_namespace, grace=0)
    await counted(node, 0)
    spawner = make_spawner(config, "alice", "quarter")
    await spawner.start()
    pod = kube.get("pods", spawner.pod_name)
    assert pod["spec"]["nodeName"] == node and pod["status"]["phase"] == "Running"
    # A CPU-only notebook in the hub's own namespace is counted too (it holds no slice).
    kube.admin.create("pods", other_pod("cpu-notebook", node, "1500m"), kube.namespace)
    await counted(node, 2000 + 1500)
    await spawner.stop()
    await counted(node, 1500)


async def test_cpu_only_servers_can_be_kept_off_the_gpu_nodes(kube):
    add_gpu_node(kube, "gpu-43", gpus=1)
    kube.add_node("cpu-43")  # no GPU labels: not managed
    config = spawner_config(kube.namespace, GPUSliceManager__cpu_only_pods="off_gpu_nodes")
    spawners = [make_spawner(config, f"cpu{i}", "cpu") for i in range(3)]
    await asyncio.gather(*(s.start() for s in spawners))
    nodes = {kube.get("pods", s.pod_name)["spec"]["nodeName"] for s in spawners}
    assert nodes == {"cpu-43"}  # the GPU node's CPU stays for GPU servers
    await asyncio.gather(*(s.stop() for s in spawners))


async def test_cpu_only_servers_go_where_they_strand_the_least_gpu_capacity(kube):
    add_gpu_node(kube, "gpu-51", gpus=1, allocatable=room("8", "64Gi"))
    add_gpu_node(kube, "gpu-52", gpus=1, allocatable=room("64", "256Gi"))
    config = spawner_config(kube.namespace, KubeSpawner__cpu_guarantee=6.0)
    # A class has been starting quarter-GPU servers with 6 CPUs: the allocator learns it.
    manager = GPUSliceManager.instance(config=config)
    wanted = SliceRequest("RTX3090", "1/4", cpu_millis=6000)
    for _ in range(16):
        manager.release((await manager.reserve(wanted, Owner("notebook", "class"))).id)
    cpu = make_spawner(config, "dora", "cpu")
    await cpu.start()
    pod = kube.get("pods", cpu.pod_name)
    # On gpu-51 its 6 CPUs would leave the GPU there 2: too few for a GPU server like that.
    assert pod["spec"]["nodeName"] == "gpu-52" and pod["status"]["phase"] == "Running"
    held = pod["metadata"]["annotations"]
    assert held[keys.ANN_NODE] == "gpu-52" and held[keys.ANN_GPU_UUIDS] == ""
    allocator = GPUSliceManager.instance().allocator
    assert allocator.is_committed(held[keys.ANN_ALLOCATION])
    assert allocator.node_usage()["gpu-52"] == (6000, 0)
    assert GPUSliceManager.instance().allocations() == []  # a node held, not a GPU slice
    # The hub restarts: the new allocator finds the hold in the pod's annotations.
    GPUSliceManager.instance().close()
    GPUSliceManager.clear_instance()
    allocator = await GPUSliceManager.instance(config=config).ready()
    assert allocator.is_committed(held[keys.ANN_ALLOCATION])
    assert allocator.node_usage()["gpu-52"] == (6000, 0)
    await cpu.stop()
    assert allocator.get(held[keys.ANN_ALLOCATION]) is None
    assert allocator.node_usage()["gpu-52"] == (0, 0)


async def test_cpu_only_servers_the_gpu_nodes_cannot_take_go_to_the_other_nodes(kube):
    add_gpu_node(kube, "gpu-53", gpus=1, allocatable=room("4", "64Gi"))
    kube.add_node("cpu-53", allocatable=room("32", "128Gi"))
    config = spawner_config(kube.namespace, KubeSpawner__cpu_guarantee=6.0)
    cpu = make_spawner(config, "erin", "cpu")
    await cpu.start()
    pod = kube.get("pods", cpu.pod_name)
    assert pod["spec"]["nodeName"] == "cpu-53"
    assert keys.ANN_ALLOCATION not in (pod["metadata"].get("annotations") or {})
    await cpu.stop()

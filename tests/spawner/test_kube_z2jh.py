"""z2jh-style profiles on the real control plane: node pools, tainted GPU pools and GPUs from
the NVIDIA device plugin, with the real scheduler deciding where pods may run."""

from __future__ import annotations

import pytest

from gpu_fraction import keys
from spawner.kube import FractionalGPUKubeSpawner  # noqa: F401  (named in config)
from spawner.manager import GPUSliceManager
from spawner.slices import SliceRefused

from .kube_setup import add_gpu_node, make_spawner, spawner_config

IMAGE = "quay.io/jupyter/pytorch-notebook:latest"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def profile(slug: str, gpu: dict | None = None, **override) -> dict:
    return {
        "display_name": slug,
        "slug": slug,
        "kubespawner_override": {"image": IMAGE, **override},
        "ai_console": {"gpu": gpu},
    }


QUARTER = {"fraction": "1/4", "type": "RTX3090"}
PROFILES = [
    profile("pool-b", QUARTER, node_selector={"pool": "b"}),
    profile(
        "zone-b",
        QUARTER,
        node_affinity_required=[
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["b"]}]}
        ],
    ),
    profile("nowhere", QUARTER, node_selector={"pool": "none-such"}),
    profile("quarter", QUARTER),
    profile("whole-device-plugin", None, extra_resource_limits={"nvidia.com/gpu": "1"}),
]


def config(kube, **settings):
    return spawner_config(kube.namespace, KubeSpawner__profile_list=PROFILES, **settings)


@pytest.fixture
def pools(kube):
    # Binpack alone would break into gpu-a (fewer free GPUs); the pool says gpu-b.
    add_gpu_node(kube, "gpu-a", gpus=1, labels={"pool": "a"})
    add_gpu_node(kube, "gpu-b", gpus=2, labels={"pool": "b"})


@pytest.mark.usefixtures("pools")
@pytest.mark.parametrize("slug", ["pool-b", "zone-b"])
async def test_a_node_pool_of_a_gpu_profile_is_where_the_slice_is_placed(kube, slug):
    spawner = make_spawner(config(kube), "alice", slug)
    await spawner.start()
    pod = kube.get("pods", spawner.pod_name)
    assert pod["metadata"]["annotations"][keys.ANN_NODE] == "gpu-b"
    assert pod["spec"]["nodeName"] == "gpu-b" and pod["status"]["phase"] == "Running"
    await spawner.stop()


@pytest.mark.usefixtures("pools")
async def test_a_node_selector_in_extra_pod_config_narrows_placement_too(kube):
    settings = {"KubeSpawner__extra_pod_config": {"nodeSelector": {"pool": "b"}}}
    spawner = make_spawner(config(kube, **settings), "bob", "quarter")
    await spawner.start()
    assert kube.get("pods", spawner.pod_name)["spec"]["nodeName"] == "gpu-b"
    await spawner.stop()


@pytest.mark.usefixtures("pools")
async def test_a_node_selector_no_node_matches_is_refused_before_holding_a_slice(kube):
    spawner = make_spawner(config(kube), "carol", "nowhere")
    with pytest.raises(SliceRefused) as refused:
        await spawner.start()
    assert refused.value.status_code == 400
    assert "node selector matches none of the cluster's nodes" in str(refused.value)
    assert kube.get("pods", spawner.pod_name) is None
    assert GPUSliceManager.instance().allocations() == []


async def test_slice_pods_run_on_gpu_nodes_tainted_for_gpus_only(kube):
    add_gpu_node(kube, "gpu-tainted", gpus=1, taints=[GPU_TAINT])
    spawner = make_spawner(config(kube), "dave", "quarter")
    await spawner.start()
    pod = kube.get("pods", spawner.pod_name)
    assert pod["spec"]["nodeName"] == "gpu-tainted" and pod["status"]["phase"] == "Running"
    await spawner.stop()
    # Without the toleration the real scheduler keeps the pod off the node: it never starts.
    untolerated = make_spawner(
        config(kube, FractionalGPUKubeSpawner__gpu_tolerations=[], KubeSpawner__start_timeout=4),
        "erin",
        "quarter",
    )
    with pytest.raises(TimeoutError):
        await untolerated.start()
    pod = kube.get("pods", untolerated.pod_name)
    assert pod is None or not pod["spec"].get("nodeName")
    await untolerated.stop()
    assert GPUSliceManager.instance().allocations() == []


async def test_a_profile_without_a_gpu_block_gets_device_plugin_gpus_off_the_shared_nodes(kube):
    device_plugin = {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "2"}
    # Both nodes advertise nvidia.com/gpu; only the unshared one's belong to the device plugin.
    add_gpu_node(kube, "gpu-shared", gpus=1, allocatable=device_plugin)
    kube.add_node("gpu-plugin", allocatable=device_plugin, capacity=device_plugin)
    spawner = make_spawner(config(kube), "frank", "whole-device-plugin")
    await spawner.start()
    pod = kube.get("pods", spawner.pod_name)
    assert pod["spec"]["nodeName"] == "gpu-plugin" and pod["status"]["phase"] == "Running"
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert keys.ANN_ALLOCATION not in (pod["metadata"].get("annotations") or {})
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    assert env.get("NVIDIA_VISIBLE_DEVICES") != "void"
    await spawner.stop()

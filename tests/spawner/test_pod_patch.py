"""The slice written into a pod: fractional, whole-GPU and CPU-only, validated against the
official Kubernetes schema."""

from __future__ import annotations

import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient
from kubespawner.objects import make_pod

from gpu_fraction import keys
from gpu_fraction.allocator import Allocator
from gpu_fraction.annotations import from_annotations
from gpu_fraction.enforcement import STARTUP_MOUNT_PATH, MpsSettings
from gpu_fraction.ledger import rebuild
from gpu_fraction.model import GPU, NodeCapacity, Owner, SliceRequest
from spawner.pod_patch import SliceSettings, apply_slice

K8S_VERSION = "1.33"
GPUS = [
    GPU(
        "gpu-07",
        i,
        f"GPU-3f2a{i}bc0-0000-0000-0000-00000000000{i}",
        "NVIDIA GeForce RTX 3090",
        24576,
        "RTX3090",
    )
    for i in range(4)
]
OWNER = Owner("notebook", "alice", "cs101", "")


def pod_for(**kwargs):
    return make_pod(
        name="jupyter-alice",
        cmd=["jupyterhub-singleuser"],
        port=8888,
        image="quay.io/jupyter/pytorch-notebook:latest",
        labels={"component": "singleuser-server"},
        annotations={"hub.jupyter.org/username": "alice"},
        env={"JUPYTERHUB_USER": "alice", "NVIDIA_VISIBLE_DEVICES": "all"},
        **kwargs,
    )


async def validate(pod) -> dict:
    """Serialise as the client sends it, check it against the official schema, return it."""
    async with ApiClient() as client:
        body = client.sanitize_for_serialization(pod)
    # The API server takes apiVersion/kind from the URL when a create body omits them.
    body = {"apiVersion": "v1", "kind": "Pod", **body}
    kubernetes_validate.validate(body, K8S_VERSION, strict=True)
    return body


def env_of(pod) -> dict[str, str]:
    return {e.name: e.value for e in pod.spec.containers[0].env}


def reserve(fraction) -> object:
    return Allocator(GPUS).reserve(SliceRequest("RTX3090", fraction), OWNER)


async def test_fractional_slice_pod():
    allocation = reserve("1/4")
    pod = apply_slice(
        pod_for(extra_resource_limits={"nvidia.com/gpu": "1"}),
        allocation,
        SliceSettings(runtime_class_name="nvidia", startup_configmap="ai-console-startup"),
    )
    env = env_of(pod)
    assert env["NVIDIA_VISIBLE_DEVICES"] == allocation.gpu_uuids[0]  # the profile's "all" lost
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env[keys.ENV_GPU_MEMORY_MIB] == "6144"
    assert env["PYTHONPATH"] == STARTUP_MOUNT_PATH
    assert "CUDA_MPS_PIPE_DIRECTORY" not in env
    # The device plugin is not asked for a GPU the allocator hands out.
    assert "nvidia.com/gpu" not in (pod.spec.containers[0].resources.limits or {})
    assert pod.spec.runtime_class_name == "nvidia"
    term = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    [only] = term.node_selector_terms
    assert [(e.key, e.values) for e in only.match_expressions] == [
        ("kubernetes.io/hostname", ["gpu-07"])
    ]
    assert pod.metadata.labels["ai-console/slice"] == "true"
    assert pod.metadata.annotations["hub.jupyter.org/username"] == "alice"
    assert from_annotations(pod.metadata.annotations, Allocator(GPUS).gpu_by_uuid) == allocation
    mounts = {m.mount_path for m in pod.spec.containers[0].volume_mounts}
    assert STARTUP_MOUNT_PATH in mounts
    await validate(pod)


async def test_mps_node_gets_mps_caps_and_mounts():
    allocation = reserve("1/2")
    pod = apply_slice(pod_for(), allocation, SliceSettings(mps=MpsSettings()))
    env = env_of(pod)
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=12288M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "100"
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/nvidia-mps"
    body = await validate(pod)
    host_paths = {v["hostPath"]["path"] for v in body["spec"]["volumes"] if "hostPath" in v}
    assert "/tmp/nvidia-mps" in host_paths


async def test_whole_gpus_pod():
    allocation = reserve(2)
    pod = apply_slice(pod_for(), allocation, SliceSettings(startup_configmap="ai-console-startup"))
    env = env_of(pod)
    assert env["NVIDIA_VISIBLE_DEVICES"] == ",".join(allocation.gpu_uuids)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert keys.ENV_GPU_MEMORY_MIB not in env and "PYTHONPATH" not in env
    assert pod.metadata.annotations[keys.ANN_FRACTION] == "2"
    await validate(pod)


UNMANAGED = {"key": keys.LABEL_SHARING, "operator": "NotIn", "values": ["true"]}


async def test_cpu_only_pod_sees_no_gpu():
    pod = apply_slice(pod_for(), None, SliceSettings(unmanaged_nodes=UNMANAGED))
    env = env_of(pod)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert pod.spec.affinity is None and pod.spec.runtime_class_name is None
    assert "ai-console/slice" not in pod.metadata.labels
    await validate(pod)


async def test_cpu_only_pod_kept_off_the_gpu_nodes_when_configured():
    settings = SliceSettings(unmanaged_nodes=UNMANAGED, cpu_only_off_gpu_nodes=True)
    body = await validate(apply_slice(pod_for(), None, settings))
    terms = body["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [UNMANAGED]}]


async def test_a_cpu_only_pod_placed_by_the_allocator_is_in_the_ledger():
    """A pod placed on a managed node without a GPU sees no GPU, is pinned to its node, and
    carries its allocation, so a restarted hub counts its CPU and memory there again."""
    nodes = {"gpu-07": NodeCapacity("gpu-07", 16000, 65536)}
    live = Allocator(GPUS, nodes)
    allocation = live.reserve_pod(6000, 16384, OWNER)
    live.commit(allocation.id)
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    pod = apply_slice(
        pod_for(extra_resource_limits={"nvidia.com/gpu": "1"}),
        allocation,
        SliceSettings(runtime_class_name="nvidia", tolerations=(toleration,)),
    )
    env = env_of(pod)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert keys.ENV_ALLOCATION_ID not in env and keys.ENV_GPU_MEMORY_MIB not in env
    assert "nvidia.com/gpu" not in (pod.spec.containers[0].resources.limits or {})
    assert pod.spec.runtime_class_name is None and not pod.spec.volumes
    assert pod.metadata.labels["ai-console/slice"] == "true"
    assert pod.spec.tolerations[0].key == "nvidia.com/gpu"
    term = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    assert term.node_selector_terms[0].match_expressions[0].values == ["gpu-07"]
    body = await validate(pod)
    body["metadata"].update(namespace="hub", creationTimestamp="2026-11-29T10:00:00Z")
    body["status"] = {"phase": "Running"}
    fresh = Allocator(GPUS, nodes)
    report = rebuild(fresh, [body])
    assert report.ok and [a for _, a in report.adopted] == [allocation]
    assert fresh.node_usage() == live.node_usage() == {"gpu-07": (6000, 16384)}


async def test_device_plugin_gpus_pass_through_and_keep_off_shared_nodes():
    """A profile without a gpu: block that asks for whole GPUs or MIG (z2jh style) gets them
    from the device plugin, on a node whose GPUs the allocator does not hand out."""
    limits = {"nvidia.com/gpu": "1", "nvidia.com/mig-1g.10gb": "1"}
    pod = apply_slice(
        pod_for(extra_resource_limits=limits), None, SliceSettings(unmanaged_nodes=UNMANAGED)
    )
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.containers[0].resources.limits["nvidia.com/mig-1g.10gb"] == "1"
    # The device plugin chooses the devices: no "void" from us.
    assert env_of(pod).get("NVIDIA_VISIBLE_DEVICES") != "void"
    body = await validate(pod)
    terms = body["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [UNMANAGED]}]


async def test_slice_pods_tolerate_the_gpu_taint_and_drop_device_plugin_requests():
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    pod = pod_for(extra_resource_limits={"nvidia.com/gpu": "1"}, tolerations=[toleration])
    pod = apply_slice(pod, reserve("1/4"), SliceSettings(tolerations=(toleration,)))
    body = await validate(pod)
    assert body["spec"]["tolerations"] == [toleration]  # once, though the profile had it too
    assert "nvidia.com/gpu" not in (body["spec"]["containers"][0].get("resources") or {}).get(
        "limits", {}
    )


async def test_node_pin_is_anded_into_existing_required_terms():
    required = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
    ]
    pod = apply_slice(pod_for(node_affinity_required=required), reserve("1/8"), SliceSettings())
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    for term in terms.node_selector_terms:
        keys_in_term = [e.key for e in term.match_expressions]
        assert keys_in_term == ["zone", "kubernetes.io/hostname"]
    await validate(pod)


@pytest.mark.parametrize("runtime", [None, ""])
async def test_no_runtime_class_when_disabled(runtime):
    pod = apply_slice(pod_for(), reserve("1/4"), SliceSettings(runtime_class_name=runtime or None))
    assert pod.spec.runtime_class_name is None


async def test_the_profiles_pythonpath_is_kept_behind_the_hook():
    """A profile that sets PYTHONPATH keeps it: the slice's start-up hook goes in front."""
    pod = make_pod(
        name="jupyter-alice",
        cmd=["jupyterhub-singleuser"],
        port=8888,
        image="quay.io/jupyter/pytorch-notebook:latest",
        env={"PYTHONPATH": "/opt/course-lib:/opt/shared"},
    )
    pod = apply_slice(pod, reserve("1/4"), SliceSettings(startup_configmap="ai-console-startup"))
    assert env_of(pod)["PYTHONPATH"] == f"{STARTUP_MOUNT_PATH}:/opt/course-lib:/opt/shared"
    await validate(pod)

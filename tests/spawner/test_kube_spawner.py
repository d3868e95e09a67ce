"""FractionalGPUKubeSpawner against the real control plane, as the hub's ServiceAccount."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from gpu_fraction import keys
from gpu_fraction.model import Owner, SliceRequest
from spawner.kube import FractionalGPUKubeSpawner
from spawner.manager import GPUSliceManager
from spawner.slices import SliceRefused

from .kube_setup import add_gpu_node, make_spawner, spawner_config


@pytest.fixture
def gpu_nodes(kube):
    add_gpu_node(kube, "gpu-07", gpus=1)
    add_gpu_node(kube, "gpu-08", gpus=2)
    kube.add_node("cpu-01")  # no GPU labels: not managed


def manager() -> GPUSliceManager:
    return GPUSliceManager.instance()


@pytest.mark.usefixtures("gpu_nodes")
async def test_quarter_slice_pod_then_stop_releases(kube):
    spawner = make_spawner(spawner_config(kube.namespace), "alice", "quarter")
    await spawner.start()
    pod = kube.get("pods", spawner.pod_name)
    annotations = pod["metadata"]["annotations"]
    assert annotations[keys.ANN_FRACTION] == "1/4"
    node = annotations[keys.ANN_NODE]
    assert node == "gpu-07"  # binpack: the node with fewer free GPUs is broken into first
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"] if "value" in e}
    assert env["NVIDIA_VISIBLE_DEVICES"] == annotations[keys.ANN_GPU_UUIDS]
    assert env[keys.ENV_GPU_MEMORY_MIB] == "6144"
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0].get("resources", {}).get(
        "limits", {}
    )
    assert pod["status"]["phase"] == "Running"
    # The start-up hook ConfigMap was created by the hub and is mounted.
    assert kube.get("configmaps", "ai-console-startup")["data"]["sitecustomize.py"]
    allocation = manager().allocator.get(annotations[keys.ANN_ALLOCATION])
    assert allocation is not None and manager().allocator.is_committed(allocation.id)
    ours = {k: v for k, v in annotations.items() if k.startswith(keys.PREFIX)}
    assert spawner.get_state()["ai_console_slice"] == ours
    await spawner.stop()
    assert kube.get("pods", spawner.pod_name) is None
    assert manager().allocations() == []


@pytest.mark.usefixtures("gpu_nodes")
async def test_placement_is_the_first_progress_message(kube):
    spawner = make_spawner(spawner_config(kube.namespace), "bob", "quarter")
    start = asyncio.ensure_future(spawner.start())
    spawner._start_future = start
    messages = []
    async for event in spawner.progress():
        messages.append(event["message"])
    await start
    assert (
        messages[0].startswith("Reserved 1/4 of RTX3090 GPU-gpu-07-0") and "gpu-07" in messages[0]
    )
    await spawner.stop()


@pytest.mark.usefixtures("gpu_nodes")
async def test_whole_and_cpu_only_profiles(kube):
    two = make_spawner(spawner_config(kube.namespace), "carol", "two")
    await two.start()
    pod = kube.get("pods", two.pod_name)
    assert pod["metadata"]["annotations"][keys.ANN_NODE] == "gpu-08"
    assert len(pod["metadata"]["annotations"][keys.ANN_GPU_UUIDS].split(",")) == 2
    cpu = make_spawner(spawner_config(kube.namespace), "dave", "cpu")
    await cpu.start()
    cpu_pod = kube.get("pods", cpu.pod_name)
    env = {e["name"]: e.get("value") for e in cpu_pod["spec"]["containers"][0]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert keys.ANN_ALLOCATION not in (cpu_pod["metadata"].get("annotations") or {})
    await two.stop()
    await cpu.stop()
    assert manager().allocations() == []


async def test_four_quarters_fit_and_the_fifth_is_refused(kube):
    add_gpu_node(kube, "gpu-01", gpus=1)
    spawners = [
        make_spawner(spawner_config(kube.namespace), f"student{i}", "quarter") for i in range(5)
    ]
    await asyncio.gather(*(s.start() for s in spawners[:4]))
    with pytest.raises(SliceRefused) as refused:
        await spawners[4].start()
    assert "No GPU slice available: no RTX3090 has 1/4 free: 1 of 1 in use" in str(refused.value)
    assert refused.value.jupyterhub_message == str(refused.value)
    assert kube.get("pods", spawners[4].pod_name) is None  # nothing reached Kubernetes
    assert len(manager().allocations()) == 4
    await asyncio.gather(*(s.stop() for s in spawners[:4]))
    assert manager().allocations() == []


@pytest.mark.usefixtures("gpu_nodes")
async def test_pod_refused_by_a_resource_quota_releases_the_slice(kube, caplog):
    # Real admission: the namespace's ResourceQuota allows no more pods.
    kube.admin.create(
        "resourcequotas", {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}},
        kube.namespace,
    )  # fmt: skip
    kube.admin.wait_for(
        "resourcequotas",
        "no-pods",
        kube.namespace,
        lambda q: q and q.get("status", {}).get("hard"),
    )
    spawner = make_spawner(
        spawner_config(kube.namespace, KubeSpawner__k8s_api_request_retry_timeout=2),
        "erin",
        "quarter",
    )
    spawner.api_token = secrets.token_hex(16)
    with pytest.raises(Exception, match="exceeded quota"):
        await spawner.start()
    assert kube.get("pods", spawner.pod_name) is None
    assert manager().allocations() == []
    # KubeSpawner logged the refused pod, environment and all, but not the server's token.
    assert "JUPYTERHUB_API_TOKEN" in caplog.text and "[redacted]" in caplog.text
    assert spawner.api_token not in caplog.text


@pytest.mark.usefixtures("gpu_nodes")
async def test_crafted_profile_is_refused(kube):
    spawner = make_spawner(spawner_config(kube.namespace), "mallory", "no-such-profile")
    with pytest.raises(Exception, match="no-such-profile"):
        await spawner.start()
    assert manager().allocations() == []


async def test_one_inconsistent_node_does_not_stop_the_cluster(kube, caplog):
    """Its labels say 3 GPUs, the agent published 2: that node is left out and the hub says
    so; notebooks, CPU-only and GPU alike, start on the rest."""
    add_gpu_node(kube, "gpu-bad", gpus=2, labels={keys.GFD_COUNT: "3"})
    add_gpu_node(kube, "gpu-good", gpus=1)
    gpu = make_spawner(spawner_config(kube.namespace), "frank", "quarter")
    await gpu.start()
    assert kube.get("pods", gpu.pod_name)["metadata"]["annotations"][keys.ANN_NODE] == "gpu-good"
    cpu = make_spawner(spawner_config(kube.namespace), "gina", "cpu")
    await cpu.start()
    assert [name for name, _ in manager().inventory.skipped] == ["gpu-bad"]
    assert "node gpu-bad is left out of the GPU inventory" in caplog.text
    await gpu.stop()
    await cpu.stop()


class SlowPodSpawner(FractionalGPUKubeSpawner):
    """The pod work takes longer than the reservation lasts (a slow volume, API retries)."""

    async def get_pod_manifest(self):
        pod = await super().get_pod_manifest()
        await asyncio.sleep(1.5)
        return pod


async def test_a_reservation_that_expires_before_the_pod_is_renewed_or_refused(kube):
    add_gpu_node(kube, "gpu-01", gpus=1)
    config = spawner_config(kube.namespace, GPUSliceManager__reservation_ttl=1.0)
    slow = make_spawner(config, "hana", "quarter", cls=SlowPodSpawner)
    await slow.start()  # expired while the pod was built: the same slice is held again
    pod = kube.get("pods", slow.pod_name)
    [held] = manager().allocations()
    assert pod["metadata"]["annotations"][keys.ANN_ALLOCATION] == held.id
    assert manager().allocator.is_committed(held.id)
    await slow.stop()

    # This time someone takes the GPU while the reservation has lapsed: no pod, a clear reason.
    late = make_spawner(config, "ivan", "quarter", cls=SlowPodSpawner)
    start = asyncio.ensure_future(late.start())
    await asyncio.sleep(1.2)
    whole = await manager().reserve(SliceRequest("RTX3090", 1), Owner("notebook", "judy"))
    with pytest.raises(SliceRefused, match="expired before the pod could be created"):
        await start
    assert kube.get("pods", late.pod_name) is None
    assert [a.id for a in manager().allocations()] == [whole.id]


@pytest.mark.usefixtures("gpu_nodes")
async def test_slice_pods_pass_the_restricted_pod_security_standard(kube):
    """The namespace enforces Kubernetes' "restricted" Pod Security level (the real
    PodSecurity admission): a slice pod is admitted as it is, and a pod the platform would
    refuse (a profile running as root) is refused by the API server too."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    kube.admin.patch("namespaces", kube.namespace, {"metadata": {"labels": labels}})
    spawner = make_spawner(spawner_config(kube.namespace), "olga", "quarter")
    await spawner.start()
    pod = kube.get("pods", spawner.pod_name)
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    await spawner.stop()
    rooted = make_spawner(
        spawner_config(
            kube.namespace,
            KubeSpawner__container_security_context={"runAsUser": 0},
            KubeSpawner__k8s_api_request_retry_timeout=2,
        ),
        "pete",
        "quarter",
    )
    with pytest.raises(Exception, match="restricted"):
        await rooted.start()
    assert manager().allocations() == []

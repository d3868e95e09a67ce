"""KubeSpawner's own client plumbing (kubernetes_asyncio, shared_client, reflectors)."""

from __future__ import annotations

from kubespawner.clients import shared_client
from kubespawner.spawner import EventReflector, PodReflector

from tests.k8s_harness import KubeHarness

from .helpers import pod_manifest


async def test_shared_client_lists_pods(k8s_harness: KubeHarness) -> None:
    k8s_harness.create(pod_manifest("listed", {"component": "singleuser-server"}))
    api = shared_client("CoreV1Api")
    pods = await api.list_namespaced_pod("default", label_selector="component=singleuser-server")
    assert [p.metadata.name for p in pods.items] == ["listed"]
    assert api.api_client.configuration.host == k8s_harness.url


async def test_pod_reflector_sees_pods_come_and_go(k8s_harness: KubeHarness) -> None:
    reflector = PodReflector(
        namespace="default", labels={"component": "singleuser-server"}, timeout_seconds=1
    )
    await reflector.start()
    try:
        k8s_harness.create(pod_manifest("jupyter-alice", {"component": "singleuser-server"}))
        k8s_harness.create(pod_manifest("other", {"component": "something-else"}))
        await k8s_harness.await_for(lambda: "default/jupyter-alice" in reflector.pods)
        running = await k8s_harness.await_for(
            lambda: (
                (reflector.pods.get("default/jupyter-alice") or {}).get("status", {}).get("phase")
                == "Running"
            )
        )
        assert running
        assert reflector.pods["default/jupyter-alice"]["status"]["podIP"].startswith("127.")
        assert "default/other" not in reflector.pods
        k8s_harness.delete("pods", "jupyter-alice")
        await k8s_harness.await_for(lambda: "default/jupyter-alice" not in reflector.pods)
    finally:
        await reflector.stop()


async def test_reflector_survives_dropped_watches_and_errors(k8s_harness: KubeHarness) -> None:
    dropped = k8s_harness.faults.drop_watches(after_events=1, resources="pods")
    reflector = PodReflector(
        namespace="default", labels={"component": "singleuser-server"}, timeout_seconds=5
    )
    await reflector.start()
    try:
        await k8s_harness.await_for(lambda: dropped.matched >= 1)  # the watch is established
        failed = k8s_harness.faults.fail(1.0, 503, verbs="list", resources="pods", times=2)
        for i in range(3):
            k8s_harness.create(pod_manifest(f"jupyter-{i}", {"component": "singleuser-server"}))
            await k8s_harness.await_for(lambda i=i: f"default/jupyter-{i}" in reflector.pods)
        # Each event closed the stream; the re-lists failed twice before the reflector recovered.
        assert dropped.injected >= 2 and failed.injected == 2
    finally:
        await reflector.stop()


async def test_event_reflector_with_field_selector(k8s_harness: KubeHarness) -> None:
    reflector = EventReflector(
        namespace="default", fields={"involvedObject.kind": "Pod"}, timeout_seconds=1
    )
    await reflector.start()
    try:
        k8s_harness.create(pod_manifest("jupyter-bob"))
        await k8s_harness.await_for(
            lambda: any(e["reason"] == "Started" for e in reflector.events), timeout=10
        )
        assert all(e["involvedObject"]["kind"] == "Pod" for e in reflector.events)
    finally:
        await reflector.stop()


async def test_real_kubespawner_start_and_stop(k8s_harness: KubeHarness) -> None:
    from jupyterhub.objects import Hub, Server
    from kubespawner import KubeSpawner
    from traitlets.config import Config

    config = Config()
    config.KubeSpawner.namespace = "default"
    config.KubeSpawner.start_timeout = 20
    config.KubeSpawner.storage_pvc_ensure = True
    config.KubeSpawner.storage_capacity = "1Gi"
    config.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
    config.KubeSpawner.volumes = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "claim-{user_server}"}}
    ]
    config.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
    config.KubeSpawner.cpu_guarantee = 0.5
    config.KubeSpawner.mem_limit = "1G"
    spawner = KubeSpawner(config=config, _mock=True)
    spawner.hub = Hub()
    spawner.server = Server()
    spawner.api_token = "token"
    url = await spawner.start()
    pod = k8s_harness.get("pods", spawner.pod_name)
    assert pod is not None
    assert url == f"http://{pod['status']['podIP']}:8888"
    spawner.server.ip, spawner.server.port = pod["status"]["podIP"], 8888  # as the hub does
    assert pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "500m"
    assert k8s_harness.get("pvc", spawner.pvc_name)["status"]["phase"] in ("Pending", "Bound")
    assert await spawner.poll() is None
    await spawner.stop()
    assert k8s_harness.get("pods", spawner.pod_name) is None
    assert await spawner.poll() is not None  # KubeSpawner reports 1 for a missing pod

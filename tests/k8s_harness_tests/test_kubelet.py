"""The scheduler and simulated kubelet: transitions, pod IPs, exit codes, processes, logs."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest
from kubernetes import client, watch

from tests.k8s_harness import KubeHarness, PodBehavior

from .helpers import api_error, pod_manifest


def _reasons(harness: KubeHarness, name: str) -> list[str]:
    return [e["reason"] for e in harness.events_for(name)]


def test_pending_to_running_with_loopback_ips(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    for name in ("a", "b"):
        core.create_namespaced_pod("default", pod_manifest(name))
    pods = [k8s_harness.wait_for_pod_ready(name) for name in ("a", "b")]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2
    assert all(ipaddress.ip_address(ip).is_loopback and ip != "127.0.0.1" for ip in ips)
    pod = core.read_namespaced_pod("a", "default")
    assert pod.spec.node_name == "harness-node-1"
    assert pod.status.host_ip == "127.0.0.1"
    assert pod.status.pod_ips[0].ip == pod.status.pod_ip
    status = pod.status.container_statuses[0]
    assert status.ready and status.started and status.state.running.started_at
    assert status.image == "docker.io/library/busybox:1.36"
    assert status.container_id.startswith("containerd://")
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions == {
        "PodScheduled": "True",
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    reasons = _reasons(k8s_harness, "a")
    assert reasons[0] == "Scheduled"
    assert {"Pulled", "Created", "Started"} <= set(reasons)


@pytest.mark.parametrize(
    ("exit_code", "phase", "reason"), [(0, "Succeeded", "Completed"), (3, "Failed", "Error")]
)
def test_simulated_exit(
    k8s_harness: KubeHarness, core: client.CoreV1Api, exit_code: int, phase: str, reason: str
) -> None:
    k8s_harness.set_pod_behavior(
        PodBehavior(run_seconds=0.05, exit_code=exit_code, logs="hi\n"), name="once"
    )
    core.create_namespaced_pod("default", pod_manifest("once", restartPolicy="Never"))
    pod = k8s_harness.wait_for_pod_phase("once", phase)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (exit_code, reason)
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready == {**ready, "status": "False", "reason": "PodCompleted"}
    assert core.read_namespaced_pod_log("once", "default") == "hi\n"
    # Finished pods are deleted at once, without a grace period.
    core.delete_namespaced_pod("once", "default")
    assert k8s_harness.get("pods", "once") is None


def test_restart_policy_on_failure(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.set_pod_behavior(
        PodBehavior(run_seconds=0.02, exit_code=1, restart_delay=0.02), name="crashy"
    )
    core.create_namespaced_pod("default", pod_manifest("crashy", restartPolicy="OnFailure"))

    def restarted() -> dict | None:
        pod = k8s_harness.get("pods", "crashy") or {}
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        return pod if statuses[0].get("restartCount", 0) >= 2 else None

    pod = k8s_harness.wait_for(restarted)
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    assert "BackOff" in _reasons(k8s_harness, "crashy")


def test_unschedulable_pod_gets_failed_scheduling_event(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["rtx3090"]}]}
                ]
            }
        }
    }
    core.create_namespaced_pod("default", pod_manifest("gpu-pod", affinity=affinity))
    event = k8s_harness.wait_for(
        lambda: k8s_harness.events_for("gpu-pod", reason="FailedScheduling")
    )
    assert event[0]["type"] == "Warning"
    assert event[0]["message"].startswith(
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )
    pod = core.read_namespaced_pod("gpu-pod", "default")
    assert pod.status.phase == "Pending"
    scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    k8s_harness.add_node("gpu-node", labels={"gpu": "rtx3090"})
    running = k8s_harness.wait_for_pod_phase("gpu-pod", "Running")
    assert running["spec"]["nodeName"] == "gpu-node"


def test_resources_must_fit(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.add_node("gpu-node", labels={"gpu": "yes"}, allocatable={"nvidia.com/gpu": 1})
    limits = {"limits": {"nvidia.com/gpu": "1"}}
    for name in ("first", "second"):
        body = pod_manifest(name, nodeSelector={"gpu": "yes"})
        body["spec"]["containers"][0]["resources"] = limits
        core.create_namespaced_pod("default", body)
    k8s_harness.wait_for_pod_phase("first", "Running")
    event = k8s_harness.wait_for(
        lambda: k8s_harness.events_for("second", reason="FailedScheduling")
    )
    assert "1 Insufficient nvidia.com/gpu" in event[0]["message"]
    core.delete_namespaced_pod("first", "default")
    k8s_harness.wait_for_pod_phase("second", "Running")


def test_missing_secret_and_image_pull_errors(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    body = pod_manifest("needs-secret")
    body["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}}
    ]
    core.create_namespaced_pod("default", body)
    k8s_harness.wait_for(lambda: k8s_harness.events_for("needs-secret", reason="Failed"))
    waiting = core.read_namespaced_pod("needs-secret", "default").status.container_statuses[0]
    assert waiting.state.waiting.reason == "CreateContainerConfigError"
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "api-token"}, "stringData": {"token": "t"}}
    )
    k8s_harness.wait_for_pod_phase("needs-secret", "Running")

    k8s_harness.set_pod_behavior(PodBehavior(image_pull_error="not found"), name="bad-image")
    core.create_namespaced_pod("default", pod_manifest("bad-image"))

    def backoff() -> bool:
        pod = k8s_harness.get("pods", "bad-image") or {}
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting", {}).get("reason") == "ImagePullBackOff"

    k8s_harness.wait_for(backoff)
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_pod_log("bad-image", "default")
    assert info.value.status == 400
    assert "is waiting to start: ImagePullBackOff" in api_error(info.value)["message"]
    core.delete_namespaced_pod("bad-image", "default", grace_period_seconds=0)
    k8s_harness.wait_for_deletion("pods", "bad-image")


def test_graceful_deletion_honours_grace_period(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    k8s_harness.set_pod_behavior(PodBehavior(stop_seconds=5), name="slow")
    core.create_namespaced_pod("default", pod_manifest("slow", terminationGracePeriodSeconds=1))
    k8s_harness.wait_for_pod_phase("slow", "Running")
    start = time.monotonic()
    deleted = core.delete_namespaced_pod("slow", "default")
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 1
    assert k8s_harness.get("pods", "slow") is not None  # still terminating
    k8s_harness.wait_for_deletion("pods", "slow")
    assert 0.9 < time.monotonic() - start < 3
    assert "Killing" in _reasons(k8s_harness, "slow")


def _web_pod(name: str, command: list[str], grace: int = 5) -> dict:
    body = pod_manifest(
        name, {"app": "web"}, terminationGracePeriodSeconds=grace, restartPolicy="Never"
    )
    container = body["spec"]["containers"][0]
    container.update(
        {
            "image": "python:3.12",
            "command": command,
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        }
    )
    return body


def test_process_pod_serves_on_its_pod_ip(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.set_pod_behavior(PodBehavior(mode="process"), selector="app=web")
    server = [sys.executable, "-u", "-m", "http.server", "8000", "--bind", "0.0.0.0"]
    for name in ("web-1", "web-2"):
        body = _web_pod(name, server)
        body["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"port": 8000, "path": "/"}}
        core.create_namespaced_pod("default", body)
    pods = [k8s_harness.wait_for_pod_ready(name) for name in ("web-1", "web-2")]
    for pod in pods:  # same port, different loopback addresses
        ip = pod["status"]["podIP"]
        with urllib.request.urlopen(f"http://{ip}:8000/", timeout=5) as resp:
            assert resp.status == 200
    log = core.read_namespaced_pod_log("web-1", "default")
    assert f"Serving HTTP on {pods[0]['status']['podIP']} port 8000" in log
    assert core.read_namespaced_pod_log("web-1", "default", tail_lines=1).count("\n") == 1
    stamped = core.read_namespaced_pod_log("web-1", "default", timestamps=True)
    assert stamped.splitlines()[0].split(" ", 1)[0].endswith("Z")
    pids = k8s_harness.process_pids()
    assert len(pids) == 2
    core.delete_namespaced_pod("web-1", "default")
    k8s_harness.wait_for_deletion("pods", "web-1")
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    assert len(k8s_harness.process_pids()) == 1


@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (7, "Failed")])
def test_process_exit_sets_phase(
    k8s_harness: KubeHarness, core: client.CoreV1Api, code: int, phase: str
) -> None:
    k8s_harness.set_pod_behavior(PodBehavior(mode="process"), selector="app=web")
    script = (
        "import os; print('ip', os.environ['POD_IP'], os.environ['HOSTNAME']); "
        f"raise SystemExit({code})"
    )
    core.create_namespaced_pod("default", _web_pod("job-like", [sys.executable, "-c", script]))
    pod = k8s_harness.wait_for_pod_phase("job-like", phase)
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == code
    log = core.read_namespaced_pod_log("job-like", "default")
    assert log == f"ip {pod['status']['podIP']} job-like\n"


def test_sigterm_then_sigkill(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.set_pod_behavior(PodBehavior(mode="process"), selector="app=web")
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)"
    )
    core.create_namespaced_pod(
        "default", _web_pod("stubborn", [sys.executable, "-c", stubborn], grace=1)
    )
    k8s_harness.wait_for(lambda: "up" in k8s_harness.pod_log("stubborn"))
    rv = core.read_namespaced_pod("stubborn", "default").metadata.resource_version
    start = time.monotonic()
    core.delete_namespaced_pod("stubborn", "default")
    final = None
    for ev in watch.Watch().stream(
        core.list_namespaced_pod,
        "default",
        field_selector="metadata.name=stubborn",
        resource_version=rv,
        timeout_seconds=10,
    ):
        if ev["type"] == "DELETED":
            final = ev["raw_object"]
            break
    assert final is not None
    assert time.monotonic() - start >= 0.9
    state = final["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["exitCode"] == 137  # SIGKILL after the 1 s grace period


def test_bind_args_and_env_rewriting(
    k8s_harness_factory: Callable[..., KubeHarness],
) -> None:
    seen: list = []

    def capture(spec):  # type: ignore[no-untyped-def]
        seen.append(spec)
        spec.argv = [
            sys.executable,
            "-c",
            "import sys, json; print(json.dumps(sys.argv[1:]))",
            *spec.argv[1:],
        ]

    harness = k8s_harness_factory(
        nodes=["n1"],
        default_behavior=PodBehavior(
            mode="process", transform=capture, append_args=["--allow-root"]
        ),
    )
    core = client.CoreV1Api(harness.sync_api_client())
    body = pod_manifest("singleuser", restartPolicy="Never")
    body["spec"]["containers"][0].update(
        {
            "command": ["jupyterhub-singleuser"],
            "args": [
                "--ip=0.0.0.0",
                "--port=8888",
                "--ServerApp.ip=::",
                "--host",
                "0.0.0.0:80",
                "--keep=0.0.0.0",
            ],
            "env": [{"name": "JUPYTERHUB_SERVICE_URL", "value": "http://0.0.0.0:8888/user/alice/"}],
        }
    )
    core.create_namespaced_pod("default", body)
    pod = harness.wait_for_pod_phase("singleuser", "Succeeded")
    ip = pod["status"]["podIP"]
    assert json.loads(harness.pod_log("singleuser")) == [
        f"--ip={ip}",
        "--port=8888",
        f"--ServerApp.ip={ip}",
        "--host",
        f"{ip}:80",
        "--keep=0.0.0.0",
        "--allow-root",
    ]
    spec = seen[0]
    assert spec.env["JUPYTERHUB_SERVICE_URL"] == f"http://{ip}:8888/user/alice/"
    assert spec.env["K8S_HARNESS_POD_IP"] == ip
    assert spec.env["HOME"].startswith(str(harness.root))


def test_not_ready_node_is_not_used(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.set_node_ready("harness-node-1", False)
    core.create_namespaced_pod("default", pod_manifest("waits"))
    event = k8s_harness.wait_for(lambda: k8s_harness.events_for("waits", reason="FailedScheduling"))
    assert "untolerated taint {node.kubernetes.io/not-ready: }" in event[0]["message"]
    k8s_harness.set_node_ready("harness-node-1", True)
    k8s_harness.wait_for_pod_phase("waits", "Running")


def test_log_follow_and_previous(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.set_pod_behavior(PodBehavior(mode="process"), selector="app=web")
    ticker = (
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.1)"
    )
    core.create_namespaced_pod("default", _web_pod("ticker", [sys.executable, "-c", ticker]))
    k8s_harness.wait_for_pod_phase("ticker", "Running", "Succeeded")
    resp = core.read_namespaced_pod_log("ticker", "default", follow=True, _preload_content=False)
    assert resp.data.decode() == "tick 0\ntick 1\ntick 2\n"  # streamed until the exit
    assert core.read_namespaced_pod_log("ticker", "default", limit_bytes=4) == "tick"
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_pod_log("ticker", "default", previous=True)
    assert "previous terminated container" in api_error(info.value)["message"]

    k8s_harness.set_pod_behavior(
        PodBehavior(run_seconds=0.02, exit_code=1, restart_delay=0.02, logs="run\n"), name="again"
    )
    core.create_namespaced_pod("default", pod_manifest("again", restartPolicy="OnFailure"))
    k8s_harness.wait_for(
        lambda: (
            (k8s_harness.get("pods", "again") or {})
            .get("status", {})
            .get("containerStatuses", [{}])[0]
            .get("restartCount", 0)
            >= 1
        )
    )
    assert core.read_namespaced_pod_log("again", "default", previous=True) == "run\n"

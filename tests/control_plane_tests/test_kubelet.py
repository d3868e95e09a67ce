"""The process kubelet under the real API server and scheduler: pods run as processes with their
env, volumes at their mount paths, their own loopback address, restart policy, graceful
deletion and logs served to the API server."""

from __future__ import annotations

import sys
import time

import pytest
import requests

from tests.control_plane.api import ApiError
from tests.control_plane.behavior import PodBehavior

PY = sys.executable


def pod(name: str, script: str, **spec) -> dict:
    """A pod whose only container runs ``script`` with this interpreter."""
    container = {"name": "main", "image": "python:3.11", "command": [PY, "-u", "-c", script]}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name, "labels": {"run": "process"}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 5,
            "containers": [container],
            **spec,
        },
    }


@pytest.fixture
def node(kube):
    kube.add_node("node-1")
    kube.set_pod_behavior(PodBehavior(mode="process"), selector="run=process")
    return kube


def phase_is(*phases):
    return lambda obj: obj is not None and obj.get("status", {}).get("phase") in phases


def test_env_volumes_and_mount_paths_as_a_container_sees_them(node):
    ns = node.namespace
    node.admin.create("configmaps", {"metadata": {"name": "cfg"}, "data": {"greeting": "hi"}}, ns)
    node.admin.create("secrets", {"metadata": {"name": "pw"}, "stringData": {"word": "s3"}}, ns)
    script = (
        "import os; print(os.environ['GREETING'], os.environ['WORD'], os.environ['ME'], "
        "open('/etc/test-cfg/greeting').read(), os.getcwd(), "
        "open('/podinfo/name').read())"
    )
    body = pod(
        "env-demo",
        script,
        restartPolicy="Never",
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]
                },
            },
            {"name": "work", "emptyDir": {}},
        ],
        container={
            "env": [
                {
                    "name": "GREETING",
                    "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}},
                },
                {"name": "WORD", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "word"}}},
                {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/test-cfg", "readOnly": True},
                {"name": "info", "mountPath": "/podinfo"},
                {"name": "work", "mountPath": "/work-dir"},
            ],
            "workingDir": "/work-dir",
        },
    )
    node.admin.create("pods", body, ns)
    done = node.admin.wait_for("pods", "env-demo", ns, phase_is("Succeeded", "Failed"))
    log = node.admin.request("GET", f"/api/v1/namespaces/{ns}/pods/env-demo/log")
    assert done["status"]["phase"] == "Succeeded", log
    assert log.split() == ["hi", "s3", "env-demo", "hi", "/work-dir", "env-demo"]
    state = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0 and state["reason"] == "Completed"


def test_each_pod_has_its_own_address_and_binds_the_same_port(node):
    ns = node.namespace
    server = (
        "import http.server as h, os; "
        "h.HTTPServer((os.environ['IP'], 8080), h.SimpleHTTPRequestHandler).serve_forever()"
    )
    env = [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    for name in ("web-a", "web-b"):
        body = pod(name, server, container={"env": env, "readinessProbe": probe})
        node.admin.create("pods", body, ns)

    def ready(obj: dict | None) -> bool:
        conditions = (obj or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    ips = [node.admin.wait_for("pods", n, ns, ready)["status"]["podIP"] for n in ("web-a", "web-b")]
    assert len(set(ips)) == 2 and all(ip.startswith("127.") for ip in ips)
    for ip in ips:
        assert requests.get(f"http://{ip}:8080/", timeout=5).status_code == 200


def test_restart_policy_on_failure_counts_restarts_and_keeps_the_previous_log(node):
    ns = node.namespace
    script = (
        "import os, pathlib; p = pathlib.Path(os.environ['HOME']) / 'runs'; "
        "n = int(p.read_text()) if p.exists() else 0; p.write_text(str(n + 1)); "
        "print('run', n); raise SystemExit(0 if n >= 2 else 3)"
    )
    node.admin.create("pods", pod("flaky", script, restartPolicy="OnFailure"), ns)
    done = node.admin.wait_for("pods", "flaky", ns, phase_is("Succeeded"), timeout=60)
    status = done["status"]["containerStatuses"][0]
    assert status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 3
    path = f"/api/v1/namespaces/{ns}/pods/flaky/log"
    assert node.admin.request("GET", path).strip() == "run 2"
    assert node.admin.request("GET", path, params={"previous": "true"}).strip() == "run 1"


def test_graceful_deletion_sends_sigterm_then_sigkill_after_the_grace_period(node):
    ns = node.namespace
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, lambda *a: print('got TERM')); "
        "print('up'); time.sleep(600)"
    )
    node.admin.create("pods", pod("stubborn", stubborn), ns)
    node.admin.wait_for("pods", "stubborn", ns, phase_is("Running"))
    started = time.monotonic()
    node.admin.delete("pods", "stubborn", ns, grace=2)
    node.admin.wait_for_deletion("pods", "stubborn", ns, timeout=30)
    took = time.monotonic() - started
    assert 2 <= took < 10, took  # waited the grace period, then killed


def test_follow_streams_the_log_through_the_api_server(node):
    ns = node.namespace
    script = "import time\nfor i in range(3):\n    print('tick', i); time.sleep(0.3)"
    node.admin.create("pods", pod("ticker", script, restartPolicy="Never"), ns)
    node.admin.wait_for("pods", "ticker", ns, phase_is("Running", "Succeeded"))
    lines = list(node.admin.stream_lines(f"/api/v1/namespaces/{ns}/pods/ticker/log", follow="true"))
    assert lines == ["tick 0", "tick 1", "tick 2"]


def test_the_real_scheduler_honours_taints_affinity_and_resources(kube):
    kube.add_node(
        "tainted-1",
        labels={"pool": "gpu"},
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        allocatable={"cpu": "4", "memory": "8Gi", "pods": "10"},
    )
    ns = kube.namespace
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["gpu"]}]}]}}}  # fmt: skip
    kube.admin.create("pods", pod("no-toleration", "pass", affinity=affinity), ns)
    tolerate = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    too_big = {"resources": {"requests": {"cpu": "8"}}}
    kube.admin.create("pods", pod("too-big", "pass", tolerations=tolerate, container=too_big), ns)
    kube.admin.create(
        "pods",
        pod("fits", "import time; time.sleep(60)", tolerations=tolerate, affinity=affinity),
        ns,
    )
    assert kube.admin.wait_for("pods", "fits", ns, phase_is("Running"))["spec"]["nodeName"] == (
        "tainted-1"
    )

    def unschedulable(name: str) -> str:
        def has_event(_: object) -> bool:
            return any(
                e["involvedObject"]["name"] == name and e["reason"] == "FailedScheduling"
                for e in kube.admin.list("events", ns)
            )

        kube.admin.wait_for("pods", name, ns, has_event, timeout=30)
        return next(
            e["message"]
            for e in kube.admin.list("events", ns)
            if e["involvedObject"]["name"] == name and e["reason"] == "FailedScheduling"
        )

    assert "untolerated taint" in unschedulable("no-toleration")
    assert "Insufficient cpu" in unschedulable("too-big")


def test_a_kubelet_may_only_write_its_own_node(kube):
    kube.add_node("node-a")
    kube.add_node("node-b")
    as_a = kube.cluster.plane.client(kube.cluster.plane.node_credentials("node-a"))
    as_a.patch("nodes/status", "node-a", {"status": {"allocatable": {"pods": "110"}}})
    with pytest.raises(ApiError) as refused:
        as_a.patch("nodes/status", "node-b", {"status": {"allocatable": {"pods": "1"}}})
    assert refused.value.code == 403
    # Nor read a Secret no pod on it uses (the Node authorizer's graph).
    kube.admin.create("secrets", {"metadata": {"name": "other"}}, kube.namespace)
    with pytest.raises(ApiError) as hidden:
        as_a.get("secrets", "other", kube.namespace)
    assert hidden.value.code == 403

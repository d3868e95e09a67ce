"""The node agent changes only its own node, and only our annotations there: the chart's
ValidatingAdmissionPolicy, installed from `helm template` into the real control plane and tried
with the agent's own pod-bound token."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.control_plane.api import ApiError, Credentials, KubeClient, resource_path
from tests.control_plane.fixtures import TestCluster

from .binary import ensure

CHART = Path(__file__).resolve().parents[2] / "helm" / "ai-console"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
#: Where each kind the agent's part of the chart renders is created.
PATHS = {
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
}
POLICIES = {
    "ValidatingAdmissionPolicy": f"{ADMISSION}/validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": f"{ADMISSION}/validatingadmissionpolicybindings",
}


def agent_objects(namespace: str) -> list[dict[str, Any]]:
    """The chart's objects for the node agent (no DaemonSet: the test plays the agent)."""
    done = subprocess.run(
        [str(ensure()), "template", "rel", str(CHART), "--namespace", namespace],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    agent = [
        o
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "agent"
    ]
    return [o for o in agent if o["kind"] in PATHS or o["kind"] in POLICIES]


@pytest.fixture
def agent(kube: TestCluster) -> Iterator[tuple[TestCluster, str]]:
    """The agent's ServiceAccount, ClusterRole, binding and node policy, as the chart has them;
    the cluster-wide ones removed afterwards (the namespace goes with the test)."""
    cluster_wide: list[str] = []  # their paths
    account = ""
    try:
        for obj in agent_objects(kube.namespace):
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind == "ServiceAccount":
                kube.admin.create("serviceaccounts", obj, kube.namespace)
                account = name
                continue
            collection = POLICIES.get(kind) or resource_path(PATHS[kind])
            kube.admin.request("POST", collection, json=obj)
            cluster_wide.append(f"{collection}/{name}")
        assert account
        yield kube, account
    finally:
        for path in cluster_wide:
            with contextlib.suppress(ApiError):
                kube.admin.request("DELETE", path)


def pod_token(kube: TestCluster, account: str, node: str) -> str:
    """The token the kubelet projects into an agent pod on ``node`` (bound to the pod)."""
    pod = kube.admin.create(
        "pods",
        {
            "metadata": {"name": f"agent-{node}"},
            "spec": {
                "nodeName": node,
                "serviceAccountName": account,
                "automountServiceAccountToken": False,
                "containers": [{"name": "agent", "image": "agent", "command": ["sleep", "300"]}],
            },
        },
        kube.namespace,
    )
    review = kube.admin.request(
        "POST",
        f"/api/v1/namespaces/{kube.namespace}/serviceaccounts/{account}/token",
        json={
            "spec": {
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                }
            }
        },
    )
    return review["status"]["token"]


def refusal(client: KubeClient, node: str, patch: dict, timeout: float = 15) -> str | None:
    """The API server's refusal of ``patch`` to ``node`` (None: accepted). The policy takes a
    moment to reach the API server's admission after it is created: refusals are awaited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.patch("nodes", node, patch)
            if time.monotonic() > deadline:
                return None
        except ApiError as err:
            return f"{err.code} {err}"
        time.sleep(0.5)


def annotation(value: str) -> dict:
    return {"metadata": {"annotations": {"ai-console/gpus": value}}}


def test_the_agent_changes_only_its_own_nodes_annotations(agent) -> None:
    kube, account = agent
    kube.add_node("gpu-a")
    kube.add_node("gpu-b")
    client = kube.cluster.plane.client(Credentials(token=pod_token(kube, account, "gpu-a")))
    # Another node: refused, whatever the RBAC role allows.
    refused = refusal(client, "gpu-b", annotation("[]"))
    assert refused is not None and "only the node it runs on (gpu-a), not gpu-b" in refused
    # Its own node: its annotation is published.
    client.patch("nodes", "gpu-a", annotation('[{"index": 0}]'))
    assert kube.get("nodes", "gpu-a")["metadata"]["annotations"]["ai-console/gpus"] == (
        '[{"index": 0}]'
    )
    # Nothing else of its own node: labels, taints, other annotations.
    for patch in (
        {"metadata": {"labels": {"nvidia.com/gpu.product": "H200"}}},
        {"spec": {"unschedulable": True}},
        {"metadata": {"annotations": {"campus.example/owner": "student1"}}},
    ):
        refused = refusal(client, "gpu-a", patch, timeout=0)
        assert refused is not None and "only the node's ai-console/ annotations" in refused, patch
    # A token of the account bound to no pod names no node: refused everywhere.
    loose = kube.cluster.plane.client(
        Credentials(token=kube.cluster.plane.service_account_token(kube.namespace, account))
    )
    refused = refusal(loose, "gpu-a", annotation("[]"), timeout=0)
    assert refused is not None and "its token is bound to no node" in refused

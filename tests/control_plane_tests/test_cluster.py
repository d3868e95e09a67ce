"""What the real control plane brings that a stand-in could not: the Job controller, admission
(ServiceAccount, ExtendedResourceToleration, PodSecurity, ResourceQuota), Dynamic Resource
Allocation's API, and the hub held to its documented Role by RBAC."""

from __future__ import annotations

import pytest

from tests.control_plane.api import ApiError

from .test_kubelet import pod


def job(name: str, script: str, **spec) -> dict:
    template = pod(name, script, restartPolicy="Never")
    template["metadata"] = {"labels": {"run": "process"}}
    return {"metadata": {"name": name}, "spec": {"template": template, **spec}}


def condition(kind: str):
    return lambda j: (
        j is not None
        and any(
            c["type"] == kind and c["status"] == "True"
            for c in j.get("status", {}).get("conditions", [])
        )
    )


def test_job_runs_to_completion_and_is_removed_after_its_ttl(node):
    ns = node.namespace
    node.admin.create("jobs", job("ok", "print('done')", ttlSecondsAfterFinished=5), ns)
    done = node.admin.wait_for("jobs", "ok", ns, condition("Complete"))
    assert done["status"]["succeeded"] == 1
    node.admin.wait_for_deletion("jobs", "ok", ns, timeout=30)  # ttl-after-finished controller


def test_pod_failure_policy_fails_the_job_on_an_exit_code_without_retrying(node):
    ns = node.namespace
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]}
    body = job("bad", "raise SystemExit(3)", backoffLimit=5, podFailurePolicy=policy)
    node.admin.create("jobs", body, ns)
    failed = node.admin.wait_for("jobs", "bad", ns, condition("Failed"))
    reasons = {c["type"]: c.get("reason") for c in failed["status"]["conditions"]}
    assert reasons["Failed"] == "PodFailurePolicy"
    assert failed["status"]["failed"] == 1  # no retry


def test_active_deadline_stops_a_running_job(node):
    ns = node.namespace
    node.admin.create(
        "jobs", job("slow", "import time; time.sleep(600)", activeDeadlineSeconds=2), ns
    )
    failed = node.admin.wait_for("jobs", "slow", ns, condition("Failed"), timeout=40)
    assert {c.get("reason") for c in failed["status"]["conditions"]} >= {"DeadlineExceeded"}
    pods = node.admin.list("pods", ns, labelSelector="job-name=slow")
    for p in pods:  # the controller deletes its pods; the kubelet stops them
        node.admin.wait_for_deletion("pods", p["metadata"]["name"], ns, timeout=30)


def test_a_pod_asking_for_gpus_tolerates_the_gpu_taint(kube):
    body = pod("gpu-user", "pass", container={"resources": {"limits": {"nvidia.com/gpu": "1"}}})
    created = kube.admin.create("pods", body, kube.namespace)
    tolerations = created["spec"].get("tolerations") or []
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_pod_security_restricted_refuses_a_privileged_pod(kube):
    kube.admin.patch(
        "namespaces",
        kube.namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    body = pod("root", "pass", container={"securityContext": {"privileged": True}})
    with pytest.raises(ApiError) as refused:
        kube.admin.create("pods", body, kube.namespace)
    assert refused.value.code == 403 and "violates PodSecurity" in refused.value.message


def test_service_account_admission_gives_default_pods_a_token_and_ours_none(kube):
    plain = pod("plain", "pass")
    plain["spec"].pop("automountServiceAccountToken")
    created = kube.admin.create("pods", plain, kube.namespace)
    assert any("projected" in v for v in created["spec"].get("volumes", []))
    ours = kube.admin.create("pods", pod("ours", "pass"), kube.namespace)
    assert not any("projected" in v for v in ours["spec"].get("volumes", []))


def test_dynamic_resource_allocation_api_is_served(kube):
    device_class = {
        "metadata": {"name": f"gpu-share-{kube.namespace}"},
        "spec": {"selectors": [{"cel": {"expression": "device.driver == 'gpu.example.com'"}}]},
    }
    created = kube.admin.create("deviceclasses", device_class)
    assert created["apiVersion"] == "resource.k8s.io/v1"
    kube.admin.delete("deviceclasses", device_class["metadata"]["name"])


# --- the hub's least privilege ----------------------------------------------------------------

HUB_MAY = [
    ("create", "pods"),
    ("delete", "pods"),
    ("watch", "pods"),
    ("list", "events"),
    ("create", "configmaps"),
    ("patch", "configmaps"),
]
HUB_MAY_NOT = [
    ("list", "secrets"),
    ("create", "secrets"),
    ("update", "pods"),
    ("create", "pods/exec"),
    ("create", "jobs"),
    ("create", "rolebindings"),
    ("delete", "configmaps"),
]


def test_the_hub_can_do_its_work_and_nothing_else(kube):
    hub = kube.hub_client(through_proxy=False)
    ns = kube.namespace
    for verb, resource in HUB_MAY:
        assert hub.can_i(verb, resource, ns), (verb, resource)
    for verb, resource in HUB_MAY_NOT:
        assert not hub.can_i(verb, resource, ns), (verb, resource)
    assert hub.can_i("list", "nodes") and not hub.can_i("patch", "nodes")
    assert not hub.can_i("create", "pods", "kube-system")  # its own namespace only
    # Elsewhere it may only read pods (to count what they take on the GPU nodes).
    assert hub.can_i("watch", "pods", "kube-system")
    assert not hub.can_i("delete", "pods", "kube-system")
    assert not hub.can_i("patch", "pods", "kube-system")
    # And for real, not only by review: a refused call is a 403.
    for attempt in (
        lambda: hub.list("secrets", ns),
        lambda: hub.delete("nodes", "any-node"),
        lambda: hub.create("pods", pod("elsewhere", "pass"), "default"),
    ):
        with pytest.raises(ApiError) as refused:
            attempt()
        assert refused.value.code == 403


def test_node_restriction_keeps_a_kubelet_from_labelling_itself_into_a_restricted_pool(kube):
    kube.add_node("node-r")
    as_node = kube.cluster.plane.client(kube.cluster.plane.node_credentials("node-r"))
    label = {"metadata": {"labels": {"node-restriction.kubernetes.io/pool": "secure"}}}
    with pytest.raises(ApiError) as refused:
        as_node.patch("nodes", "node-r", label)
    assert refused.value.code == 403

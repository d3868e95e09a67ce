"""The batch/v1 Job controller through the real sync client."""

from __future__ import annotations

import sys

import pytest
from kubernetes import client

from tests.k8s_harness import KubeHarness, PodBehavior

from .helpers import api_error


def job_manifest(name: str, labels: dict | None = None, **spec: object) -> dict:
    """A minimal valid job."""
    body: dict = {
        "template": {
            "metadata": {"labels": labels or {"role": "runner"}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "run", "image": "python:3.12"}],
            },
        }
    }
    body.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": body}


def _condition(harness: KubeHarness, name: str, type_: str) -> dict | None:
    job = harness.get("jobs", name) or {}
    for cond in job.get("status", {}).get("conditions", []):
        if cond["type"] == type_ and cond["status"] == "True":
            return cond
    return None


def test_job_completes(
    k8s_harness: KubeHarness, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    k8s_harness.set_pod_behavior(PodBehavior(run_seconds=0.05), selector="role=runner")
    created = batch.create_namespaced_job("default", job_manifest("train", completions=2))
    uid = created.metadata.uid
    assert created.metadata.generation == 1
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert created.spec.template.metadata.labels["job-name"] == "train"
    assert created.spec.backoff_limit == 6
    k8s_harness.wait_for(lambda: _condition(k8s_harness, "train", "Complete"))
    job = batch.read_namespaced_job_status("train", "default")
    assert job.status.succeeded == 2 and not job.status.active
    assert job.status.start_time and job.status.completion_time
    assert {c.type for c in job.status.conditions} == {"SuccessCriteriaMet", "Complete"}
    pods = core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=train")
    assert len(pods.items) == 2
    owner = pods.items[0].metadata.owner_references[0]
    assert (owner.kind, owner.uid, owner.controller) == ("Job", uid, True)
    reasons = [e["reason"] for e in k8s_harness.events_for("train")]
    assert reasons.count("SuccessfulCreate") == 2 and "Completed" in reasons

    # batch/v1 jobs orphan their pods by default; Background deletes them.
    batch.delete_namespaced_job("train", "default", propagation_policy="Background")
    k8s_harness.wait_for(lambda: not k8s_harness.list("pods", "default", "job-name=train"))


def test_job_fails_after_backoff_limit(k8s_harness: KubeHarness, batch: client.BatchV1Api) -> None:
    k8s_harness.set_pod_behavior(PodBehavior(run_seconds=0.02, exit_code=1), selector="role=runner")
    batch.create_namespaced_job("default", job_manifest("flaky", backoffLimit=1))
    cond = k8s_harness.wait_for(lambda: _condition(k8s_harness, "flaky", "Failed"))
    assert cond["reason"] == "BackoffLimitExceeded"
    assert cond["message"] == "Job has reached the specified backoff limit"
    job = batch.read_namespaced_job("flaky", "default")
    assert job.status.failed == 2 and job.status.completion_time is None
    assert "BackoffLimitExceeded" in [e["reason"] for e in k8s_harness.events_for("flaky")]
    batch.delete_namespaced_job("flaky", "default")  # orphans the two failed pods
    pods = k8s_harness.list("pods", "default", "job-name=flaky")
    assert len(pods) == 2 and all("ownerReferences" not in p["metadata"] for p in pods)


def test_deadline_and_ttl(k8s_harness: KubeHarness, batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job("default", job_manifest("forever", activeDeadlineSeconds=1))
    cond = k8s_harness.wait_for(lambda: _condition(k8s_harness, "forever", "Failed"), timeout=5)
    assert cond["reason"] == "DeadlineExceeded"
    k8s_harness.wait_for(lambda: not k8s_harness.list("pods", "default", "job-name=forever"))

    k8s_harness.set_pod_behavior(PodBehavior(run_seconds=0.02), selector="job-name=short")
    batch.create_namespaced_job("default", job_manifest("short", ttlSecondsAfterFinished=0))
    k8s_harness.wait_for_deletion("jobs", "short")
    k8s_harness.wait_for(lambda: not k8s_harness.list("pods", "default", "job-name=short"))


def test_job_runs_a_process(
    k8s_harness: KubeHarness, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    k8s_harness.set_pod_behavior(PodBehavior(mode="process"), selector="role=runner")
    body = job_manifest("notebook")
    body["spec"]["template"]["spec"]["containers"][0]["command"] = [
        sys.executable,
        "-c",
        "print('executed')",
    ]
    batch.create_namespaced_job("default", body)
    k8s_harness.wait_for(lambda: _condition(k8s_harness, "notebook", "Complete"))
    pod = k8s_harness.list("pods", "default", "job-name=notebook")[0]
    assert core.read_namespaced_pod_log(pod["metadata"]["name"], "default") == "executed\n"


def test_job_validation(batch: client.BatchV1Api) -> None:
    bad = job_manifest("always")
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(client.ApiException) as info:
        batch.create_namespaced_job("default", bad)
    body = api_error(info.value)
    assert info.value.status == 422
    assert body["details"]["group"] == "batch"
    assert (
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
        in body["message"]
    )
    manual = job_manifest("manual", selector={"matchLabels": {"role": "runner"}})
    with pytest.raises(client.ApiException) as info:
        batch.create_namespaced_job("default", manual)
    assert "`selector` will be auto-generated" in api_error(info.value)["message"]
    with pytest.raises(client.ApiException) as info:
        batch.read_namespaced_job("missing", "default")
    assert api_error(info.value)["message"] == 'jobs.batch "missing" not found'

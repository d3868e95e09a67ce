"""The jobs service's Kubernetes backend on the real control plane: Jobs created with the
service's own least-privilege identity, admitted, run by the process kubelet executing the real
runner on the user's storage (a PVC), retried, timed out, cancelled, with Pending reasons."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from server_extension.jobs.backends.base import Launch
from server_extension.jobs.backends.kubernetes import KubernetesBackend
from server_extension.jobs.model import Status
from server_extension.jobs.store import JobRecord
from server_extension.snapshot import write_snapshot
from tests.control_plane.api import Credentials
from tests.control_plane.behavior import PodBehavior
from tests.control_plane.fixtures import RBAC_FOLDER, point_clients_at

OWNER = "Alice.Wu@uni.edu"  # not a valid Kubernetes name: it must be sanitised
CLAIM = "claim-alice-2ewu-40uni-2eedu"  # claim-{username}, escaped as KubeSpawner escapes


@pytest.fixture
def cluster(kube, monkeypatch):
    kube.add_node("node-1")
    kube.set_pod_behavior(
        PodBehavior(mode="process"), selector="app.kubernetes.io/managed-by=ai-console-jobs"
    )
    kubeconfig = kube.folder / "jobs.kubeconfig"
    kube.bind_account("ai-console-jobs", RBAC_FOLDER / "jobs-rbac.yaml", kubeconfig)
    point_clients_at(kubeconfig, monkeypatch)
    kube.home = kube.add_volume(CLAIM)
    return kube


@pytest.fixture
async def backend(cluster):
    backend = KubernetesBackend(
        namespace=cluster.namespace,
        runner_command=[sys.executable, "-m", "server_extension.runner"],
        storage_mount_path="/home/jovyan",
        ttl_seconds_after_finished=600,
    )
    yield backend
    await backend.close()


def record(home: Path, *sources: str, **fields) -> JobRecord:
    job_id = uuid.uuid4().hex
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    spec = {"parameters": {}, "output_formats": ["ipynb"], "cwd": "../../.."}
    spec.update(fields.pop("spec", {}))
    snapshot = write_snapshot(home, job_id, nb, spec)
    values = dict(
        job_id=job_id, owner=OWNER, name="test", input_path="nb.ipynb", snapshot_path=snapshot,
        project="cs101", flavor="2C-4G", cpu=1.0, memory="1G", parameters={}, environment={},
        max_retries=0, output_formats=["ipynb"], tags=[], status=Status.QUEUED.value, attempts=0,
        create_time=int(time.time() * 1000),
    )  # fmt: skip
    values.update(fields)
    return JobRecord(**values)


def server_pod(user: str, node: str) -> dict:
    """The user's notebook server pod on ``node``, holding their home claim."""
    claim = {"claimName": f"claim-{user}"}
    return {
        "metadata": {"name": f"jupyter-{user}"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "notebook", "image": "scipy", "command": ["jupyterhub"]}],
            "volumes": [{"name": "home", "persistentVolumeClaim": claim}],
        },
    }


async def until(backend, job: JobRecord, states, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        seen = await backend.status_of(job)
        if seen.status in states or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.3)


async def test_a_job_runs_the_notebook_on_the_users_storage(cluster, backend):
    # The namespace enforces the "restricted" Pod Security level: the Job's pod passes it.
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    cluster.admin.patch("namespaces", cluster.namespace, {"metadata": {"labels": labels}})
    job = record(cluster.home, "print('hello from the pod')", "open('made-by-job.txt','w')")
    job.environment = {"EPOCHS": "3"}
    assert await backend.start(job, Launch()) == f"job-{job.job_id}"
    seen = await until(backend, job, (Status.COMPLETED, Status.FAILED))
    assert seen.status is Status.COMPLETED and seen.attempts == 1, seen
    folder = cluster.home / ".ai-console" / "jobs" / job.job_id
    assert "hello from the pod" in (folder / "job.log").read_text()
    assert (cluster.home / "made-by-job.txt").exists()  # ran in the user's home folder
    [created] = cluster.list("jobs")
    labels = created["metadata"]["labels"]
    assert labels["ai-console/owner"] == "Alice.Wu-uni.edu" and labels["ai-console/job-id"]
    [pod] = cluster.list("pods", labelSelector=f"job-name=job-{job.job_id}")
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert all("serviceAccountToken" not in json.dumps(v) for v in pod["spec"]["volumes"])
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["EPOCHS"] == "3"
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] is True and context["capabilities"]["drop"] == ["ALL"]
    assert "hello from the pod" in (await backend.read_file(job, "job.log")).decode()


async def test_a_failing_notebook_is_retried_then_fails(cluster, backend):
    job = record(cluster.home, "raise ValueError('bad data')", max_retries=1)
    await backend.start(job, Launch())
    seen = await until(backend, job, (Status.COMPLETED, Status.FAILED), timeout=90)
    assert seen.status is Status.FAILED and seen.attempts == 2, seen
    status = json.loads((cluster.home / Path(job.snapshot_path).parent / "status.json").read_text())
    assert status["attempt"] == 2 and status["error"]["ename"] == "ValueError"


async def test_a_job_that_cannot_run_fails_without_burning_retries(cluster, backend):
    job = record(cluster.home, "1", max_retries=3, spec={"kernel_name": "no-such-kernel"})
    await backend.start(job, Launch())
    seen = await until(backend, job, (Status.COMPLETED, Status.FAILED))
    assert seen.status is Status.FAILED and seen.attempts == 1, seen
    assert "PodFailurePolicy" in seen.message


async def test_the_timeout_stops_the_job(cluster, backend):
    job = record(cluster.home, "import time; time.sleep(300)", timeout_seconds=3)
    await backend.start(job, Launch())
    seen = await until(backend, job, (Status.COMPLETED, Status.FAILED))
    assert seen.status is Status.FAILED and "timeout" in seen.message


async def test_cancel_deletes_the_job_and_its_pod(cluster, backend):
    job = record(cluster.home, "import time; time.sleep(300)")
    await backend.start(job, Launch())
    assert (await until(backend, job, (Status.IN_PROGRESS,))).status is Status.IN_PROGRESS
    job.status = Status.STOPPING.value
    await backend.cancel(job)
    seen = await until(backend, job, (Status.STOPPED,))
    assert seen.status is Status.STOPPED
    deadline = time.monotonic() + 30
    while cluster.list("pods", labelSelector=f"job-name=job-{job.job_id}"):
        assert time.monotonic() < deadline, "the job's pod outlived its cancelled Job"
        await asyncio.sleep(0.3)


async def test_a_slice_pinned_to_a_missing_node_says_why_it_waits(cluster, backend):
    job = record(cluster.home, "1")
    pod = {
        "environment": {"NVIDIA_VISIBLE_DEVICES": "GPU-x"},
        "volumes": [],
        "volume_mounts": [],
        "annotations": {"ai-console/allocation": "a1"},
        "node": "gpu-gone",
        "simulated": True,
    }
    await backend.start(job, Launch(pod=pod))
    deadline = time.monotonic() + 20
    while True:
        seen = await backend.status_of(job)
        if seen.pending_reason and "Unschedulable" in seen.pending_reason:
            break
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.3)
    assert seen.status is Status.QUEUED
    [created] = cluster.list("pods", labelSelector=f"job-name=job-{job.job_id}")
    assert created["metadata"]["labels"]["ai-console/slice"] == "true"
    assert created["metadata"]["annotations"]["ai-console/allocation"] == "a1"


def test_the_jobs_service_role_is_least_privilege(cluster):
    token = cluster.cluster.plane.service_account_token(cluster.namespace, "ai-console-jobs")
    client = cluster.cluster.plane.client(Credentials(token=token))
    ns = cluster.namespace
    for verb, plural in [("create", "jobs"), ("delete", "jobs"), ("watch", "jobs"),
                         ("list", "pods"), ("get", "pods/log"), ("list", "events")]:  # fmt: skip
        assert client.can_i(verb, plural, ns), (verb, plural)
    for verb, plural in [("create", "pods"), ("get", "secrets"), ("create", "configmaps"),
                         ("delete", "pods"), ("patch", "jobs"), ("list", "nodes")]:  # fmt: skip
        assert not client.can_i(verb, plural, ns), (verb, plural)
    assert not client.can_i("create", "jobs", "default")  # only its own namespace


async def test_a_readwriteonce_home_held_by_the_server_places_the_job_on_its_node(cluster, backend):
    """The user's server holds their ReadWriteOnce claim on node-2: the job goes to node-2
    (elsewhere it could never attach it); a ReadWriteMany home mounts anywhere."""
    cluster.add_node("node-2")
    home = cluster.add_volume("claim-bob", access_mode="ReadWriteOnce")
    assert (await backend.storage("bob")).to_json() == {
        "shared": False,
        "node": None,
        "blocked": None,
    }
    cluster.admin.create("pods", server_pod("bob", "node-2"), cluster.namespace)
    deadline = time.monotonic() + 30
    while (storage := await backend.storage("bob")).node is None:
        assert time.monotonic() < deadline, "the server pod never ran"
        await asyncio.sleep(0.3)
    assert storage.node == "node-2" and not storage.shared and storage.blocked is None
    # Alice's ReadWriteMany home: no constraint, whoever holds it.
    assert (await backend.storage(OWNER)).to_json() == {
        "shared": True,
        "node": None,
        "blocked": None,
    }

    job = record(home, "print('next to the server')", owner="bob", node=storage.node)
    await backend.start(job, Launch())
    seen = await until(backend, job, (Status.COMPLETED, Status.FAILED))
    assert seen.status is Status.COMPLETED, seen
    [pod] = cluster.list("pods", labelSelector=f"job-name=job-{job.job_id}")
    assert pod["spec"]["nodeName"] == "node-2"
    affinity = pod["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["node-2"]


async def test_a_readwriteoncepod_home_in_use_refuses_the_job_and_says_why(cluster, backend):
    """A ReadWriteOncePod claim held by the user's server cannot be mounted by a job anywhere:
    the backend says so (the service answers 409 with it) instead of a Job stuck Pending."""
    cluster.add_volume("claim-carol", access_mode="ReadWriteOncePod")
    assert (await backend.storage("carol")).blocked is None  # nobody holds it yet
    cluster.admin.create("pods", server_pod("carol", "node-1"), cluster.namespace)
    deadline = time.monotonic() + 30
    while (storage := await backend.storage("carol")).blocked is None:
        assert time.monotonic() < deadline, "the server pod never ran"
        await asyncio.sleep(0.3)
    assert storage.node == "node-1" and not storage.shared
    assert "jupyter-carol has it: stop your server" in storage.blocked


async def test_a_gpu_job_runs_on_a_node_tainted_for_gpus(cluster, backend):
    """GPU node pools are tainted nvidia.com/gpu:NoSchedule; a job with a slice tolerates it
    (the real scheduler would keep it Pending otherwise)."""
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    cluster.add_node("gpu-tainted", taints=[taint])
    job = record(cluster.home, "print('on the GPU node')")
    pod = {
        "environment": {"NVIDIA_VISIBLE_DEVICES": "GPU-x"},
        "annotations": {"ai-console/allocation": "a2"},
        "node": "gpu-tainted",
        "simulated": True,
    }
    await backend.start(job, Launch(pod=pod))
    seen = await until(backend, job, {Status.COMPLETED, Status.FAILED})
    assert seen.status is Status.COMPLETED, seen
    [created] = cluster.list("pods", labelSelector=f"job-name=job-{job.job_id}")
    assert created["spec"]["nodeName"] == "gpu-tainted"

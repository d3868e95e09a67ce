"""Run notebook as job in Kubernetes mode, end to end on the real control plane: a real hub
(FractionalGPUKubeSpawner), the user's server in its pod with the server extension, the jobs
service as its own process with its own ServiceAccount (KubernetesBackend), the Job's pod run by
the process kubelet executing the real runner on the user's claim. The jobs service is killed
while a job runs and started again, and the user's server is stopped: the job is found
again and completes."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests

from hub_config.up import free_port
from server_extension.jobs.manager import FINAL_LOG_BYTES
from server_extension.jobs.uploads import UploadKeys
from spawner.manager import MPS_LABEL
from tests.control_plane.behavior import PodBehavior
from tests.control_plane.fixtures import RBAC_FOLDER
from tests.spawner.kube_setup import add_gpu_node

from .conftest import ADMIN_PASSWORD, PASSWORD, ProcessGroup
from .hubclient import HubClient
from .jobs_setup import FINISHED, LabUser, Service, notebook
from .test_kube_hub import KubeHub, run_singleuser_locally

JOBS_LABEL = "app.kubernetes.io/managed-by=ai-console-jobs"


class JobsService(ProcessGroup):
    """`python -m server_extension.jobs` with the Kubernetes backend, as the chart runs it."""

    def __init__(self, kube, tmp: Path, hub_api_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.log = tmp / "jobs.log"
        self.kubeconfig = tmp / "jobs.kubeconfig"
        kube.bind_account("ai-console-jobs", RBAC_FOLDER / "jobs-rbac.yaml", self.kubeconfig)
        self.config = tmp / "jobs_config.py"
        self.config.write_text(
            "c.JobsService.backend_class = "
            "'server_extension.jobs.backends.kubernetes.KubernetesBackend'\n"
            f"c.JobsService.db_url = 'sqlite:///{tmp / 'jobs.sqlite'}'\n"
            "c.JobsService.poll_interval = 0.5\n"
            f"c.KubernetesBackend.namespace = {kube.namespace!r}\n"
            f"c.KubernetesBackend.runner_command = [{sys.executable!r}, '-m', "
            "'server_extension.runner']\n"
            "c.KubernetesBackend.ttl_seconds_after_finished = 600\n"
        )
        self.hub_api = f"http://127.0.0.1:{hub_api_port}/hub/api"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "JUPYTERHUB_API_TOKEN": self.token,
            "JUPYTERHUB_API_URL": self.hub_api,
            "JUPYTERHUB_SERVICE_URL": self.url,
            "JUPYTERHUB_SERVICE_PREFIX": "/services/ai-console-jobs/",
        }
        argv = [
            sys.executable,
            "-m",
            "server_extension.jobs",
            f"--JobsService.config_file={self.config}",
        ]
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                requests.get(f"{self.url}/services/ai-console-jobs/api/jobs", timeout=5)
                return
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, self.log.read_text()[-3000:]
                time.sleep(0.3)


def assert_outputs_take_only_their_jobs_token(jobs: JobsService, job_id: str) -> None:
    """A job's outputs are sent with that job's token, straight to the service: no other
    token, and not once the job has ended (the runner sends before it exits)."""
    url = f"{jobs.url}/services/ai-console-jobs/api/jobs/{job_id}/outputs/ipynb"
    keys = UploadKeys(jobs.token)
    forged = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    for token, status in (
        ("", 403),
        (keys.token("0" * 32), 403),  # another job's token
        (jobs.token, 403),  # the service's own hub token is not an upload token
        (keys.token(job_id), 409),  # the right one, but the job has ended
    ):
        sent = requests.put(
            url, data=forged, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert sent.status_code == status, (token, sent.text)
        assert "message" in sent.json()


@pytest.fixture
def kube_jobs(kube, tmp_path) -> Iterator[tuple[KubeHub, JobsService, Path]]:
    add_gpu_node(kube, "gpu-01", gpus=1)
    add_gpu_node(kube, "gpu-02", gpus=1, labels={MPS_LABEL: "true"})
    kube.set_pod_behavior(
        PodBehavior(mode="process", transform=run_singleuser_locally),
        selector="component=singleuser-server",
    )
    kube.set_pod_behavior(PodBehavior(mode="process"), selector=JOBS_LABEL)
    home = kube.add_volume("claim-student1")
    hub = KubeHub(kube, tmp_path)
    api_port = free_port()
    jobs = JobsService(kube, tmp_path, api_port)
    hub.start(
        TEST_HUB_API_PORT=str(api_port),
        TEST_HUB_HOME_CLAIMS="1",
        AI_CONSOLE_JOBS_URL=jobs.url,
        AI_CONSOLE_JOBS_TOKEN=jobs.token,
    )
    try:
        jobs.start()
        yield hub, jobs, home
    finally:
        jobs.stop()
        hub.stop()


def test_a_job_runs_as_a_kubernetes_job_and_survives_a_jobs_service_restart(kube_jobs, kube):
    hub, jobs, home = kube_jobs
    student = LabUser(hub, "student1")  # type: ignore[arg-type]
    student.home = home  # the claim the server and the Job's pod both mount
    student.start_server()

    # Over a MiB of output first: the service keeps only the end of the log (FINAL_LOG_BYTES).
    filler = "print(('filler line of a chatty training loop ' * 3 + chr(10)) * 12000)"
    student.write(
        "train.ipynb", notebook(filler, "print('trained', epochs)", parameters="epochs = 1")
    )
    made = student.submit("train.ipynb", parameters={"epochs": 5})
    assert made.status_code == 201, made.text
    done = student.wait(made.json()["job_id"], timeout=120)
    assert done["status"] == "COMPLETED", (done, jobs.log.read_text()[-3000:])
    assert "trained 5" in student.call("GET", f"jobs/{done['job_id']}/log").text[-200:]
    [job] = [
        j
        for j in kube.list("jobs")
        if j["metadata"]["labels"]["ai-console/job-id"] == done["job_id"]
    ]
    assert job["metadata"]["labels"]["ai-console/owner"] == "student1"
    [pod] = kube.list("pods", labelSelector=f"job-name={job['metadata']['name']}")
    assert pod["spec"]["automountServiceAccountToken"] is False
    # A CPU job: the allocator held a GPU node's CPU for it, as for a CPU-only server (the
    # ledger's annotations, pinned there), with no GPU to reach and no GPU runtime.
    held = pod["metadata"]["annotations"]
    assert held["ai-console/node"] == pod["spec"]["nodeName"] in ("gpu-01", "gpu-02")
    assert held["ai-console/gpu-uuids"] == "" and held["ai-console/cpu-millis"] == "2000"
    assert "runtimeClassName" not in pod["spec"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert done.get("gpu_slice") is None  # no GPU slice to show
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["claim-student1"]
    assert (home / ".ai-console" / "jobs" / done["job_id"] / "output.ipynb").exists()

    # The Job and its pod are deleted (TTL, a node lost): the course admin, who cannot read the
    # student's storage, still reads the log, from the service's record.
    kube.admin.delete("jobs", job["metadata"]["name"], kube.namespace)
    deadline = time.monotonic() + 30
    while kube.list("pods", labelSelector=f"job-name={job['metadata']['name']}"):
        assert time.monotonic() < deadline, "the Job's pod outlived the Job"
        time.sleep(0.3)
    assert HubClient(hub.url).login("teacher", PASSWORD).status_code == 302
    teacher = Service(hub, "teacher")  # type: ignore[arg-type]
    log = teacher.call("GET", f"jobs/{done['job_id']}/log")
    assert log.status_code == 200 and "trained 5" in log.text, log.text[-2000:]
    assert FINAL_LOG_BYTES - 4 <= len(log.content) <= FINAL_LOG_BYTES, "the end, bounded"
    assert "job started" not in log.text  # its start is in the student's own job.log only
    own_log = student.call("GET", f"jobs/{done['job_id']}/log").text
    assert own_log.startswith("=== job started") and len(own_log) > FINAL_LOG_BYTES
    # ... and the executed notebook, which its runner sent to the service before it exited.
    output = teacher.call("GET", f"jobs/{done['job_id']}/output")
    assert output.status_code == 200, output.text
    executed = nbformat.reads(output.text, as_version=4)
    assert any("trained 5" in json.dumps(c.get("outputs", [])) for c in executed.cells)
    assert_outputs_take_only_their_jobs_token(jobs, done["job_id"])

    # The service dies while a job runs; started again, it finds the Job and follows it to the end.
    student.write("slow.ipynb", notebook("import time; time.sleep(20)", "print('slow done')"))
    slow = student.submit("slow.ipynb").json()
    student.wait(slow["job_id"], timeout=60, until=("IN_PROGRESS",))
    garbled = requests.put(
        f"{jobs.url}/services/ai-console-jobs/api/jobs/{slow['job_id']}/outputs/ipynb",
        data=b"not a notebook",
        headers={"Authorization": f"Bearer {UploadKeys(jobs.token).token(slow['job_id'])}"},
        timeout=10,
    )
    assert garbled.status_code == 400 and "not a notebook" in garbled.json()["message"]
    jobs.kill()
    jobs.start()
    # The user's server stops too: the job does not need it. Follow it as a script would, with
    # the user's own token through the hub's proxy.
    student.stop_server()
    service = Service(hub, "student1")  # type: ignore[arg-type]
    [running] = kube.list("pods", labelSelector=f"ai-console/job-id={slow['job_id']}")
    assert running["status"]["phase"] == "Running"  # still running after all that
    deadline = time.monotonic() + 120
    while (finished := service.call("GET", f"jobs/{slow['job_id']}").json())[
        "status"
    ] not in FINISHED:
        assert time.monotonic() < deadline, finished
        time.sleep(0.5)
    assert finished["status"] == "COMPLETED", finished
    assert "slow done" in service.call("GET", f"jobs/{slow['job_id']}/log").text
    listed = {j["job_id"] for j in service.call("GET", "jobs").json()["jobs"]}
    assert {done["job_id"], slow["job_id"]} <= listed


def test_the_hub_places_a_jobs_slice_on_the_node_the_service_names(kube_jobs):
    """The jobs service names the node where the user's ReadWriteOnce home is attached; the
    hub's admission places the GPU slice there, and refuses a malformed node. On a node that
    runs the MPS daemon, the job's pod gets the MPS caps and the daemon's pipe, as a notebook's."""
    hub, jobs, _home = kube_jobs
    admissions = f"{hub.url}/hub/api/ai-console/job-admissions"
    headers = {"Authorization": f"token {jobs.token}"}

    def admit(node: object) -> requests.Response:
        request = {"flavor": "4C-16G-1/4GPU", "node": node}
        body = {"user": "student1", "request": request, "name": "placed"}
        return requests.post(admissions, json=body, headers=headers, timeout=30)

    for node in ("gpu-02", "gpu-01"):
        admitted = admit(node)
        assert admitted.status_code == 201, admitted.text
        allocation = admitted.json()["allocation"]
        pod = admitted.json()["pod"]
        assert allocation["node"] == node and pod["node"] == node
        host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
        if node == "gpu-02":  # labelled ai-console/mps=true
            assert pod["environment"]["CUDA_MPS_PIPE_DIRECTORY"] == "/tmp/nvidia-mps"
            assert pod["environment"]["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=6144M"
            assert host_paths == {"/tmp/nvidia-mps", "/run/nvidia/mps/shm"}
        else:
            assert "CUDA_MPS_PIPE_DIRECTORY" not in pod["environment"] and not host_paths
        released = requests.delete(
            f"{hub.url}/hub/api/ai-console/allocations/{allocation['id']}",
            headers=headers,
            timeout=30,
        )
        assert released.status_code == 200, released.text
    refused = admit(["gpu-01"])
    assert refused.status_code == 400 and refused.json()["field"] == "node", refused.text


def test_the_jobs_service_touches_only_the_job_slices_it_reserved(kube_jobs):
    """The jobs service's allocations scope reaches its own job slices, not a student's
    notebook slice (whose id it may well learn), and it cannot reserve around the admission's
    project and quota checks."""
    hub, jobs, _home = kube_jobs
    student = HubClient(hub.url)
    assert student.login("student1", PASSWORD).status_code == 302
    assert student.spawn("student1", "pytorch-quarter-3090").status_code == 302
    assert student.wait_for_server("student1", timeout=120).get("ready"), hub.logs()[-3000:]
    admin = HubClient(hub.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    [notebook_slice] = [
        a
        for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]
        for a in g["allocations"]
    ]
    assert notebook_slice["owner"]["kind"] == "notebook"

    api = f"{hub.url}/hub/api/ai-console"
    as_service = {"Authorization": f"token {jobs.token}"}

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{api}/{path}", headers=as_service, timeout=30, **kwargs)

    slice_id = notebook_slice["id"]
    assert call("DELETE", f"allocations/{slice_id}").status_code == 404
    assert call("POST", f"allocations/{slice_id}/commit").status_code == 404
    raw = {"gpu_type": "RTX3090", "fraction": "1/4", "owner": {"kind": "job", "user": "student1"}}
    assert call("POST", "allocations", json=raw).status_code == 403
    held = [a["id"] for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]
            for a in g["allocations"]]  # fmt: skip
    assert held == [slice_id], "the student's notebook slice is still theirs"

    admitted = call(
        "POST",
        "job-admissions",
        json={"user": "student1", "request": {"flavor": "4C-16G-1/4GPU"}, "name": "mine"},
    )
    assert admitted.status_code == 201, admitted.text
    job_slice = admitted.json()["allocation"]["id"]
    assert call("POST", f"allocations/{job_slice}/commit").status_code == 200
    assert call("DELETE", f"allocations/{job_slice}").json() == {"id": job_slice, "released": True}

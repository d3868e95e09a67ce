"""Helpers for the Run-as-job tests on the single-machine hub: users' servers, notebooks, jobs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import requests

from .conftest import ADMIN_PASSWORD, LocalHub
from .hubclient import HubClient

FINISHED = ("COMPLETED", "FAILED", "STOPPED")

#: A class with one GPU-sharing project (quota of one quarter GPU) and a lab, with flavors.
JOBS_YAML = """
platform_admins: [admin]
images:
  scipy: {display_name: Scientific Python, image: quay.io/jupyter/scipy-notebook:latest}
  pytorch: {display_name: PyTorch, image: quay.io/jupyter/pytorch-notebook:latest}
projects:
  cs101:
    display_name: Intro to Deep Learning
    members: {users: [student1, student2]}
    admins: [teacher]
    gpu_quota: 1/4
    images: [scipy, pytorch]
    flavors: [2C-4G, 4C-16G-1/4GPU]
  nlp-lab:
    display_name: NLP Lab
    members: {users: [researcher]}
    images: [scipy]
profiles:
  - display_name: CPU only
    slug: cpu-only
    image: scipy
flavors:
  - {name: 2C-4G, cpu: 2, memory: 4G}
  - name: 4C-16G-1/4GPU
    cpu: 4
    memory: 16G
    gpu: {fraction: 1/4, types: [RTX3090]}
  - name: 8C-32G-1GPU
    cpu: 8
    memory: 32G
    gpu: {fraction: 1, types: [RTX3090, A100]}
"""


def notebook(*sources: str, parameters: str | None = None) -> nbformat.NotebookNode:
    """A Python notebook of these code cells, with an optional ``parameters`` cell first."""
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    if parameters is not None:
        cells.insert(0, nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


class LabUser:
    """A logged-in user with a running server, calling its AI Console API as the Lab does."""

    def __init__(self, hub: LocalHub, name: str) -> None:
        self.hub, self.name = hub, name
        self.client = HubClient(hub.url)
        assert self.client.login(name, hub.password_of(name)).status_code == 302
        self.home = hub.data / "users" / name

    def start_server(self) -> LabUser:
        assert self.client.spawn(self.name, "cpu-only").status_code == 302
        assert self.client.wait_for_server(self.name, timeout=120).get("ready"), self.hub.logs()
        assert self.client.open_server(self.name).status_code == 200
        return self

    def stop_server(self) -> None:
        self.client.api("DELETE", f"/users/{self.name}/server")
        self.client.wait_for_server(self.name)

    @property
    def base(self) -> str:
        return f"{self.hub.url}/user/{self.name}/ai-console"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        xsrf = next(
            (
                c.value
                for c in self.client.session.cookies
                if c.name == "_xsrf" and "/user/" in c.path
            ),
            "",
        )
        return self.client.session.request(
            method, f"{self.base}/{path}", headers={"X-XSRFToken": xsrf}, timeout=60, **kwargs
        )

    def write(self, path: str, nb: nbformat.NotebookNode) -> None:
        target = self.home / path
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        # As the user's own account would have written it (the home is theirs alone).
        owner = self.home.stat()
        for made in (target, *target.relative_to(self.home).parents):
            os.chown(self.home / made, owner.st_uid, owner.st_gid)

    def submit(self, path: str, **fields) -> requests.Response:
        return self.call("POST", "jobs", json={"input_path": path, "flavor": "2C-4G", **fields})

    def wait(self, job_id: str, timeout: float = 90, until=FINISHED) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call("GET", f"jobs/{job_id}").json()
            if job["status"] in until:
                return job
            time.sleep(0.3)
        raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")

    def job_folders(self) -> list[Path]:
        folder = self.home / ".ai-console" / "jobs"
        return sorted(folder.iterdir()) if folder.is_dir() else []


class Service:
    """The jobs service through the proxy, with one user's own API token (as scripts call it)."""

    def __init__(self, hub: LocalHub, user: str) -> None:
        admin = HubClient(hub.url)
        assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
        made = admin.api("POST", f"/users/{user}/tokens", json={"note": "jobs test"})
        assert made.status_code == 201, made.text
        self.token = made.json()["token"]
        self.base = f"{hub.url}/services/ai-console-jobs/api"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.base}/{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
            **kwargs,
        )

"""A real JupyterHub with FractionalGPUKubeSpawner against the real control plane, as the hub's
ServiceAccount: spawn on a 1/4 slice, reach the single-user server through the proxy, stop;
four students share one GPU and the fifth is refused; the hub killed mid-spawn rebuilds its
ledger from the pods."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_fraction import keys
from hub_config.up import free_port
from tests.control_plane.behavior import PodBehavior, ProcessSpec
from tests.spawner.kube_setup import add_gpu_node, live_slice_pods

from .conftest import ADMIN_PASSWORD, PASSWORD, ROOT, ProcessGroup, wait_http
from .hubclient import HubClient

HUB_CONFIG = Path(__file__).with_name("kube_hub_config.py")


def run_singleuser_locally(spec: ProcessSpec) -> ProcessSpec:
    """The pod's `jupyterhub-singleuser` runs from this interpreter (the image is not pulled)."""
    spec.argv = [sys.executable, "-m", "jupyterhub.singleuser", *spec.argv[1:], "--allow-root"]
    return spec


class KubeHub(ProcessGroup):
    """A real hub in Kubernetes mode; ``kill`` takes its proxy down with it."""

    def __init__(self, kube, tmp_path: Path) -> None:
        self.kube = kube
        self.data = tmp_path / "hub"
        self.data.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = tmp_path / "hub.log"

    def password_of(self, name: str) -> str:
        """Every user's password: the Kubernetes test hub uses the shared-password login."""
        return PASSWORD

    def start(self, **extra_env: str) -> None:
        env = {
            **os.environ,
            **extra_env,
            "KUBECONFIG": str(self.kube.hub_kubeconfig),
            "TEST_HUB_NAMESPACE": self.kube.namespace,
            "TEST_HUB_DATA": str(self.data),
            "TEST_HUB_PROXY": str(ROOT / "node_modules" / ".bin" / "configurable-http-proxy"),
            "TEST_HUB_PASSWORD": PASSWORD,
            "TEST_HUB_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyterhub",
                    "-f",
                    str(HUB_CONFIG),
                    "--ip=127.0.0.1",
                    f"--port={self.port}",
                ],
                cwd=self.data,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_http(f"{self.url}/hub/login", self.process, self.log)

    def logs(self) -> str:
        return self.log.read_text()[-5000:]


@pytest.fixture
def kube_hub(kube, tmp_path) -> Iterator[KubeHub]:
    add_gpu_node(kube, "gpu-01", gpus=1)
    kube.set_pod_behavior(
        PodBehavior(mode="process", transform=run_singleuser_locally),
        selector="component=singleuser-server",
    )
    hub = KubeHub(kube, tmp_path)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


def slice_pods(kube) -> dict[str, str]:
    """Live pods holding a slice: pod name -> allocation id (what the cluster says)."""
    return live_slice_pods(kube, include_terminating=False)


def hub_allocations(admin: HubClient) -> dict[str, dict]:
    gpus = admin.api("GET", "/ai-console/allocations").json()["gpus"]
    return {a["id"]: a for gpu in gpus for a in gpu["allocations"]}


def test_spawn_reach_and_stop_through_a_real_hub(kube_hub: KubeHub):
    student = HubClient(kube_hub.url)
    assert student.login("student1", PASSWORD).status_code == 302
    assert "free now" in student.spawn_form()
    assert student.spawn("student1", "pytorch-quarter-3090").status_code == 302
    messages = student.progress_messages("student1")
    # JupyterHub's own "Server requested", then the placement, then the pod's events.
    assert messages[:2] == ["Server requested", messages[1]], messages
    assert (
        messages[1].startswith("Reserved 1/4 of RTX3090 GPU-gpu-01-0") and "gpu-01" in messages[1]
    )
    server = student.wait_for_server("student1", timeout=120)
    assert server.get("ready"), kube_hub.logs()

    pod = kube_hub.kube.get("pods", "jupyter-student1")
    annotations = pod["metadata"]["annotations"]
    assert annotations[keys.ANN_OWNER_USER] == "student1"
    assert annotations[keys.ANN_OWNER_PROJECT] == "cs101"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == annotations[keys.ANN_GPU_UUIDS]
    assert pod["spec"]["affinity"]["nodeAffinity"]  # pinned to its GPU's node
    # The user pod holds no Kubernetes credentials: the admitted pod (after the ServiceAccount
    # admission plugin) has no token volume, and no container mounts one.
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert not [v for v in pod["spec"].get("volumes", []) if "projected" in v]
    mounts = [m["mountPath"] for m in pod["spec"]["containers"][0].get("volumeMounts", [])]
    assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts

    lab = student.open_server("student1")
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    status = student.session.get(f"{kube_hub.url}/user/student1/api/status", timeout=30)
    assert status.status_code == 200

    assert student.api("DELETE", "/users/student1/server").status_code in (202, 204)
    student.wait_for_server("student1", timeout=60)
    admin = HubClient(kube_hub.url)
    admin.login("admin", ADMIN_PASSWORD)
    assert hub_allocations(admin) == {}
    assert slice_pods(kube_hub.kube) == {}


def test_four_students_share_a_gpu_and_the_fifth_is_refused(kube_hub: KubeHub):
    students = [HubClient(kube_hub.url) for _ in range(5)]
    names = ["student1", "student2", "student3", "student4", "teacher"]
    for client, name in zip(students, names, strict=True):
        assert client.login(name, PASSWORD).status_code == 302
    for client, name in zip(students[:4], names[:4], strict=True):
        assert client.spawn(name, "pytorch-quarter-3090").status_code == 302
    for client, name in zip(students[:4], names[:4], strict=True):
        assert client.wait_for_server(name, timeout=180).get("ready"), kube_hub.logs()

    fifth, name = students[4], names[4]
    fifth.spawn(name, "pytorch-quarter-3090")
    messages = fifth.progress_messages(name)
    assert any(
        "No GPU slice available: no RTX3090 has 1/4 free: 1 of 1 in use" in m for m in messages
    ), messages
    assert kube_hub.kube.get("pods", "jupyter-teacher") is None

    admin = HubClient(kube_hub.url)
    admin.login("admin", ADMIN_PASSWORD)
    held = hub_allocations(admin)
    assert sorted(a["owner"]["user"] for a in held.values()) == names[:4]
    assert set(held) == set(slice_pods(kube_hub.kube).values())
    for client, name in zip(students[:4], names[:4], strict=True):
        client.api("DELETE", f"/users/{name}/server")
    for client, name in zip(students[:4], names[:4], strict=True):
        client.wait_for_server(name, timeout=60)
    assert hub_allocations(admin) == {}


def test_hub_killed_mid_spawn_rebuilds_the_ledger_from_pods(kube_hub: KubeHub):
    kube = kube_hub.kube
    # Pods take a while to start, so the kill lands while spawns are in flight.
    kube.set_pod_behavior(
        PodBehavior(mode="process", transform=run_singleuser_locally, start_delay=3.0),
        selector="component=singleuser-server",
    )
    clients = []
    for name in ("student1", "student2", "student3"):
        client = HubClient(kube_hub.url)
        client.login(name, PASSWORD)
        client.spawn(name, "pytorch-quarter-3090")
        clients.append(client)
    deadline = time.monotonic() + 30
    while len(slice_pods(kube)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    before = slice_pods(kube)
    assert len(before) == 3
    kube_hub.kill()

    kube_hub.start()
    admin = HubClient(kube_hub.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    held = hub_allocations(admin)
    assert set(held) == set(before.values())
    assert all(a["committed"] for a in held.values())
    gpu = admin.api("GET", "/ai-console/allocations").json()["gpus"][0]
    assert gpu["free_memory_mib"] == 24576 - 3 * 6144


MARKUP_YAML = """
platform_admins: [admin]
images:
  scipy: {display_name: SciPy, image: quay.io/jupyter/scipy-notebook:latest}
projects:
  cs101:
    display_name: Intro
    members: {users: [student1]}
profiles:
  - display_name: Evil <img src=x onerror=alert(1)>
    slug: evil
    image: scipy
    projects: [cs101]
    description: <script>alert(2)</script> & more
    profile_options:
      size:
        display_name: Size <b onmouseover=alert(3)>
        choices:
          small: {display_name: <i>small</i>, default: true}
"""


def test_the_spawn_form_shows_the_yamls_texts_as_text_not_markup(kube, tmp_path):
    """KubeSpawner's form template does not escape what it is given; the YAML's names and
    descriptions reach it escaped, so an admin's (or a pasted) `<script>` stays text."""
    kube.add_node("cpu-01")
    config = tmp_path / "ai-console.yaml"
    config.write_text(MARKUP_YAML)
    hub = KubeHub(kube, tmp_path)
    hub.start(AI_CONSOLE_CONFIG=str(config))
    try:
        student = HubClient(hub.url)
        assert student.login("student1", PASSWORD).status_code == 302
        form = student.spawn_form()
    finally:
        hub.stop()
    for markup in ("<img src=x", "<script>alert(2)", "<b onmouseover", "<i>small"):
        assert markup not in form, markup
    for text in ("&lt;img src=x onerror=alert(1)&gt;", "&lt;script&gt;", "&amp; more"):
        assert text in form, text

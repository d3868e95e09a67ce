"""``helm install`` of the chart into the real control plane, as a campus admin does it: the
chart's Deployments become pods that the process kubelet runs (its ConfigMap and Secret mounted
where the chart puts them, the hub with its own ServiceAccount's token and nothing else), the
proxy routes to the hub through their Services, a student logs in and gets a fractional-GPU
server, a notebook runs as a Kubernetes Job through the chart's jobs service, ``helm upgrade``
with another profile list reaches the spawn form, and ``helm uninstall`` leaves only the users'
files (their claims)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from gpu_fraction import keys
from gpu_fraction.enforcement import (
    ENV_MPS_PINNED_MEM_LIMIT,
    ENV_MPS_PIPE_DIRECTORY,
    MPS_PIPE_VOLUME,
    MPS_SHM_VOLUME,
)
from hub_config.loader import EXAMPLE
from spawner.manager import MPS_LABEL
from tests.control_plane.api import ApiError
from tests.control_plane.behavior import PodBehavior, ProcessSpec
from tests.control_plane.fixtures import Cluster, TestCluster
from tests.e2e.hubclient import HubClient
from tests.e2e.jobs_setup import LabUser, notebook
from tests.spawner.kube_setup import RTX_LABELS

from .binary import ensure
from .fake_gpu_agent import UTILIZATION, gpu_uuid
from .test_chart import CHART, ROOT

RELEASE = "ai-console"
GPU_NODE = "helm-gpu-01"
PASSWORD = "student-pass-123"
ADMIN_PASSWORD = "admin-pass-0123456789-0123456789-xyz"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
CHP = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
# What the chart makes, by kind (helm uninstall must remove every one of them).
CHART_KINDS = (
    ("/apis/apps/v1", "deployments"),
    ("/apis/apps/v1", "daemonsets"),
    ("/api/v1", "services"),
    ("/api/v1", "configmaps"),
    ("/api/v1", "secrets"),
    ("/api/v1", "serviceaccounts"),
    ("/api/v1", "persistentvolumeclaims"),
    ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    ("/apis/networking.k8s.io/v1", "networkpolicies"),
)
CLUSTER_KINDS = ("clusterroles", "clusterrolebindings")
# ... and what the hub, the jobs service and the controllers make from them.
EXTRA_KINDS = (
    ("/api/v1", "pods"),
    ("/apis/apps/v1", "replicasets"),
    ("/apis/batch/v1", "jobs"),
    ("/apis/coordination.k8s.io/v1", "leases"),
    ("/apis/discovery.k8s.io/v1", "endpointslices"),
)
# A namespace after `helm uninstall`: the users' claims, and what Kubernetes puts in every one.
KEPT = {
    "persistentvolumeclaims/claim-student1",
    "configmaps/kube-root-ca.crt",
    "serviceaccounts/default",
}


def run_singleuser_locally(spec: ProcessSpec) -> ProcessSpec:
    """The user's `jupyterhub-singleuser` from this interpreter (the image is not pulled)."""
    spec.argv = [sys.executable, "-m", "jupyterhub.singleuser", *spec.argv[1:], "--allow-root"]
    return spec


def proxy_from_node_modules(spec: ProcessSpec) -> ProcessSpec:
    """The proxy image's `configurable-http-proxy` is the project's own (npm)."""
    spec.argv = [str(CHP), *spec.argv[1:]]
    return spec


def fake_gpu_agent(spec: ProcessSpec) -> ProcessSpec:
    """`ai-console agent ...` with a fake NVML of one RTX 3090 (see fake_gpu_agent.py)."""
    assert spec.argv[:2] == ["ai-console", "agent"], spec.argv
    spec.argv = [sys.executable, "-m", "tests.helm.fake_gpu_agent", *spec.argv[2:]]
    return spec


def values(profiles_extra: list[dict] | None = None) -> dict:
    admin_file = yaml.safe_load(EXAMPLE.read_text())
    admin_file["profiles"] += profiles_extra or []
    return {
        "aiConsole": admin_file,
        "hub": {
            "config": {
                "JupyterHub": {"authenticator_class": "shared-password"},
                "SharedPasswordAuthenticator": {
                    "user_password": PASSWORD,
                    "admin_password": ADMIN_PASSWORD,
                },
                "Authenticator": {"allow_all": True, "admin_users": ["admin"]},
                "KubeSpawner": {"start_timeout": 120, "http_timeout": 90},
                "AgentSamples": {"interval": 1},
            }
        },
        # Finished Jobs go soon, so that the namespace is empty after the uninstall below.
        "jobs": {"ttlSecondsAfterFinished": 10},
        # The MPS control daemon on the GPU node (a stand-in that only runs: no GPU here).
        "mps": {"enabled": True},
    }


@dataclass
class Install:
    """One release of the chart in a namespace of its own."""

    view: TestCluster
    kubeconfig: Path
    folder: Path

    @property
    def namespace(self) -> str:
        return self.view.namespace

    def helm(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [
                str(ensure()),
                *args,
                "--namespace",
                self.namespace,
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout + done.stderr + self.pod_logs()
        return done

    def deploy(self, command: str, settings: dict) -> str:
        """``helm install|upgrade --wait`` with these values; returns what Helm printed."""
        path = self.folder / f"values-{secrets.token_hex(3)}.yaml"
        path.write_text(yaml.safe_dump(settings))
        done = self.helm(command, RELEASE, str(CHART), "-f", str(path), "--wait", "--timeout", "3m")
        return done.stdout

    @property
    def url(self) -> str:
        """The proxy's public address: the LoadBalancer's ingress, as `kubectl get svc` shows."""
        service = self.view.get("services", f"{RELEASE}-proxy-public")
        assert service is not None
        [ingress] = service["status"]["loadBalancer"]["ingress"]
        return f"http://{ingress['ip']}:{service['spec']['ports'][0]['port']}"

    def pod(self, component: str) -> dict:
        [pod] = [
            p
            for p in self.view.list(
                "pods", labelSelector=f"{INSTANCE},app.kubernetes.io/component={component}"
            )
            if not p["metadata"].get("deletionTimestamp")
        ]
        return pod

    def pod_logs(self) -> str:
        out = []
        for pod in self.view.list("pods"):
            name = pod["metadata"]["name"]
            try:
                text = self.view.admin.request(
                    "GET", f"/api/v1/namespaces/{self.namespace}/pods/{name}/log"
                )
            except ApiError as err:
                text = str(err)
            out.append(f"--- {name}\n{str(text)[-3000:]}")
        return "\n".join(out)

    def namespace_contents(self) -> set[str]:
        """Every object in the namespace, as ``plural/name`` (events aside)."""
        found = set()
        for prefix, plural in (*CHART_KINDS, *EXTRA_KINDS):
            listed = self.view.admin.request(
                "GET", f"{prefix}/namespaces/{self.namespace}/{plural}"
            )
            found |= {f"{plural}/{o['metadata']['name']}" for o in listed["items"]}
        return found

    def leftovers(self) -> list[str]:
        """Everything of the release still in the cluster (namespaced and cluster-wide)."""
        found = []
        for prefix, plural in CHART_KINDS:
            listed = self.view.admin.request(
                "GET",
                f"{prefix}/namespaces/{self.namespace}/{plural}",
                params={"labelSelector": INSTANCE},
            )
            found += [f"{plural}/{o['metadata']['name']}" for o in listed["items"]]
        for plural in CLUSTER_KINDS:
            for obj in self.view.list(plural, labelSelector=INSTANCE):
                if obj["metadata"]["name"].startswith(f"{self.namespace}-"):
                    found.append(f"{plural}/{obj['metadata']['name']}")
        return found


class _HubView:
    """What tests/e2e's LabUser needs of a hub: its URL, passwords, the user's files."""

    def __init__(self, install: Install) -> None:
        self.url = install.url
        self.install = install
        self.data = install.view.kubelet.root / "pvc" / install.namespace / "homes"

    def password_of(self, name: str) -> str:
        return PASSWORD

    def logs(self) -> str:
        return self.install.pod_logs()


@pytest.fixture
def install(control_plane: Cluster, tmp_path: Path) -> Iterator[Install]:
    view = TestCluster(control_plane, f"campus-{secrets.token_hex(3)}", tmp_path)
    view.create_namespace()
    # A GPU node as GPU feature discovery labels it; its GPU list comes from the chart's agent.
    view.add_node(
        GPU_NODE,
        labels={**RTX_LABELS, keys.GFD_COUNT: "1", MPS_LABEL: "true"},
        allocatable={"cpu": "32", "memory": "128Gi", "pods": "110"},
    )
    process = PodBehavior(mode="process")
    for component in ("hub", "jobs"):
        view.set_pod_behavior(
            process, selector=f"{INSTANCE},app.kubernetes.io/component={component}"
        )
    view.set_pod_behavior(
        PodBehavior(mode="process", transform=proxy_from_node_modules),
        selector=f"{INSTANCE},app.kubernetes.io/component=proxy",
    )
    view.set_pod_behavior(
        PodBehavior(mode="process", transform=run_singleuser_locally),
        selector="component=singleuser-server",
    )
    view.set_pod_behavior(process, selector="app.kubernetes.io/managed-by=ai-console-jobs")
    view.set_pod_behavior(
        PodBehavior(mode="process", transform=fake_gpu_agent),
        selector=f"{INSTANCE},app.kubernetes.io/component=agent",
    )
    kubeconfig = control_plane.plane.write_kubeconfig(
        tmp_path / "admin.kubeconfig", control_plane.plane.admin_credentials
    )
    release = Install(view, kubeconfig, tmp_path)
    try:
        yield release
    finally:
        subprocess.run(
            [
                str(ensure()),
                "uninstall",
                RELEASE,
                "-n",
                view.namespace,
                "--kubeconfig",
                str(kubeconfig),
            ],
            capture_output=True,
            timeout=120,
        )
        view.cleanup()


def wait_until(check, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.3)


def test_helm_install_upgrade_and_uninstall_on_the_real_control_plane(install: Install) -> None:
    printed = install.deploy("install", values())
    ns = install.namespace
    # Helm's notes tell the admin where the hub is and how users log in.
    assert f"kubectl get service {RELEASE}-proxy-public -n {ns}" in printed
    assert "Users log in with: shared-password." in printed and "WARNING" not in printed

    # The hub's pod: the chart's files where the chart mounts them, its own account's token.
    hub = install.pod("hub")
    spec = hub["spec"]
    assert spec["serviceAccountName"] == f"{RELEASE}-hub"
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/etc/ai-console"] == "config" and mounts["/etc/ai-console/secret"] == "secret"
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
    # ... and the proxy, which never talks to Kubernetes, none.
    proxy = install.pod("proxy")["spec"]
    assert not [v for v in proxy.get("volumes", []) if "projected" in v]
    # The agent on the GPU node: its GPU list on its Node (patched with its own account's
    # token), its /metrics on the pod's address for the hub.
    published = wait_until(
        lambda: (install.view.get("nodes", GPU_NODE)["metadata"].get("annotations") or {}).get(
            keys.ANN_NODE_GPUS
        ),
        30,
        lambda: f"the agent published no GPU list:\n{install.pod_logs()}",
    )
    assert [g["uuid"] for g in json.loads(published)] == [gpu_uuid(GPU_NODE)]
    agent = install.pod("agent")
    assert agent["spec"]["nodeName"] == GPU_NODE and agent["spec"]["hostPID"] is True
    metrics = requests.get(f"http://{agent['status']['podIP']}:9410/metrics", timeout=10)
    assert gpu_uuid(GPU_NODE) in metrics.text

    # Through the proxy's public Service to the hub; the password comes from hub.config (in the
    # chart's Secret), the profiles from aiConsole (in its ConfigMap).
    url = install.url
    assert requests.get(f"{url}/hub/login", timeout=30).status_code == 200
    student = HubClient(url)
    assert student.login("student1", PASSWORD).status_code == 302
    offered = student.api("GET", "/ai-console/spawn-options").json()
    slugs = [p["slug"] for p in offered["profiles"]]
    assert "pytorch-quarter-3090" in slugs and "evening-lab" not in slugs

    assert student.spawn("student1", "pytorch-quarter-3090").status_code == 302
    server = student.wait_for_server("student1", timeout=150)
    assert server.get("ready"), install.pod_logs()
    pod = install.view.get("pods", "jupyter-student1")
    annotations = pod["metadata"]["annotations"]
    assert annotations[keys.ANN_OWNER_USER] == "student1"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == annotations[keys.ANN_GPU_UUIDS] == gpu_uuid(GPU_NODE)
    assert pod["spec"]["automountServiceAccountToken"] is False
    # The slice is an MPS client of the chart's daemon: the same host directories, the caps.
    assert env[ENV_MPS_PINNED_MEM_LIMIT].endswith("M") and env[ENV_MPS_PIPE_DIRECTORY]
    daemon = install.pod("mps")
    assert daemon["spec"]["nodeName"] == pod["spec"]["nodeName"] == GPU_NODE
    host = {v["name"]: v["hostPath"]["path"] for v in pod["spec"]["volumes"] if "hostPath" in v}
    daemon_host = {v["name"]: v["hostPath"]["path"] for v in daemon["spec"]["volumes"]}
    assert host == {MPS_PIPE_VOLUME: daemon_host["pipe"], MPS_SHM_VOLUME: daemon_host["shm"]}
    daemon_env = {e["name"]: e.get("value") for e in daemon["spec"]["containers"][0]["env"]}
    assert daemon_env[ENV_MPS_PIPE_DIRECTORY] == env[ENV_MPS_PIPE_DIRECTORY]
    claim = install.view.get("persistentvolumeclaims", "claim-student1")
    assert claim is not None and claim["status"]["phase"] == "Bound"
    lab = student.open_server("student1")
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    # Run as job, from the user's own server: the chart's jobs service makes the Job, whose pod
    # runs the notebook on the user's claim and sends its output back through the Service.
    lab_user = LabUser(_HubView(install), "student1")  # type: ignore[arg-type]
    lab_user.home = install.view.kubelet.root / "pvc" / ns / "claim-student1"
    assert lab_user.client.open_server("student1").status_code == 200
    lab_user.write("train.ipynb", notebook("print('trained', 6 * 7)"))
    made = lab_user.submit("train.ipynb")
    assert made.status_code == 201, made.text
    # A Kubernetes Job, in the release's namespace (kept ttlSecondsAfterFinished once done).
    [job] = wait_until(lambda: install.view.list("jobs"), 30, "no Job made")
    assert job["metadata"]["labels"]["ai-console/owner"] == "student1"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    done = lab_user.wait(made.json()["job_id"], timeout=120)
    assert done["status"] == "COMPLETED", (done, install.pod_logs())
    assert "trained 42" in lab_user.call("GET", f"jobs/{done['job_id']}/log").text
    output = lab_user.home / ".ai-console" / "jobs" / done["job_id"] / "output.ipynb"
    assert "trained 42" in output.read_text()

    # What the hub did with its own token and the chart's Role: the allocator's Lease, the hook.
    lease = install.view.admin.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/ai-console-allocator"
    )
    assert lease["spec"]["holderIdentity"]
    assert install.view.get("configmaps", "ai-console-startup") is not None
    # The admin page's live figures: the hub found the agent by label and read its /metrics.
    admin = HubClient(url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302

    def live_utilization() -> int | None:
        console = admin.api("GET", "/ai-console/console").json()
        [gpu] = [g for node in console["nodes"] for g in node["gpus"]]
        return gpu["utilization_percent"]

    assert wait_until(live_utilization, 30, install.pod_logs) == UTILIZATION

    # helm upgrade with another profile list: the hub restarts with it, the server lives on.
    extra = {
        "display_name": "Evening lab, CPU",
        "slug": "evening-lab",
        "image": "scipy",
        "cpu": {"guarantee": 1, "limit": 2},
    }
    before = hub["metadata"]["uid"]
    install.deploy("upgrade", values([extra]))
    assert install.pod("hub")["metadata"]["uid"] != before
    again = HubClient(install.url)
    assert again.login("student1", PASSWORD).status_code == 302
    # The new hub rebuilt its ledger from the pods: the running server still holds its slice.
    admin = HubClient(install.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    gpus = admin.api("GET", "/ai-console/allocations").json()["gpus"]
    held = {a["id"]: a["owner"]["user"] for gpu in gpus for a in gpu["allocations"]}
    assert held == {annotations[keys.ANN_ALLOCATION]: "student1"}
    slugs = [p["slug"] for p in again.api("GET", "/ai-console/spawn-options").json()["profiles"]]
    assert "evening-lab" in slugs
    # The server started before the upgrade is still there, and stops as usual.
    assert again.api("GET", "/users/student1").json()["servers"][""]["ready"]
    assert again.api("DELETE", "/users/student1/server").status_code in (202, 204)
    again.wait_for_server("student1", timeout=60)
    assert "Evening lab, CPU" in again.spawn_form()
    wait_until(
        lambda: install.view.get("pods", "jupyter-student1") is None, 60, "server pod not gone"
    )

    install.helm("uninstall", RELEASE, "--wait", "--timeout", "2m")
    # Nothing of the release, nor what the hub and the jobs service made from it (the start-up
    # hook and the Lease go with the hub's ConfigMap, finished Jobs after their TTL): only the
    # users' files, as the chart documents.
    wait_until(
        lambda: install.namespace_contents() == KEPT,
        60,
        lambda: f"left behind: {install.namespace_contents() - KEPT}",
    )
    assert not install.leftovers()

"""Pytest fixtures for the real control plane.

* ``control_plane`` (session): etcd, kube-apiserver, controller-manager, scheduler, the process
  kubelet (pods reach Services by name; claims of the default StorageClass ``standard`` get
  volumes) and the fault proxy, started once; the ``nvidia`` RuntimeClass a GPU cluster has.
* ``kube`` (per test): a namespace of its own, the hub's ServiceAccount bound to the hub's Role
  (``hub_config/kubernetes/hub-rbac.yaml``), and ``KUBECONFIG`` pointing the in-process clients
  (KubeSpawner, the slice manager) at the API server **through the fault proxy with the hub's
  token**, so everything the hub does is checked by RBAC. Nodes it adds are removed afterwards.

No binaries is an error naming what is needed, never a skip.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..artifacts import ARTIFACTS
from .api import ApiError, Credentials, KubeClient
from .behavior import PodBehavior
from .binaries import MissingBinaries, bin_dir
from .cluster import ControlPlane
from .kubelet import ProcessKubelet
from .proxy import FaultProxy

RBAC_FOLDER = Path(__file__).resolve().parents[2] / "hub_config" / "kubernetes"
HUB_RBAC = RBAC_FOLDER / "hub-rbac.yaml"
HUB_ACCOUNT = "ai-console-hub"
RBAC_GROUP = "rbac.authorization.k8s.io"
_counter = itertools.count(1)


@functools.cache
def documented_rbac(path: Path, kind: str) -> list[dict]:
    """The documented ``Role`` or ``ClusterRole`` objects of one RBAC file, read once."""
    docs = yaml.safe_load(path.read_text())
    return [{**d, "metadata": {"name": d["metadata"]["name"]}} for d in docs if d["kind"] == kind]


def reset_client_caches(load: bool) -> None:
    """Forget the Kubernetes client configuration KubeSpawner caches (and load KUBECONFIG)."""
    from kubernetes_asyncio.client import Configuration

    Configuration.set_default(None)
    from kubespawner import clients
    from kubespawner.spawner import KubeSpawner

    clients.load_config.cache_clear()
    clients._client_cache.clear()
    KubeSpawner.reflectors.clear()
    if load:
        clients.load_config()


def point_clients_at(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``kubeconfig`` what both client libraries (and so KubeSpawner) load."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # Both libraries read KUBECONFIG once, at import time, into a module default.
    for module in ("kubernetes.config.kube_config", "kubernetes_asyncio.config.kube_config"):
        monkeypatch.setattr(
            importlib.import_module(module), "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
        )
    reset_client_caches(load=True)


class Cluster:
    """The running control plane with its kubelet and proxy (session-wide)."""

    def __init__(self, root: Path) -> None:
        self.plane = ControlPlane(root / "plane").start()
        self.kubelet = ProcessKubelet(self.plane, root / "kubelet").start()
        proxy_pair = self.plane.serving_pair("fault-proxy")
        self.proxy = FaultProxy(
            self.plane.url, self.plane.ca.cert, proxy_pair.cert, proxy_pair.key
        ).start()
        self.admin = self.plane.admin
        self.admin.create(
            "runtimeclasses",
            {"metadata": {"name": "nvidia"}, "handler": "nvidia"},
        )

    def stop(self) -> None:
        self.proxy.stop()
        self.kubelet.stop()
        self.plane.stop()


class TestCluster:
    """One test's view: its namespace, its nodes, the hub's identity, faults, helpers."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, cluster: Cluster, namespace: str, folder: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.folder = folder
        self.admin: KubeClient = cluster.admin
        self.kubelet = cluster.kubelet
        self.faults = cluster.proxy.faults
        self._nodes: list[str] = []
        self._removers: list[Callable[[], None]] = []
        self._cluster_bindings: list[str] = []
        self.hub_token = ""
        self.hub_kubeconfig = folder / "hub.kubeconfig"

    # --- set-up --------------------------------------------------------------------------------

    def create_namespace(self) -> None:
        self.admin.create("namespaces", {"metadata": {"name": self.namespace}})
        self.admin.wait_for("serviceaccounts", "default", self.namespace, bool, timeout=30)

    def bind_hub(self) -> None:
        """The hub's ServiceAccount with exactly the documented Role, as a token kubeconfig."""
        self.hub_token = self.bind_account(HUB_ACCOUNT, HUB_RBAC, self.hub_kubeconfig)

    def bind_account(self, account: str, rbac: Path, kubeconfig: Path) -> str:
        """A ServiceAccount bound to the Roles (and ClusterRoles, made once per session) of a
        documented RBAC file; writes a token kubeconfig through the proxy, returns the token."""
        ns = self.namespace
        self.admin.create("serviceaccounts", {"metadata": {"name": account}}, ns)
        subject = [{"kind": "ServiceAccount", "name": account, "namespace": ns}]
        for role in documented_rbac(rbac, "Role"):
            name = role["metadata"]["name"]
            self.admin.create("roles", role, ns)
            ref = {"apiGroup": RBAC_GROUP, "kind": "Role", "name": name}
            binding = {"metadata": {"name": name}, "roleRef": ref, "subjects": subject}
            self.admin.create("rolebindings", binding, ns)
        for role in documented_rbac(rbac, "ClusterRole"):
            name = role["metadata"]["name"]
            if self.admin.get("clusterroles", name) is None:  # cluster-scoped: made once
                self.admin.create("clusterroles", role)
            ref = {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name}
            binding = {"metadata": {"name": f"{name}-{ns}"}, "roleRef": ref, "subjects": subject}
            self.admin.create("clusterrolebindings", binding)
            self._cluster_bindings.append(f"{name}-{ns}")
        token = self.cluster.plane.service_account_token(ns, account)
        self.cluster.plane.write_kubeconfig(
            kubeconfig, Credentials(token=token), url=self.cluster.proxy.url
        )
        return token

    def add_volume(self, claim: str, access_mode: str = "ReadWriteMany") -> Path:
        """A PersistentVolumeClaim bound to a static volume (no provisioner here); returns the
        folder the process kubelet mounts for it, as a node's disk would hold it."""
        ns = self.namespace
        volume = f"{ns}-{claim}"
        self.admin.create(
            "persistentvolumes",
            {
                "metadata": {"name": volume},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": [access_mode],
                    "hostPath": {"path": f"/volumes/{volume}"},
                    "claimRef": {"namespace": ns, "name": claim},
                },
            },
        )
        self._removers.append(lambda: self.admin.delete("persistentvolumes", volume))
        self.admin.create(
            "persistentvolumeclaims",
            {
                "metadata": {"name": claim},
                "spec": {
                    "accessModes": [access_mode],
                    "resources": {"requests": {"storage": "1Gi"}},
                    "volumeName": volume,
                    "storageClassName": "",
                },
            },
            ns,
        )
        self.admin.wait_for(
            "persistentvolumeclaims",
            claim,
            ns,
            lambda c: c is not None and c.get("status", {}).get("phase") == "Bound",
            timeout=30,
        )
        folder = self.kubelet.root / "pvc" / ns / claim
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def hub_credentials(self) -> Credentials:
        return Credentials(token=self.hub_token)

    def hub_client(self, through_proxy: bool = True) -> KubeClient:
        """A client with the hub's identity."""
        url = self.cluster.proxy.url if through_proxy else None
        return self.cluster.plane.client(self.hub_credentials, url)

    # --- what tests use ------------------------------------------------------------------------

    def add_node(self, name: str, **kwargs: Any) -> dict:
        """A Ready node with a process kubelet (``labels``, ``annotations``, ``allocatable``,
        ``capacity``, ``taints``); removed when the test ends."""
        self._nodes.append(name)
        return self.kubelet.add_node(name, **kwargs)

    def set_pod_behavior(self, behavior: PodBehavior, **match: Any) -> None:
        """How this test's matching pods run (see :class:`PodBehavior`)."""
        self._removers.append(
            self.kubelet.set_pod_behavior(behavior, namespace=self.namespace, **match)
        )

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict | None:
        return self.admin.get(plural, name, namespace or self._ns(plural))

    def list(self, plural: str, namespace: str | None = None, **params: str) -> list[dict]:
        return self.admin.list(plural, namespace or self._ns(plural), **params)

    def delete(self, plural: str, name: str, grace: int | None = None) -> bool:
        return self.admin.delete(plural, name, self._ns(plural), grace)

    def wait_for_deletion(self, plural: str, name: str, timeout: float = 60) -> None:
        self.admin.wait_for_deletion(plural, name, self._ns(plural), timeout)

    def _ns(self, plural: str) -> str | None:
        return None if plural in ("nodes", "namespaces", "runtimeclasses") else self.namespace

    # --- tear-down -----------------------------------------------------------------------------

    def cleanup(self) -> None:
        self.faults.clear()
        for remove in self._removers:
            remove()
        with contextlib.suppress(ApiError):
            for pod in self.admin.list("pods", self.namespace):
                self.admin.delete("pods", pod["metadata"]["name"], self.namespace, grace=0)
        for name in self._nodes:
            self.kubelet.remove_node(name)
        with contextlib.suppress(ApiError):
            self.admin.delete("namespaces", self.namespace)
        for name in self._cluster_bindings:
            with contextlib.suppress(ApiError):
                self.admin.delete("clusterrolebindings", name)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's control plane; fails (never skips) without binaries."""
    try:
        bin_dir()
    except MissingBinaries as err:
        pytest.fail(str(err), pytrace=False)
    cluster = Cluster(tmp_path_factory.mktemp("k8s"))
    try:
        yield cluster
    finally:
        cluster.stop()


def _namespace_for(node_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", node_name.lower()).strip("-")
    return f"t{next(_counter)}-{slug}"[:50].rstrip("-")


@pytest.fixture
def kube(
    control_plane: Cluster,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[TestCluster]:
    """This test's namespace on the real control plane, the hub's identity set as KUBECONFIG."""
    test = TestCluster(control_plane, _namespace_for(request.node.name), tmp_path)
    test.create_namespace()
    test.bind_hub()
    point_clients_at(test.hub_kubeconfig, monkeypatch)
    try:
        yield test
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            control_plane.plane.save_logs(ARTIFACTS / request.node.name)
        test.cleanup()
        reset_client_caches(load=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Keep each phase's report on the item, so ``kube`` knows whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

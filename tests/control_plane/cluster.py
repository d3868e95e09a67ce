"""Start and stop a real control plane on loopback: etcd, kube-apiserver (RBAC, Node
authorizer, admission as a managed cluster has it), kube-controller-manager, kube-scheduler.

Every component runs as its own process with its own identity (client certificates from
:mod:`pki`); its log goes to ``<root>/logs/<component>.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from hub_config.up import free_port

from .api import ApiError, Credentials, KubeClient
from .binaries import bin_dir
from .pki import CertificateAuthority, KeyPair

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Admission plugins on top of the release's defaults (NamespaceLifecycle, LimitRanger,
# ServiceAccount, PodSecurity, ResourceQuota, RuntimeClass, DefaultStorageClass, Priority,
# TaintNodesByCondition, the webhook and policy plugins, ...), as managed clusters enable them.
EXTRA_ADMISSION = "NodeRestriction,ExtendedResourceToleration"
CONTROLLERS = "*"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass
class Component:
    """One running control-plane process."""

    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class ControlPlane:
    """A started control plane under ``root``; :meth:`stop` ends every process."""

    root: Path
    components: dict[str, Component] = field(default_factory=dict)
    started_in_s: float = 0.0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs = self.root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.ca = CertificateAuthority(self.root / "pki")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.admin_credentials = self._client_cert("admin", "admin", ("system:masters",))
        self.admin = KubeClient(self.url, self.ca.cert, self.admin_credentials)

    # --- identities ----------------------------------------------------------------------------

    def _client_cert(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Credentials:
        pair = self.ca.issue(name, user, groups=groups)
        return Credentials(cert=pair.cert, key=pair.key)

    def node_credentials(self, node: str) -> Credentials:
        """What a kubelet presents: ``system:node:<name>`` in ``system:nodes``."""
        return self._client_cert(f"node-{node}", f"system:node:{node}", ("system:nodes",))

    def kube_proxy_credentials(self) -> Credentials:
        """``system:kube-proxy``, bound to ``system:node-proxier`` (reads Services)."""
        return self._client_cert("kube-proxy", "system:kube-proxy")

    def serving_pair(self, name: str) -> KeyPair:
        """A serving certificate for 127.0.0.1 signed by the cluster CA."""
        return self.ca.issue(name, name, hosts=("127.0.0.1", "localhost"), server=True)

    def service_account_token(self, namespace: str, name: str, seconds: int = 7200) -> str:
        """A bound token for a ServiceAccount (TokenRequest), as a pod would be given."""
        review = self.admin.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            json={"spec": {"expirationSeconds": seconds}},
        )
        return review["status"]["token"]

    def client(self, credentials: Credentials, url: str | None = None) -> KubeClient:
        return KubeClient(url or self.url, self.ca.cert, credentials)

    def write_kubeconfig(
        self, path: Path, credentials: Credentials, url: str | None = None
    ) -> Path:
        """A kubeconfig for one identity (JSON, which every kubeconfig reader accepts)."""
        user: dict[str, str] = {}
        if credentials.token:
            user["token"] = credentials.token
        else:
            user["client-certificate"] = str(credentials.cert)
            user["client-key"] = str(credentials.key)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": url or self.url,
                        "certificate-authority": str(self.ca.cert),
                    },
                }
            ],
            "users": [{"name": "test", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        }
        path.write_text(json.dumps(config, indent=1))
        return path

    # --- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> Component:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
        component = Component(name, process, log)
        self.components[name] = component
        return component

    def _check_alive(self) -> None:
        for component in self.components.values():
            if component.process.poll() is not None:
                raise RuntimeError(
                    f"{component.name} exited with {component.process.returncode}:\n"
                    f"{component.tail()}"
                )

    def start(self, timeout: float = 90) -> ControlPlane:
        """Start every component and wait until the cluster can run pods."""
        started = time.monotonic()
        binaries = bin_dir()
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(binaries / "etcd"),
                "--name=test",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=test=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",  # a throw-away test store: durability costs seconds
                "--log-level=warn",
            ],
        )
        serving = self.ca.issue(
            "apiserver",
            "kube-apiserver",
            hosts=("127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc"),
            server=True,
        )
        kubelet_client = self.ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client")
        sa = self.ca.service_account_keys()
        self._spawn(
            "kube-apiserver",
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={self.ca.cert}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={EXTRA_ADMISSION}",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={self.ca.cert}",
                "--kubelet-preferred-address-types=InternalIP",
                # Endpoints may not hold loopback addresses, so the API server's own
                # "kubernetes" Service endpoint cannot be kept; nothing here routes to it.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait_ready(started + timeout)
        for name, user in (
            ("kube-controller-manager", "system:kube-controller-manager"),
            ("kube-scheduler", "system:kube-scheduler"),
        ):
            kubeconfig = self.write_kubeconfig(
                self.root / f"{name}.kubeconfig", self._client_cert(name, user)
            )
            common = [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--secure-port=0",
                "--leader-elect=false",
                "--v=1",
            ]
            extra = []
            if name == "kube-controller-manager":
                extra = [
                    f"--controllers={CONTROLLERS}",
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={sa.key}",
                    f"--root-ca-file={self.ca.cert}",
                    f"--cluster-signing-cert-file={self.ca.cert}",
                    f"--cluster-signing-key-file={self.ca.key}",
                ]
            self._spawn(name, [str(binaries / name), *common, *extra])
        self._wait_for_default_service_account(started + timeout)
        self.started_in_s = time.monotonic() - started
        return self

    def _wait_ready(self, deadline: float) -> None:
        while True:
            self._check_alive()
            try:
                self.admin.request("GET", "/readyz", timeout=2)
                return
            except (ApiError, requests.RequestException):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"kube-apiserver not ready:\n{self.tail('kube-apiserver')}")
            time.sleep(0.2)

    def _wait_for_default_service_account(self, deadline: float) -> None:
        # Pods can only be created once the ServiceAccount controller made "default".
        while True:
            self._check_alive()
            try:
                if self.admin.get("serviceaccounts", "default", "default") is not None:
                    return
            except ApiError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no default ServiceAccount:\n{self.tail('kube-controller-manager')}"
                )
            time.sleep(0.2)

    def tail(self, name: str, chars: int = 3000) -> str:
        component = self.components.get(name)
        return component.tail(chars) if component else ""

    def stop(self) -> None:
        """Stop the components in reverse order (SIGTERM, then SIGKILL)."""
        for name in reversed(COMPONENTS):
            component = self.components.pop(name, None)
            if component is None or component.process.poll() is not None:
                continue
            os.killpg(component.process.pid, signal.SIGTERM)
            try:
                component.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(component.process.pid, signal.SIGKILL)
                component.process.wait()

    def save_logs(self, folder: Path) -> None:
        """Copy every component's log (kept as test artefacts when a test fails)."""
        folder.mkdir(parents=True, exist_ok=True)
        for log in self.logs.glob("*.log"):
            shutil.copy(log, folder / log.name)

"""``KubeHarness``: the API server stand-in, its controllers and simulated kubelets, running
in a background thread with its own event loop on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import tornado.httpserver
import tornado.netutil
import yaml

from . import quantity
from .behavior import BehaviorPolicy, PodBehavior
from .common import K8S_GIT_VERSION, get_path, rfc3339
from .events import EventRecorder
from .faults import FaultInjector
from .gc import LifecycleController
from .jobs import JobController
from .kubelet import Kubelet
from .patch import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH
from .registry import DeleteOptions, Registry
from .resources import resolve
from .scheduler import Scheduler
from .server import ServerCore, make_app
from .store import Store

T = TypeVar("T")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DEFAULT_ALLOCATABLE = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
_PATCH_TYPES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_MERGE_PATCH, "json": JSON_PATCH}


def node_manifest(
    name: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    allocatable: Mapping[str, str | int | float] | None = None,
    capacity: Mapping[str, str | int | float] | None = None,
    taints: Iterable[Mapping[str, str]] = (),
    unschedulable: bool = False,
    address: str = "127.0.0.1",
) -> dict:
    """A Node shaped like one a kubelet registers (labels, conditions, addresses, nodeInfo)."""
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"node address {address} is not a loopback address")
    alloc = {
        k: quantity.canonical(v) for k, v in {**DEFAULT_ALLOCATABLE, **(allocatable or {})}.items()
    }
    cap = {k: quantity.canonical(v) for k, v in {**alloc, **(capacity or {})}.items()}
    now = rfc3339()

    def cond(type_: str, status: str, reason: str, message: str) -> dict:
        return {
            "type": type_,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }

    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = [dict(t) for t in taints]
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                **(labels or {}),
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", **(annotations or {})},
        },
        "spec": spec,
        "status": {
            "capacity": cap,
            "allocatable": alloc,
            "conditions": [
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                cond(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                cond(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": name,
                "systemUUID": name,
                "bootID": name,
                "kernelVersion": "6.1.0",
                "osImage": "k8s harness",
                "containerRuntimeVersion": "containerd://1.7.0",
                "kubeletVersion": K8S_GIT_VERSION,
                "kubeProxyVersion": K8S_GIT_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


class KubeHarness:
    """A strict Kubernetes API server stand-in for tests (see the package docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        seed: int = 0,
        nodes: Iterable[str | Mapping[str, Any]] = (),
        namespaces: Iterable[str] = (),
        default_behavior: PodBehavior | None = None,
        history_limit: int = 10000,
        bookmark_interval: float = 5.0,
        probe_period: float = 0.2,
        root_dir: str | Path | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the harness only binds loopback addresses, not {host}")
        self.host, self.port = host, port
        self.token = token or secrets.token_hex(16)
        self.rng = random.Random(seed)
        self.store = Store(history_limit)
        self.registry = Registry(self.store, self.rng)
        self.events = EventRecorder(self.registry, self.rng)
        self.policy = BehaviorPolicy(default_behavior)
        self.faults = FaultInjector(seed)
        self._own_root = root_dir is None
        self.root = Path(root_dir) if root_dir else Path(tempfile.mkdtemp(prefix="k8s-harness-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.kubelet = Kubelet(
            self.registry,
            self.store,
            self.events,
            self.policy,
            self.root,
            self.rng,
            host,
            port,
            probe_period,
        )
        self._initial_nodes = list(nodes)
        self._initial_namespaces = [*SYSTEM_NAMESPACES, *namespaces]
        self._bookmark_interval = bookmark_interval
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._http: tornado.httpserver.HTTPServer | None = None
        self._core: ServerCore | None = None
        # The file :meth:`write_kubeconfig` wrote last (the fixtures write one per harness).
        self.kubeconfig_path: Path | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> KubeHarness:
        """Start the server thread; returns once it accepts requests."""
        if self._thread is not None:
            raise RuntimeError("harness already started")
        sockets = tornado.netutil.bind_sockets(self.port, self.host, family=socket.AF_INET)
        self.port = sockets[0].getsockname()[1]
        self.kubelet.api_port = self.port
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._startup(sockets))
            except BaseException as exc:  # surface startup errors in start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"k8s-harness-{self.port}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    async def _startup(self, sockets: list[socket.socket]) -> None:
        self._core = ServerCore(
            self.registry,
            self.store,
            self.kubelet,
            self.faults,
            self.token,
            f"{self.host}:{self.port}",
            self._bookmark_interval,
        )
        self._http = tornado.httpserver.HTTPServer(make_app(self._core))
        self._http.add_sockets(sockets)
        for name in self._initial_namespaces:
            if self.store.get("namespaces", "", name) is None:
                self.registry.create(resolve("namespaces"), "", {"metadata": {"name": name}})
        for node in self._initial_nodes:
            if isinstance(node, str):
                self.add_node(node)
            else:
                self.add_node(**node)
        for coro in (
            self.kubelet.run(),
            Scheduler(self.registry, self.store, self.events, self.policy).run(),
            JobController(self.registry, self.store, self.events).run(),
            LifecycleController(self.registry, self.store).run(),
        ):
            self._tasks.append(asyncio.ensure_future(coro))

    async def _shutdown(self) -> None:
        assert self._core is not None and self._http is not None
        self._core.closing.set()
        self._http.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._http.close_all_connections(), 5)
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def stop(self) -> None:
        """Stop the server, every controller and every pod process; remove temporary files."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> KubeHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- client configuration -----------------------------------------------------------------

    def kubeconfig(self, namespace: str = "default") -> dict:
        """A kubeconfig dict: cluster server=url, a user with the harness bearer token."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "k8s-harness", "cluster": {"server": self.url}}],
            "users": [{"name": "k8s-harness", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "k8s-harness",
                    "context": {
                        "cluster": "k8s-harness",
                        "user": "k8s-harness",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "k8s-harness",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """Write :meth:`kubeconfig` as YAML; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace), sort_keys=False))
        self.kubeconfig_path = path
        return path

    def sync_api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` (sync client) for this harness."""
        from kubernetes import config

        return config.new_client_from_config_dict(self.kubeconfig())

    async def async_api_client(self) -> Any:
        """A ``kubernetes_asyncio.client.ApiClient`` for this harness (close it when done)."""
        from kubernetes_asyncio import config

        return await config.new_client_from_config_dict(self.kubeconfig())

    # --- objects (direct access: no HTTP, no auth, no faults; still validated) ----------------

    def create(self, obj: Mapping[str, Any], namespace: str | None = None) -> dict:
        """Create any supported object from a manifest (kind decides the resource)."""
        rt = resolve(obj["kind"])
        ns = (
            namespace
            or get_path(obj, "metadata", "namespace")
            or ("default" if rt.namespaced else "")
        )
        return self.registry.create(rt, ns, dict(obj))

    def get(self, resource: str, name: str, namespace: str = "default") -> dict | None:
        """One object or None (``resource`` is a plural, kind or short name)."""
        rt = resolve(resource)
        return self.store.get(rt.plural, namespace if rt.namespaced else "", name)

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[dict]:
        """Objects of a resource, optionally filtered like a LIST request."""
        rt = resolve(resource)
        listed = self.registry.list(
            rt,
            namespace if rt.namespaced else None,
            label_selector=label_selector,
            field_selector=field_selector,
        )
        return listed["items"]

    def patch(
        self,
        resource: str,
        name: str,
        patch: Any,
        namespace: str = "default",
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> dict:
        """Patch an object (``patch_type``: merge, strategic or json)."""
        rt = resolve(resource)
        return self.registry.patch(
            rt,
            namespace if rt.namespaced else "",
            name,
            patch,
            _PATCH_TYPES[patch_type],
            subresource=subresource,
        )

    def delete(
        self,
        resource: str,
        name: str,
        namespace: str = "default",
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
    ) -> dict:
        """Delete an object like a DELETE request would."""
        rt = resolve(resource)
        return self.registry.delete(
            rt,
            namespace if rt.namespaced else "",
            name,
            DeleteOptions(grace_period_seconds, propagation_policy),
        )[1]

    def add_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> dict:
        """Create a namespace."""
        return self.registry.create(
            resolve("namespaces"), "", {"metadata": {"name": name, "labels": dict(labels or {})}}
        )

    def add_node(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        allocatable: Mapping[str, str | int | float] | None = None,
        **kwargs: Any,
    ) -> dict:
        """Register a node (see :func:`node_manifest` for the other keyword arguments)."""
        manifest = node_manifest(name, labels, annotations, allocatable, **kwargs)
        return self.registry.create(resolve("nodes"), "", manifest)

    def set_node_ready(self, name: str, ready: bool) -> dict | None:
        """Flip a node's Ready condition (NotReady nodes get the not-ready NoSchedule taint)."""
        taint = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}

        def flip(node: dict) -> None:
            for cond in node["status"]["conditions"]:
                if cond["type"] == "Ready":
                    if (cond["status"] == "True") != ready:
                        cond["lastTransitionTime"] = rfc3339()
                    cond["status"] = "True" if ready else "Unknown"
                    cond["reason"] = "KubeletReady" if ready else "NodeStatusUnknown"
                    cond["message"] = (
                        "kubelet is posting ready status"
                        if ready
                        else "Kubelet stopped posting node status."
                    )
            taints = [t for t in node["spec"].get("taints") or [] if t.get("key") != taint["key"]]
            if not ready:
                taints.append({**taint, "timeAdded": rfc3339()})
            node["spec"]["taints"] = taints

        return self.registry.mutate(resolve("nodes"), "", name, flip, subresource="binding")

    def set_pod_behavior(
        self,
        behavior: PodBehavior,
        *,
        selector: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        predicate: Callable[[dict], bool] | None = None,
    ) -> Callable[[], None]:
        """Choose how matching pods run (later rules win); returns a function removing the rule."""
        return self.policy.add(
            behavior, selector=selector, name=name, namespace=namespace, predicate=predicate
        )

    def events_for(
        self, name: str | None = None, namespace: str | None = None, reason: str | None = None
    ) -> list[dict]:
        """Events, optionally about one object name and/or with one reason (oldest first)."""
        items = self.list("events", namespace)
        out = [
            e
            for e in items
            if (name is None or e["involvedObject"].get("name") == name)
            and (reason is None or e.get("reason") == reason)
        ]
        return sorted(
            out, key=lambda e: (e.get("firstTimestamp", ""), int(e["metadata"]["resourceVersion"]))
        )

    def pod_log(
        self,
        name: str,
        namespace: str = "default",
        container: str | None = None,
        previous: bool = False,
    ) -> str:
        """A container's log text (works after the pod is gone, unlike the API)."""
        pod = self.get("pods", name, namespace)
        base = self.root / "logs"
        dirs = (
            sorted(base.glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime)
            if base.exists()
            else []
        )
        if pod is not None:
            dirs = [d for d in dirs if d.name.endswith(pod["metadata"]["uid"])]
        if not dirs:
            return ""
        uid = dirs[-1].name.rsplit("_", 1)[1]
        if container is None:
            subdirs = [p.name for p in dirs[-1].iterdir()]
            container = subdirs[0] if subdirs else ""
        path = self.kubelet.log_file(uid, container, previous)
        if path is None:
            return ""
        return "".join(line.split(" ", 1)[1] for line in path.read_text().splitlines(keepends=True))

    def compact(self) -> int:
        """Forget the watch history: older resourceVersions now get 410 Expired."""
        return self.store.compact()

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion."""
        return self.store.resource_version

    def process_pids(self) -> list[int]:
        """PIDs of running run-process pods."""
        return self.kubelet.pids()

    # --- waiting ------------------------------------------------------------------------------

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        interval: float = 0.02,
        what: str = "condition",
    ) -> T:
        """Poll ``predicate`` until it returns something truthy (blocking)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    async def await_for(
        self,
        predicate: Callable[[], T | Awaitable[T]],
        timeout: float = 10.0,
        interval: float = 0.02,
        what: str = "condition",
    ) -> T:
        """Poll ``predicate`` (sync or async) until truthy, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
                value = await value  # type: ignore[misc]
            if value:
                return value  # type: ignore[return-value]
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(interval)

    def _pod_in(self, name: str, namespace: str, phases: tuple[str, ...]) -> dict | None:
        pod = self.get("pods", name, namespace)
        return pod if pod is not None and get_path(pod, "status", "phase") in phases else None

    def wait_for_pod_phase(
        self, name: str, *phases: str, namespace: str = "default", timeout: float = 10.0
    ) -> dict:
        """Block until a pod is in one of ``phases``; returns it."""
        return self.wait_for(
            lambda: self._pod_in(name, namespace, phases),
            timeout,
            what=f"pod {namespace}/{name} in {phases}",
        )

    def wait_for_pod_ready(
        self, name: str, namespace: str = "default", timeout: float = 10.0
    ) -> dict:
        """Block until a pod's Ready condition is True."""

        def ready() -> dict | None:
            pod = self.get("pods", name, namespace)
            conds = get_path(pod or {}, "status", "conditions", default=[]) or []
            return (
                pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else None
            )

        return self.wait_for(ready, timeout, what=f"pod {namespace}/{name} ready")

    def wait_for_deletion(
        self, resource: str, name: str, namespace: str = "default", timeout: float = 10.0
    ) -> None:
        """Block until an object is gone."""
        self.wait_for(
            lambda: self.get(resource, name, namespace) is None,
            timeout,
            what=f"{resource} {name} gone",
        )

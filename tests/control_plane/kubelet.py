"""A process kubelet for the test cluster: any number of Nodes, each registered and kept Ready
with its own ``system:node:<name>`` identity, running the pods the real scheduler binds to them
as local processes (see :mod:`pod`), and serving their logs to the API server over TLS. Pods
reach Services by name and port, as kube-proxy and cluster DNS let them on a real node: a
loopback address and a TCP forwarder per Service, names resolved inside each container (see
:mod:`services`); :meth:`ProcessKubelet.service_address` tells tests where a Service is. Claims
of the default StorageClass get volumes (see :mod:`storage`).

Everything runs in one asyncio loop on a background thread; the public methods are called from
tests (any thread) and wait for the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.web

from hub_config.up import free_port

from .api import ApiError
from .behavior import BehaviorPolicy, PodBehavior
from .binaries import kubernetes_version
from .cluster import ControlPlane
from .common import get_path, parse_time, rfc3339, rfc3339_micro, utcnow
from .containers import IpPool
from .node_api import NodeApi
from .pod import PodWorker
from .services import ServiceRouter
from .storage import HostPathProvisioner

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"}
LEASE_SECONDS = 40
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


@dataclass
class _Node:
    name: str
    api: NodeApi
    obj: dict
    tasks: list[asyncio.Task] = field(default_factory=list)


class ProcessKubelet:
    """Kubelets for the test nodes of one control plane."""

    def __init__(self, plane: ControlPlane, root: Path, probe_period: float = 0.2) -> None:
        self.plane = plane
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.probe_period = probe_period
        self.api_host, self.api_port = "127.0.0.1", plane.port
        self.policy = BehaviorPolicy()
        self.ips = IpPool()
        self.workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._nodes: dict[str, _Node] = {}
        self._log_owner: dict[tuple[str, str], PodWorker] = {}
        self._forgetting: set[asyncio.Task] = set()
        self._rng = random.Random(0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: tornado.httpserver.HTTPServer | None = None
        self.logs_port = free_port()
        self.services: ServiceRouter | None = None
        self.provisioner: HostPathProvisioner | None = None

    # --- called from tests ---------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> ProcessKubelet:
        self._thread.start()
        self._call(self._serve_logs())
        self._call(self._route_services())
        return self

    def service_address(self, namespace: str, name: str, timeout: float = 10) -> str:
        """The loopback address where a Service's ports answer (waits for it to appear)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.services is not None
            address = self.services.address(namespace, name)
            if address is not None:
                return address
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Service {namespace}/{name} after {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every pod's processes and every node loop."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown(), timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def add_node(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        capacity: dict[str, str] | None = None,
        allocatable: dict[str, str] | None = None,
        taints: list[dict] | None = None,
    ) -> dict:
        """Register a Ready node (its kubelet starts at once); returns the Node object."""
        return self._call(
            self._register(name, labels or {}, annotations or {}, capacity, allocatable, taints)
        )

    def remove_node(self, name: str) -> None:
        """Stop the node's kubelet (its pods' processes die) and delete the Node."""
        self._call(self._unregister(name))

    def set_pod_behavior(self, behavior: PodBehavior, **match: Any) -> Callable[[], None]:
        """How matching pods run (``selector=``, ``name=``, ``namespace=``, ``predicate=``)."""
        return self.policy.add(behavior, **match)

    # --- used by pod workers (in the loop) -----------------------------------------------------

    def node_api(self, node: str) -> NodeApi:
        return self._nodes[node].api

    def node_object(self, node: str) -> dict | None:
        entry = self._nodes.get(node)
        return entry.obj if entry else None

    def container_id(self) -> str:
        return f"containerd://{self._rng.getrandbits(256):064x}"

    def log_dir(self, namespace: str, pod: str, uid: str, container: str) -> Path:
        """The folder of a container's logs, one file per run (``<restartCount>.log``)."""
        return self.root / "logs" / f"{namespace}_{pod}_{uid}" / container

    async def record_event(
        self, pod: dict, type_: str, reason: str, message: str, container: str | None
    ) -> None:
        md = pod["metadata"]
        node = pod["spec"]["nodeName"]
        involved = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": md["namespace"],
            "name": md["name"],
            "uid": md["uid"],
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        now = rfc3339()
        event = {
            "metadata": {"generateName": f"{md['name']}.", "namespace": md["namespace"]},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet",
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        entry = self._nodes.get(node)
        if entry is None:
            return
        with contextlib.suppress(ApiError, OSError, asyncio.TimeoutError):
            await entry.api.create("events", event, md["namespace"])

    # --- nodes ---------------------------------------------------------------------------------

    def _node_status(
        self, capacity: dict[str, str] | None, allocatable: dict[str, str] | None
    ) -> dict:
        now = rfc3339()
        cap = {**DEFAULT_CAPACITY, **(capacity or allocatable or {})}
        conditions = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHasSufficient{kind.removesuffix('Pressure')}",
                "message": f"kubelet has no {kind}",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        )
        return {
            "capacity": cap,
            "allocatable": {**cap, **(allocatable or {})},
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.logs_port}},
            "nodeInfo": {
                "machineID": uuid.uuid4().hex,
                "systemUUID": str(uuid.uuid4()),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": platform.release(),
                "osImage": "process kubelet (tests/control_plane)",
                "containerRuntimeVersion": "process://1.0.0",
                "kubeletVersion": kubernetes_version(),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    async def _register(
        self,
        name: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        capacity: dict[str, str] | None,
        allocatable: dict[str, str] | None,
        taints: list[dict] | None,
    ) -> dict:
        api = NodeApi(self.plane.url, str(self.plane.ca.cert), self.plane.node_credentials(name))
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **labels,
                },
                "annotations": annotations,
            },
            "spec": {"taints": taints} if taints else {},
        }
        await api.create("nodes", body)
        status = self._node_status(capacity, allocatable)
        obj = await api.merge_patch("nodes/status", name, {"status": status})
        entry = _Node(name, api, obj)
        self._nodes[name] = entry
        await self._renew_lease(entry, create=True)
        entry.tasks = [
            asyncio.ensure_future(self._lease_loop(entry)),
            asyncio.ensure_future(self._pod_loop(entry)),
        ]
        return await self._schedulable(entry)

    async def _schedulable(self, entry: _Node, timeout: float = 30) -> dict:
        """Wait for the node lifecycle controller to lift the not-ready taint that admission
        puts on every new node; until then the scheduler passes the node over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            obj = await entry.api.get("nodes", entry.name)
            taints = (obj or {}).get("spec", {}).get("taints") or []
            if obj is not None and not any(t["key"] == NOT_READY_TAINT for t in taints):
                entry.obj = obj
                return obj
            if loop.time() > deadline:
                raise TimeoutError(f"node {entry.name} still tainted {NOT_READY_TAINT}: {taints}")
            await asyncio.sleep(0.1)

    async def _renew_lease(self, entry: _Node, create: bool = False) -> None:
        spec = {
            "holderIdentity": entry.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": rfc3339_micro(),
        }
        if create:
            lease = {"metadata": {"name": entry.name}, "spec": spec}
            with contextlib.suppress(ApiError):
                await entry.api.create("leases", lease, "kube-node-lease")
                return
        await entry.api.merge_patch("leases", entry.name, {"spec": spec}, "kube-node-lease")

    async def _lease_loop(self, entry: _Node) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 4)
            try:
                await self._renew_lease(entry)
            except (ApiError, OSError, asyncio.TimeoutError) as err:
                log.warning("lease renewal for %s failed: %s", entry.name, err)

    async def _pod_loop(self, entry: _Node) -> None:
        """List then watch the pods bound to the node, re-listing when the watch expires."""
        selector = f"spec.nodeName={entry.name}"
        version: str | None = None
        while True:
            try:
                if version is None:
                    listed = await entry.api.request(
                        "GET", "/api/v1/pods", params={"fieldSelector": selector}
                    )
                    version = listed["metadata"]["resourceVersion"]
                    present = {p["metadata"]["uid"] for p in listed["items"]}
                    for worker in list(self.workers.values()):
                        if worker.node_name == entry.name and worker.uid not in present:
                            worker.notify(None)
                    for pod in listed["items"]:
                        self._consider(pod)
                async for event in entry.api.watch(
                    "pods", fieldSelector=selector, resourceVersion=version, timeoutSeconds="240"
                ):
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":  # expired: start again from a fresh list
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        worker = self.workers.get(obj["metadata"]["uid"])
                        if worker is not None:
                            worker.notify(None)
                    else:
                        self._consider(obj)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("pod watch on %s failed: %s", entry.name, err)
                version = None
                await asyncio.sleep(0.5)

    def _consider(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.notify(pod)
            return
        if uid in self._finished or get_path(pod, "status", "phase") in ("Succeeded", "Failed"):
            return
        if pod["metadata"].get("deletionTimestamp"):
            # Never started here (or the kubelet restarted): nothing runs, remove it.
            task = asyncio.ensure_future(self._forget(pod))
            self._forgetting.add(task)
            task.add_done_callback(self._forgetting.discard)
            return
        worker = PodWorker(self, pod)
        self.workers[uid] = worker
        self._log_owner[(worker.namespace, worker.name)] = worker
        worker.task = asyncio.ensure_future(self._run_worker(worker))

    async def _forget(self, pod: dict) -> None:
        md = pod["metadata"]
        with contextlib.suppress(ApiError, KeyError):
            await self.node_api(pod["spec"]["nodeName"]).delete(
                "pods",
                md["name"],
                md["namespace"],
                {"gracePeriodSeconds": 0, "preconditions": {"uid": md["uid"]}},
            )

    async def _run_worker(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kubelet worker for %s/%s failed", worker.namespace, worker.name)
        finally:
            self.workers.pop(worker.uid, None)
            self._finished.add(worker.uid)

    async def _stop_workers(self, node: str | None) -> None:
        workers = [w for w in self.workers.values() if node is None or w.node_name == node]
        tasks = [w.task for w in workers if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _unregister(self, name: str) -> None:
        entry = self._nodes.pop(name, None)
        if entry is None:
            return
        for task in entry.tasks:
            task.cancel()
        await asyncio.gather(*entry.tasks, return_exceptions=True)
        await self._stop_workers(name)
        await entry.api.close()
        # Removing a node from the cluster is an admin's act (NodeRestriction forbids a
        # kubelet deleting its Node); the test's admin client does it.
        await asyncio.to_thread(self.plane.admin.delete, "nodes", name)

    async def _route_services(self) -> None:
        api = NodeApi(self.plane.url, str(self.plane.ca.cert), self.plane.kube_proxy_credentials())

        # Load balancers' addresses and the default StorageClass's volumes: what a cloud's
        # controllers do, with the cluster admin's identity.
        def admin() -> NodeApi:
            return NodeApi(self.plane.url, str(self.plane.ca.cert), self.plane.admin_credentials)

        self.services = ServiceRouter(self, api, self.root / "services.json", admin())
        await self.services.start()
        self.provisioner = HostPathProvisioner(admin())
        await self.provisioner.start()

    async def _shutdown(self) -> None:
        for name in list(self._nodes):
            await self._unregister(name)
        await self._stop_workers(None)
        if self.services is not None:
            await self.services.stop()
        if self.provisioner is not None:
            await self.provisioner.stop()
        if self._server is not None:
            self._server.stop()

    # --- the kubelet API (container logs) ------------------------------------------------------

    async def _serve_logs(self) -> None:
        pair = self.plane.serving_pair("kubelet")
        context = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(self.plane.ca.cert)
        )
        context.load_cert_chain(str(pair.cert), str(pair.key))
        context.verify_mode = ssl.CERT_REQUIRED  # only the API server's kubelet client cert
        app = tornado.web.Application(
            [(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)", _LogHandler, {"kubelet": self})]
        )
        self._server = tornado.httpserver.HTTPServer(app, ssl_options=context)
        self._server.listen(self.logs_port, "127.0.0.1")

    def log_files(self, namespace: str, pod: str, container: str) -> tuple[list[Path], Any]:
        """A container's log files (one per run, oldest first) and its pod worker."""
        worker = self._log_owner.get((namespace, pod))
        if worker is None:
            return [], None
        folder = self.log_dir(namespace, pod, worker.uid, container)
        runs = sorted(folder.glob("*.log"), key=lambda p: int(p.stem)) if folder.exists() else []
        return runs, worker


class _LogHandler(tornado.web.RequestHandler):
    """``GET /containerLogs/<ns>/<pod>/<container>`` as the kubelet serves it."""

    def initialize(self, kubelet: ProcessKubelet) -> None:
        self.kubelet = kubelet

    def _fail(self, message: str) -> None:
        self.set_status(400)
        self.finish(message)

    async def get(self, namespace: str, pod: str, container: str) -> None:
        q = self.get_query_argument
        runs, worker = self.kubelet.log_files(namespace, pod, container)
        previous = q("previous", "false") == "true"
        if previous:
            runs = runs[:-1]
        if not runs:
            if previous:
                self._fail(f'previous terminated container "{container}" in pod "{pod}" not found')
            else:
                self._fail(f'container "{container}" in pod "{pod}" is waiting to start')
            return
        path = runs[-1]
        timestamps = q("timestamps", "false") == "true"
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        cutoff = None
        if q("sinceSeconds", None):
            cutoff = utcnow().timestamp() - int(q("sinceSeconds"))
        elif q("sinceTime", None):
            cutoff = parse_time(q("sinceTime")).timestamp()
        if cutoff is not None:
            lines = [ln for ln in lines if parse_time(ln.split(" ", 1)[0]).timestamp() >= cutoff]
        tail = q("tailLines", None)
        if tail is not None:
            lines = lines[-int(tail) :] if int(tail) else []
        budget = int(q("limitBytes")) if q("limitBytes", None) else None

        def render(chunk: list[str]) -> str:
            nonlocal budget
            text = "".join(ln if timestamps else ln.split(" ", 1)[1] for ln in chunk)
            if budget is not None:
                text = text.encode()[:budget].decode("utf-8", "ignore")
                budget -= len(text.encode())
            return text

        self.set_header("Content-Type", "text/plain")
        self.write(render(lines))
        if q("follow", "false") != "true" or previous:
            self.finish()
            return
        await self.flush()
        offset = path.stat().st_size
        while True:
            await asyncio.sleep(0.1)
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                fh.seek(offset)
                data = fh.read()
                offset = fh.tell()
            if data:
                self.write(render(data.splitlines(keepends=True)))
                try:
                    await self.flush()
                except tornado.iostream.StreamClosedError:
                    return  # the API server's client went away
                continue
            states = [c for c in worker.containers if c.name == container]
            if worker.uid not in self.kubelet.workers or not states:
                break
            if "running" not in states[0].state:
                break
        self.finish()

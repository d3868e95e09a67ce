"""Services for the process kubelet's pods: what kube-proxy and cluster DNS do on a real node.

* **An address per Service.** Every Service with a selector (any type but ``ExternalName``;
  headless ones included) gets a loopback address of its own from the kubelet's pool, and a TCP
  forwarder (asyncio) listens on each of its TCP ports there. A connection goes to one ready
  endpoint, round-robin, at its ``targetPort`` (a name is looked up in the pod's container
  ports). The real ``clusterIP`` (10.96.x.x) is not used: no address but loopback is.
* **Endpoints from the pods, not EndpointSlices.** The API server refuses loopback addresses in
  EndpointSlices (``may not be in the loopback range``), so the endpointslice controller cannot
  write them here; the forwarder picks endpoints as that controller would: the pods of the
  Service's namespace that match its selector, Ready and not terminating, among the pods this
  kubelet runs (all nodes of the test cluster are its nodes). ``default/kubernetes`` forwards
  to the API server.
* **Names.** The kubelet writes ``<namespace>/<name> -> address`` to a JSON table
  (:attr:`ServiceRouter.table`); every process-mode container gets ``podnet/`` on its
  ``PYTHONPATH`` (a ``sitecustomize`` that resolves ``<svc>``, ``<svc>.<ns>``,
  ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local`` from the table, with the pod's
  namespace as the search domain, and points wildcard binds at the pod's address), and
  ``NODE_OPTIONS=--require podnet/preload.js`` for Node.js (``dns.lookup``). Other names resolve
  as before. ``aiodns`` (c-ares, past ``getaddrinfo``) is hidden from Python, so aiohttp
  resolves with ``getaddrinfo``; other resolvers that skip both do not see cluster names.

Services are read with the ``system:kube-proxy`` identity (the ``system:node-proxier`` role),
as kube-proxy reads them. A ``LoadBalancer`` Service's address is also written to its
``status.loadBalancer.ingress``, as a cloud's load-balancer controller does (with the admin's
identity), so ``helm install --wait`` and an admin looking for the external IP find it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .api import ApiError
from .node_api import NodeApi

if TYPE_CHECKING:
    from .kubelet import ProcessKubelet

log = logging.getLogger(__name__)

PODNET = Path(__file__).resolve().parent / "podnet"
#: The variable that tells a pod's ``sitecustomize`` and ``preload.js`` where the table is.
TABLE_ENV = "TEST_KUBELET_SERVICES"


@dataclass
class _Service:
    namespace: str
    name: str
    ip: str
    selector: dict[str, str]
    # service port -> targetPort (int or a container port's name)
    ports: dict[int, int | str]
    servers: dict[int, asyncio.Server] = field(default_factory=dict)


def pod_network_env(env: dict[str, str], table: Path) -> None:
    """Give a container the cluster's names: ``podnet`` first on PYTHONPATH, Node's preload."""
    env[TABLE_ENV] = str(table)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PODNET), env.get("PYTHONPATH")]))
    preload = f"--require {PODNET / 'preload.js'}"
    env["NODE_OPTIONS"] = " ".join(filter(None, [preload, env.get("NODE_OPTIONS")]))


def _ports(spec: dict) -> dict[int, int | str]:
    return {
        p["port"]: p.get("targetPort", p["port"])
        for p in spec.get("ports") or []
        if p.get("protocol", "TCP") == "TCP"
    }


class ServiceRouter:
    """Addresses, forwarders and the name table for every Service of the cluster."""

    def __init__(
        self, kubelet: ProcessKubelet, api: NodeApi, table: Path, lb_api: NodeApi | None = None
    ) -> None:
        self.kubelet = kubelet
        self.api = api
        self.lb_api = lb_api
        self.table = table
        self.services: dict[tuple[str, str], _Service] = {}
        self._round_robin = itertools.count()
        self._task: asyncio.Task | None = None
        self._synced = asyncio.Event()
        self._write_table()

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._watch())
        await asyncio.wait_for(self._synced.wait(), 30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for key in list(self.services):
            await self._remove(key)
        await self.api.close()
        if self.lb_api is not None:
            await self.lb_api.close()

    def address(self, namespace: str, name: str) -> str | None:
        entry = self.services.get((namespace, name))
        return entry.ip if entry else None

    # --- endpoints -----------------------------------------------------------------------------

    def endpoints(self, entry: _Service, port: int) -> list[tuple[str, int]]:
        """Ready endpoints of one service port, as (pod address, target port)."""
        if (entry.namespace, entry.name) == ("default", "kubernetes"):
            return [(self.kubelet.api_host, self.kubelet.api_port)]
        if not entry.selector:
            return []
        target = entry.ports[port]
        found = []
        for worker in list(self.kubelet.workers.values()):
            labels = worker.pod["metadata"].get("labels") or {}
            if (
                worker.namespace != entry.namespace
                or worker.ip is None
                or worker.gone
                or worker.pod["metadata"].get("deletionTimestamp")
                or any(labels.get(k) != v for k, v in entry.selector.items())
                or not worker.containers
                or not all(c.ready for c in worker.containers)
            ):
                continue
            number = _container_port(worker.pod, target)
            if number is not None:
                found.append((worker.ip, number))
        return found

    async def _forward(
        self,
        entry: _Service,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        ready = self.endpoints(entry, port)
        if not ready:  # kube-proxy rejects a connection to a Service with no endpoints
            writer.close()
            return
        host, target = ready[next(self._round_robin) % len(ready)]
        try:
            up_reader, up_writer = await asyncio.open_connection(host, target)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for side in (writer, up_writer):
                side.close()

    # --- services ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        await self.api.list_and_watch(
            "services", self._listed, self._changed, "service watch failed"
        )

    async def _listed(self, services: list[dict]) -> None:
        present = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in services}
        for key in set(self.services) - present:
            await self._remove(key)
        for service in services:
            await self._apply(service)
        self._synced.set()

    async def _changed(self, kind: str, service: dict) -> None:
        md = service["metadata"]
        if kind == "DELETED":
            await self._remove((md["namespace"], md["name"]))
        else:
            await self._apply(service)

    async def _apply(self, service: dict) -> None:
        md, spec = service["metadata"], service.get("spec") or {}
        key = (md["namespace"], md["name"])
        if spec.get("type") == "ExternalName":
            await self._remove(key)
            return
        ports = _ports(spec)
        entry = self.services.get(key)
        if entry is None:
            entry = _Service(key[0], key[1], self.kubelet.ips.allocate(), {}, {})
            self.services[key] = entry
            self._write_table()
        entry.selector = dict(spec.get("selector") or {})
        for port in set(entry.servers) - set(ports):
            await _close(entry.servers.pop(port))
        entry.ports = ports
        for port in set(ports) - set(entry.servers):
            try:
                entry.servers[port] = await asyncio.start_server(
                    lambda r, w, e=entry, p=port: self._forward(e, p, r, w), entry.ip, port
                )
            except OSError as err:
                log.warning("service %s/%s port %s: %s", *key, port, err)
        await self._publish(service, entry)

    async def _publish(self, service: dict, entry: _Service) -> None:
        """A LoadBalancer's external address, where a cloud controller writes it."""
        if self.lb_api is None or service["spec"].get("type") != "LoadBalancer":
            return
        ingress = [{"ip": entry.ip, "ipMode": "VIP"}]
        status = service.get("status", {}).get("loadBalancer", {}).get("ingress")
        if status == ingress:
            return
        body = {"status": {"loadBalancer": {"ingress": ingress}}}
        try:
            await self.lb_api.merge_patch("services/status", entry.name, body, entry.namespace)
        except ApiError as err:
            if err.code != 404:
                log.warning("load balancer status of %s/%s: %s", entry.namespace, entry.name, err)

    async def _remove(self, key: tuple[str, str]) -> None:
        entry = self.services.get(key)
        if entry is None:
            return
        for server in entry.servers.values():
            await _close(server)
        del self.services[key]  # gone once nothing listens any more
        self.kubelet.ips.release(entry.ip)
        self._write_table()

    def _write_table(self) -> None:
        table = {f"{ns}/{name}": e.ip for (ns, name), e in sorted(self.services.items())}
        partial = self.table.with_suffix(".partial")
        partial.write_text(json.dumps(table))
        partial.replace(self.table)  # a pod never reads half a table


def _container_port(pod: dict, target: int | str) -> int | None:
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return port["containerPort"]
    return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other side may still answer
    except (OSError, RuntimeError):
        writer.close()  # one side broke: end the other direction too


async def _close(server: asyncio.Server) -> None:
    server.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), 2)

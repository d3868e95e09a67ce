"""One pod on one process-kubelet node: volumes, containers as local processes (or stand-ins
that only run), status, events and graceful deletion, written through the real API server
with the node's own credentials.

Liveness probes are not run; readiness probes (httpGet/tcpSocket) are, their period capped at
the kubelet's ``probe_period``. In process mode only the first container is a process; the
others are stand-ins that run until the pod is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .api import ApiError
from .behavior import ProcessSpec
from .common import get_path, rfc3339, rfc3339_micro, set_condition
from .containers import ContainerState, SimContainer, run_probe
from .process import (
    ConfigError,
    ContainerProcess,
    build_process_spec,
    container_env,
    mount_namespace_argv,
    prepare_volumes,
)

if TYPE_CHECKING:
    from .kubelet import ProcessKubelet

log = logging.getLogger(__name__)


class _Deleted(Exception):
    """The pod is being deleted (or is already gone)."""


class _StartFailure(Exception):
    """A container could not be started."""


def _referenced(pod: dict) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret the pod's volumes and env refer to."""
    refs: set[tuple[str, str]] = set()
    for vol in get_path(pod, "spec", "volumes", default=[]) or []:
        for source in [vol, *(get_path(vol, "projected", "sources", default=[]) or [])]:
            if "configMap" in source:
                refs.add(("configmap", source["configMap"].get("name", "")))
            if "secret" in source:
                ref = source["secret"]
                refs.add(("secret", ref.get("secretName") or ref.get("name", "")))
    containers = (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]
    for c in containers:
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                refs.add(("configmap", src["configMapRef"].get("name", "")))
            if "secretRef" in src:
                refs.add(("secret", src["secretRef"].get("name", "")))
        for item in c.get("env") or []:
            source = item.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                refs.add(("configmap", source["configMapKeyRef"].get("name", "")))
            if "secretKeyRef" in source:
                refs.add(("secret", source["secretKeyRef"].get("name", "")))
    return refs


def _wants_token(pod: dict) -> bool:
    return any(
        "serviceAccountToken" in source
        for vol in get_path(pod, "spec", "volumes", default=[]) or []
        for source in get_path(vol, "projected", "sources", default=[]) or []
    )


class PodWorker:
    """Runs one pod."""

    def __init__(self, kubelet: ProcessKubelet, pod: dict) -> None:
        self.kubelet = kubelet
        self.pod = pod
        md = pod["metadata"]
        self.uid, self.name, self.namespace = md["uid"], md["name"], md["namespace"]
        self.node_name = pod["spec"]["nodeName"]
        self.api = kubelet.node_api(self.node_name)
        self.behavior = kubelet.policy.resolve(pod)
        self.changed = asyncio.Event()
        self.gone = False
        self.ip: str | None = None
        self.host_ip = "127.0.0.1"
        self.start_time = rfc3339()
        self.init_done = not pod["spec"].get("initContainers")
        self.containers = [ContainerState(c) for c in pod["spec"]["containers"]]
        self.init_containers = [ContainerState(c) for c in pod["spec"].get("initContainers") or []]
        self.sandbox = kubelet.root / "pods" / self.namespace / f"{self.name}-{self.uid[:8]}"
        self.volumes: dict[str, Path] = {}
        self.objects: dict[tuple[str, str], dict | None] = {}
        self._runners: list[asyncio.Task] = []
        self._deletion: asyncio.Task | None = None
        self._sync_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()
        self.task: asyncio.Task | None = None

    # --- plumbing ------------------------------------------------------------------------------

    def notify(self, pod: dict | None) -> None:
        """A new version of the pod (None: it was removed)."""
        if pod is None:
            self.gone = True
        else:
            self.pod = pod
        self.changed.set()

    def _deleting(self) -> bool:
        return self.gone or bool(self.pod["metadata"].get("deletionTimestamp"))

    async def _wait_for_deletion(self) -> None:
        while not self._deleting():
            self.changed.clear()
            await self.changed.wait()

    async def _race(self, aw: asyncio.Future | asyncio.Task) -> object:
        """Await ``aw`` unless the pod starts terminating first (then raise _Deleted)."""
        assert self._deletion is not None
        try:
            done, _ = await asyncio.wait({aw, self._deletion}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._abandon(aw)
            raise
        if aw in done:
            return aw.result()
        self._abandon(aw)
        raise _Deleted

    def _abandon(self, aw: asyncio.Future) -> None:
        if aw not in self._runners:
            aw.cancel()
        aw.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _sleep(self, seconds: float) -> None:
        await self._race(asyncio.ensure_future(asyncio.sleep(max(seconds, 0.0))))

    def _event(self, type_: str, reason: str, message: str, container: str | None = None) -> None:
        """Record an event in the background (a kubelet never waits for its events)."""
        task = asyncio.ensure_future(
            self.kubelet.record_event(self.pod, type_, reason, message, container)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def log_path(self, container: str, restart: int) -> Path:
        folder = self.kubelet.log_dir(self.namespace, self.name, self.uid, container)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{restart}.log"

    # --- status --------------------------------------------------------------------------------

    def _phase(self) -> str:
        if not all(c.started_once or c.final for c in self.containers):
            return "Pending"
        if all(c.final for c in self.containers):
            return "Succeeded" if all(c.exit_code() == 0 for c in self.containers) else "Failed"
        return "Running"

    def _status(self) -> dict:
        pod = {"status": {"conditions": list(get_path(self.pod, "status", "conditions") or [])}}
        status = pod["status"]
        phase = self._phase()
        status["phase"] = phase
        status["hostIP"] = self.host_ip
        status["hostIPs"] = [{"ip": self.host_ip}]
        status["startTime"] = self.start_time
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        status["containerStatuses"] = [c.status() for c in self.containers]
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        set_condition(pod, "PodReadyToStartContainers", "True" if self.ip else "False")
        if self.init_done:
            set_condition(pod, "Initialized", "True")
        else:
            pending = " ".join(c.name for c in self.init_containers if not c.final)
            set_condition(
                pod,
                "Initialized",
                "False",
                "ContainersNotInitialized",
                f"containers with incomplete status: [{pending}]",
            )
        unready = [c.name for c in self.containers if not c.ready]
        for cond in ("Ready", "ContainersReady"):
            if phase in ("Succeeded", "Failed"):
                set_condition(pod, cond, "False", "PodCompleted")
            elif unready:
                set_condition(
                    pod,
                    cond,
                    "False",
                    "ContainersNotReady",
                    f"containers with unready status: [{' '.join(unready)}]",
                )
            else:
                set_condition(pod, cond, "True")
        return status

    async def sync(self) -> None:
        """Write the current status; the uid in the patch makes it fail on a newer pod."""
        async with self._sync_lock:
            if self.gone:
                return
            body = {"metadata": {"uid": self.uid}, "status": self._status()}
            try:
                self.pod = await self.api.merge_patch(
                    "pods/status", self.name, body, self.namespace
                )
            except ApiError as err:
                if err.code in (404, 409, 422):  # gone, or replaced by a pod of the same name
                    self.gone = err.code == 404 or self.gone
                    return
                raise

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """The whole pod lifecycle."""
        self._deletion = asyncio.ensure_future(self._wait_for_deletion())
        try:
            await self._prepare()
            self.ip = self.kubelet.ips.allocate()
            await self.sync()
            await self._run_init_containers()
            self._runners = [
                asyncio.ensure_future(self._run_container(c, i))
                for i, c in enumerate(self.containers)
            ]
            await self._race(asyncio.ensure_future(asyncio.gather(*self._runners)))
        except _Deleted:
            await self._terminate()
        finally:
            await self._cleanup()

    async def _fetch_objects(self) -> None:
        async def one(kind: str, name: str) -> None:
            plural = "configmaps" if kind == "configmap" else "secrets"
            self.objects[(kind, name)] = await self.api.get(plural, name, self.namespace)

        await asyncio.gather(*(one(k, n) for k, n in _referenced(self.pod) if n))

    def _lookup(self, kind: str, namespace: str, name: str) -> dict | None:
        return self.objects.get((kind, name))

    async def _token(self) -> str | None:
        if not _wants_token(self.pod):
            return None
        account = self.pod["spec"].get("serviceAccountName") or "default"
        review = await self.api.request(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
            {
                "spec": {
                    "expirationSeconds": 3607,
                    "boundObjectRef": {
                        "kind": "Pod",
                        "apiVersion": "v1",
                        "name": self.name,
                        "uid": self.uid,
                    },
                }
            },
        )
        return review["status"]["token"]

    async def _prepare(self) -> None:
        while True:
            try:
                await self._race(asyncio.ensure_future(self._fetch_objects()))
                token = await self._race(asyncio.ensure_future(self._token()))
                self.volumes = prepare_volumes(
                    self._lookup, self.pod, self.sandbox, self.kubelet.root, token
                )
                for c in self.init_containers + self.containers:
                    self._env(c.spec)
                break
            except ApiError as err:
                # The Node authorizer learns of the pod's ConfigMaps, Secrets and ServiceAccount
                # a moment after the pod is bound; a real kubelet retries the same way.
                if err.code != 403:
                    raise
                await self._sleep(0.2)
            except ConfigError as exc:
                message = str(exc)
                if message.startswith("MountVolume"):
                    self._event("Warning", "FailedMount", message)
                else:
                    self._event("Warning", "Failed", f"Error: {message}")
                    for c in self.containers:
                        c.state = {
                            "waiting": {"reason": "CreateContainerConfigError", "message": message}
                        }
                    await self.sync()
                await self._sleep(0.5)
        await self._sleep(self.behavior.start_delay)
        error = self.behavior.image_pull_error
        if error:
            await self._fail_image_pull(error)

    async def _fail_image_pull(self, error: str) -> None:
        for c in self.containers:
            image = c.spec.get("image", "")
            self._event("Normal", "Pulling", f'Pulling image "{image}"', c.name)
            self._event("Warning", "Failed", f'Failed to pull image "{image}": {error}', c.name)
            c.state = {"waiting": {"reason": "ErrImagePull", "message": error}}
        await self.sync()
        await self._sleep(0.2)
        for c in self.containers:
            image = c.spec.get("image", "")
            self._event("Normal", "BackOff", f'Back-off pulling image "{image}"', c.name)
            c.state = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}"',
                }
            }
        await self.sync()
        await self._race(asyncio.get_running_loop().create_future())

    def _env(self, container: dict) -> dict[str, str]:
        return container_env(
            self._lookup,
            self.pod,
            container,
            self.kubelet.node_object(self.node_name),
            self.kubelet.api_host,
            self.kubelet.api_port,
        )

    def _pulled(self, c: ContainerState) -> None:
        image = c.spec.get("image", "")
        self._event(
            "Normal", "Pulled", f'Container image "{image}" already present on machine', c.name
        )

    async def _run_init_containers(self) -> None:
        for c in self.init_containers:
            self._pulled(c)
            self._event("Normal", "Created", f"Created container: {c.name}", c.name)
            self._event("Normal", "Started", f"Started container {c.name}", c.name)
            now = rfc3339()
            c.started_once = c.final = True
            c.container_id = self.kubelet.container_id()
            c.state = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": now,
                    "finishedAt": now,
                    "containerID": c.container_id,
                }
            }
        self.init_done = True
        if self.init_containers:
            await self.sync()

    async def _start(self, c: ContainerState, index: int) -> SimContainer | ContainerProcess:
        log_path = self.log_path(c.name, c.restart_count)
        if self.behavior.mode != "process" or index != 0:
            with log_path.open("a", encoding="utf-8") as fh:
                for line in self.behavior.logs.splitlines():
                    fh.write(f"{rfc3339_micro()} {line}\n")
            return SimContainer(self.behavior)
        spec = self._process_spec(c.spec)
        argv = mount_namespace_argv(spec)
        try:
            return await ContainerProcess.start(argv, spec.env, spec.cwd, log_path)
        except OSError as exc:
            raise _StartFailure(
                "failed to create containerd task: failed to create shim task: OCI runtime create "
                "failed: runc create failed: unable to start container process: "
                f'exec: "{spec.argv[0]}": {exc.strerror or exc}'
            ) from exc

    def _process_spec(self, container: dict) -> ProcessSpec:
        assert self.ip is not None
        spec = build_process_spec(
            self.pod,
            container,
            self.behavior,
            self._env(container),
            self.ip,
            self.sandbox,
            self.volumes,
            self.kubelet.services.table if self.kubelet.services else None,
        )
        if not spec.argv:
            raise _StartFailure(
                f"process kubelet: no command for image {container.get('image')!r} "
                "(set command or PodBehavior.command)"
            )
        return spec

    async def _run_container(self, c: ContainerState, index: int) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            if not c.started_once:
                self._pulled(c)
            started = rfc3339()
            c.container_id = self.kubelet.container_id()
            try:
                self._event("Normal", "Created", f"Created container: {c.name}", c.name)
                c.handle = await self._start(c, index)
            except _StartFailure as exc:
                self._event("Warning", "Failed", f"Error: {exc}", c.name)
                c.started_once = True
                code, reason, message = 128, "StartError", str(exc)
            else:
                self._event("Normal", "Started", f"Started container {c.name}", c.name)
                c.started_once = True
                c.state = {"running": {"startedAt": started}}
                c.ready = False
                await self.sync()
                readiness = asyncio.ensure_future(self._readiness(c, index))
                try:
                    code = await c.handle.wait()
                finally:
                    readiness.cancel()
                reason, message = ("Completed" if code == 0 else "Error"), None
            c.ready = False
            terminated = {
                "exitCode": code,
                "reason": reason,
                "startedAt": started,
                "finishedAt": rfc3339(),
                "containerID": c.container_id,
            }
            if message:
                terminated["message"] = message
            c.state = {"terminated": terminated}
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                c.final = True
                await self.sync()
                return
            c.last_state = {"terminated": terminated}
            c.restart_count += 1
            delay = min(self.behavior.restart_delay * 2 ** (c.restart_count - 1), 5.0)
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container={c.name} "
                    f"pod={self.name}_{self.namespace}({self.uid})",
                }
            }
            self._event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {c.name} in pod "
                f"{self.name}_{self.namespace}({self.uid})",
                c.name,
            )
            await self.sync()
            await asyncio.sleep(delay)

    async def _readiness(self, c: ContainerState, index: int) -> None:
        probe = c.spec.get("readinessProbe")
        simulated = self.behavior.mode != "process" or index != 0
        if simulated or not probe or not ({"httpGet", "tcpSocket"} & set(probe)):
            if simulated:
                await asyncio.sleep(self.behavior.ready_delay)
            c.ready = True
            await self.sync()
            return
        cap = self.kubelet.probe_period
        await asyncio.sleep(min(probe.get("initialDelaySeconds", 0), cap))
        while True:
            ok = await run_probe(c.spec, probe, self.ip or "")
            if ok != c.ready:
                c.ready = ok
                await self.sync()
            await asyncio.sleep(min(probe.get("periodSeconds", 10), cap))

    async def _terminate(self) -> None:
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        grace = float(self.pod["metadata"].get("deletionGracePeriodSeconds", 30) or 0)
        if self.gone:
            grace = min(grace, 2.0)  # force-deleted: nobody waits for a graceful stop
        running = [c for c in self.containers if c.handle is not None and "running" in c.state]
        for c in running:
            self._event("Normal", "Killing", f"Stopping container {c.name}", c.name)
        codes = await asyncio.gather(
            *(c.handle.stop(grace) for c in running if c.handle is not None)
        )
        now = rfc3339()
        for c, code in zip(running, codes, strict=True):
            started = get_path(c.state, "running", "startedAt", default=now)
            c.state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": started,
                    "finishedAt": now,
                    "containerID": c.container_id,
                }
            }
            c.ready = False
        for c in self.containers:
            if "terminated" in c.state:
                c.final = True
        if self.gone:
            return
        with contextlib.suppress(ApiError):
            await self.sync()
        # The containers are gone: the kubelet removes the object (grace 0, this uid only).
        with contextlib.suppress(ApiError):
            await self.api.delete(
                "pods",
                self.name,
                self.namespace,
                {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )

    async def _cleanup(self) -> None:
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        handles = [c.handle for c in self.containers if isinstance(c.handle, ContainerProcess)]
        await asyncio.gather(*(h.stop(1.0) for h in handles), return_exceptions=True)
        if self._deletion is not None:
            self._deletion.cancel()
        self.kubelet.ips.release(self.ip)
        log.debug("pod %s/%s finished on %s", self.namespace, self.name, self.node_name)

"""Simulated kubelets: pod lifecycles on the harness nodes, simulated or as local processes.

Every pod bound to an existing harness node gets a worker that writes the status a kubelet
would (conditions, containerStatuses, pod IP from 127.0.0.0/8), records the usual events
(Pulling/Pulled/Created/Started/Killing/BackOff), honours restartPolicy, and on deletion stops
the containers (SIGTERM, SIGKILL after the grace period) before removing the pod object.
In process mode only the first container runs as a process; the others are simulated and run
until the pod is deleted. Liveness probes and pod ``activeDeadlineSeconds`` are not enforced;
readiness probes (httpGet/tcpSocket) are, with their period capped at ``probe_period``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from pathlib import Path

from .behavior import BehaviorPolicy, ProcessSpec
from .common import get_path, rfc3339, rfc3339_nano, set_condition
from .containers import ContainerState, IpPool, SimContainer, run_probe
from .errors import ApiError
from .events import EventRecorder
from .process import (
    ConfigError,
    ContainerProcess,
    build_process_spec,
    container_env,
    prepare_volumes,
)
from .registry import DeleteOptions, Registry
from .resources import resolve
from .store import Store

log = logging.getLogger(__name__)
_PODS = resolve("pods")


class _Deleted(Exception):
    """The pod is being deleted (or is already gone)."""


class _StartFailure(Exception):
    """A container could not be started."""


class PodWorker:
    """Runs one pod on one simulated node."""

    def __init__(self, kubelet: Kubelet, pod: dict) -> None:
        self.kubelet = kubelet
        self.pod = pod
        md = pod["metadata"]
        self.uid, self.name, self.namespace = md["uid"], md["name"], md["namespace"]
        self.node_name = pod["spec"]["nodeName"]
        self.behavior = kubelet.policy.resolve(pod)
        self.changed = asyncio.Event()
        self.gone = False
        self.ip: str | None = None
        self.host_ip = kubelet.node_ip(self.node_name)
        self.start_time = rfc3339()
        self.init_done = not pod["spec"].get("initContainers")
        self.containers = [ContainerState(c) for c in pod["spec"]["containers"]]
        self.init_containers = [ContainerState(c) for c in pod["spec"].get("initContainers") or []]
        self.sandbox = kubelet.root / "pods" / self.namespace / f"{self.name}-{self.uid[:8]}"
        self.volumes: dict[str, Path] = {}
        self._runners: list[asyncio.Task] = []
        self._deletion: asyncio.Task | None = None
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
        # Nobody awaits it any more; consume its outcome so asyncio does not log it (an error
        # logged from a finalizer can also trip CPython 3.11's AST recursion-depth bug).
        aw.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _sleep(self, seconds: float) -> None:
        await self._race(asyncio.ensure_future(asyncio.sleep(max(seconds, 0.0))))

    def _event(self, type_: str, reason: str, message: str, container: str | None = None) -> None:
        field_path = f"spec.containers{{{container}}}" if container else None
        self.kubelet.events.record(
            self.pod, type_, reason, message, "kubelet", self.node_name, field_path
        )

    def log_path(self, container: str, restart: int) -> Path:
        directory = (
            self.kubelet.root / "logs" / f"{self.namespace}_{self.name}_{self.uid}" / container
        )
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{restart}.log"

    # --- status --------------------------------------------------------------------------------

    def _phase(self) -> str:
        if not all(c.started_once or c.final for c in self.containers):
            return "Pending"
        if all(c.final for c in self.containers):
            return "Succeeded" if all(c.exit_code() == 0 for c in self.containers) else "Failed"
        return "Running"

    def _apply_status(self, pod: dict) -> None:
        status = pod.setdefault("status", {})
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

    def sync(self) -> None:
        """Write the current status (no-op if the pod is gone)."""
        if self.gone:
            return
        try:
            updated = self.kubelet.registry.mutate(
                _PODS, self.namespace, self.name, self._apply_status, uid=self.uid
            )
        except ApiError:
            log.exception("kubelet status update for %s/%s rejected", self.namespace, self.name)
            raise
        if updated is None:
            self.gone = True
        else:
            self.pod = updated

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """The whole pod lifecycle."""
        self._deletion = asyncio.ensure_future(self._wait_for_deletion())
        try:
            self.sync()
            await self._prepare()
            self.ip = self.kubelet.ips.allocate()
            self.sync()
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

    async def _prepare(self) -> None:
        pod = self.pod
        while True:
            try:
                self.volumes = prepare_volumes(
                    self.kubelet.store, pod, self.sandbox, self.kubelet.root
                )
                for c in self.init_containers + self.containers:
                    self._env(c.spec)
                break
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
                    self.sync()
                await self._sleep(0.5)
        await self._sleep(self.behavior.start_delay)
        error = self.behavior.image_pull_error
        if error:
            for c in self.containers:
                image = c.spec.get("image", "")
                self._event("Normal", "Pulling", f'Pulling image "{image}"', c.name)
                self._event("Warning", "Failed", f'Failed to pull image "{image}": {error}', c.name)
                self._event("Warning", "Failed", "Error: ErrImagePull", c.name)
                c.state = {"waiting": {"reason": "ErrImagePull", "message": error}}
            self.sync()
            await self._sleep(0.2)
            for c in self.containers:
                image = c.spec.get("image", "")
                self._event("Normal", "BackOff", f'Back-off pulling image "{image}"', c.name)
                self._event("Warning", "Failed", "Error: ImagePullBackOff", c.name)
                c.state = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{image}"',
                    }
                }
            self.sync()
            await self._race(asyncio.get_running_loop().create_future())

    def _env(self, container: dict) -> dict[str, str]:
        node = self.kubelet.store.get("nodes", "", self.node_name)
        return container_env(
            self.kubelet.store,
            self.pod,
            container,
            node,
            self.kubelet.api_host,
            self.kubelet.api_port,
        )

    def _pull_events(self, c: ContainerState) -> None:
        image = c.spec.get("image", "")
        if c.spec.get("imagePullPolicy") == "Always":
            self._event("Normal", "Pulling", f'Pulling image "{image}"', c.name)
            self._event(
                "Normal",
                "Pulled",
                f'Successfully pulled image "{image}" in 1ms (1ms including waiting). '
                "Image size: 0 bytes.",
                c.name,
            )
        else:
            self._event(
                "Normal", "Pulled", f'Container image "{image}" already present on machine', c.name
            )

    async def _run_init_containers(self) -> None:
        for c in self.init_containers:
            self._pull_events(c)
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
            self.sync()

    async def _start(self, c: ContainerState, index: int) -> SimContainer | ContainerProcess:
        log_path = self.log_path(c.name, c.restart_count)
        if self.behavior.mode != "process" or index != 0:
            if self.behavior.logs:
                with log_path.open("a", encoding="utf-8") as fh:
                    for line in self.behavior.logs.splitlines():
                        fh.write(f"{rfc3339_nano()} {line}\n")
            return SimContainer(self.behavior)
        spec = self._process_spec(c.spec)
        try:
            return await ContainerProcess.start(spec.argv, spec.env, spec.cwd, log_path)
        except OSError as exc:
            raise _StartFailure(
                "failed to create containerd task: failed to create shim task: OCI runtime create "
                "failed: runc create failed: unable to start container process: "
                f'exec: "{spec.argv[0]}": '
                f"{exc.strerror or exc}"
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
        )
        if not spec.argv:
            raise _StartFailure(
                f"k8s harness: no command for image {container.get('image')!r} "
                "(set command or PodBehavior.command)"
            )
        return spec

    async def _run_container(self, c: ContainerState, index: int) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while True:
            if not c.started_once:
                self._pull_events(c)
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
                self.sync()
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
                self.sync()
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
            self.sync()
            await asyncio.sleep(delay)

    async def _readiness(self, c: ContainerState, index: int) -> None:
        probe = c.spec.get("readinessProbe")
        simulated = self.behavior.mode != "process" or index != 0
        if simulated or not probe or not ({"httpGet", "tcpSocket"} & set(probe)):
            if simulated:
                await asyncio.sleep(self.behavior.ready_delay)
            c.ready = True
            self.sync()
            return
        cap = self.kubelet.probe_period
        await asyncio.sleep(min(probe.get("initialDelaySeconds", 0), cap))
        while True:
            ok = await run_probe(c.spec, probe, self.ip or "")
            if ok != c.ready:
                c.ready = ok
                self.sync()
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
            self.sync()
        with contextlib.suppress(ApiError):
            self.kubelet.registry.delete(
                _PODS,
                self.namespace,
                self.name,
                DeleteOptions(grace_period_seconds=0, preconditions={"uid": self.uid}),
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


class Kubelet:
    """All simulated kubelets (one per harness node) in one loop."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        events: EventRecorder,
        policy: BehaviorPolicy,
        root: Path,
        rng: random.Random,
        api_host: str = "127.0.0.1",
        api_port: int = 0,
        probe_period: float = 0.2,
    ) -> None:
        self.registry = registry
        self.store = store
        self.events = events
        self.policy = policy
        self.root = root
        self.rng = rng
        self.api_host = api_host
        self.api_port = api_port
        self.probe_period = probe_period
        self.ips = IpPool()
        self.workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()

    def container_id(self) -> str:
        return f"containerd://{self.rng.getrandbits(256):064x}"

    def node_ip(self, node_name: str) -> str:
        node = self.store.get("nodes", "", node_name) or {}
        for addr in get_path(node, "status", "addresses", default=[]) or []:
            if addr.get("type") == "InternalIP":
                return addr["address"]
        return "127.0.0.1"

    async def run(self) -> None:
        """React to pod and node changes until cancelled."""
        pods, nodes = self.store.subscribe("pods"), self.store.subscribe("nodes")
        try:
            for pod in self.store.list("pods"):
                self._consider(pod)
            while True:
                getters = {asyncio.ensure_future(s.queue.get()): s for s in (pods, nodes)}
                done, pending = await asyncio.wait(getters, return_when=asyncio.FIRST_COMPLETED)
                for fut in pending:
                    fut.cancel()
                events = [f.result() for f in done]
                for sub in (pods, nodes):
                    while not sub.queue.empty():
                        events.append(sub.queue.get_nowait())
                for ev in events:
                    if ev.plural == "nodes":
                        node = ev.obj["metadata"]["name"]
                        on_node = self.store.list(
                            "pods", where=lambda p, n=node: get_path(p, "spec", "nodeName") == n
                        )
                        for pod in on_node:
                            self._consider(pod)
                    elif ev.type == "DELETED":
                        worker = self.workers.get(ev.obj["metadata"]["uid"])
                        if worker is not None:
                            worker.notify(None)
                    else:
                        self._consider(ev.obj)
        finally:
            pods.close()
            nodes.close()
            await self.shutdown()

    def _consider(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.notify(pod)
            return
        node = get_path(pod, "spec", "nodeName")
        if not node or uid in self._finished or self.store.get("nodes", "", node) is None:
            return
        if get_path(pod, "status", "phase") in ("Succeeded", "Failed"):
            return
        worker = PodWorker(self, pod)
        self.workers[uid] = worker
        worker.task = asyncio.ensure_future(self._run_worker(worker))

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

    async def shutdown(self) -> None:
        """Stop every worker (their processes are killed)."""
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def log_file(
        self, uid: str, container: str, previous: bool = False, restart_count: int | None = None
    ) -> Path | None:
        """The log of a container's current run, or of the run before (``previous``).

        Runs are numbered by restartCount; while a container waits to be restarted, its latest
        (terminated) run counts as both current and previous, as with the real kubelet.
        """
        base = self.root / "logs"
        matches = list(base.glob(f"*_{uid}/{container}")) if base.exists() else []
        if not matches:
            return None
        runs = sorted(int(p.stem) for p in matches[0].glob("*.log"))
        if not runs:
            return None
        if previous:
            wanted = (restart_count if restart_count is not None else runs[-1]) - 1
            return matches[0] / f"{wanted}.log" if wanted in runs else None
        return matches[0] / f"{runs[-1]}.log"

    def pids(self) -> list[int]:
        """PIDs of the container processes currently running."""
        out = []
        for worker in list(self.workers.values()):  # called from test threads
            for c in worker.containers:
                if isinstance(c.handle, ContainerProcess) and c.handle.proc.returncode is None:
                    out.append(c.handle.pid)
        return out

"""What the jobs service does: admit, record, start, watch, cancel; release slices at the end.

One watch loop observes every unfinished job through the backend, also after a restart of the
service, so nothing stays "running" forever and every slice is released once, when its job ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from sqlalchemy.exc import IntegrityError
from traitlets.config import LoggingConfigurable

from .backends.base import Backend, Launch
from .hub_client import HubClient
from .model import JOB_FILES, JobInputError, Status, parse_request
from .store import JobRecord, Store, now_ms
from .uploads import UploadKeys, runner_environment

#: How much of a finished job's log the service keeps (the whole log stays in the user's storage).
FINAL_LOG_BYTES = 1 << 20


class JobsManager(LoggingConfigurable):
    """The service's logic; the handlers parse and authorise, this decides."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        hub: HubClient,
        max_timeout: int,
        max_retries: int,
        poll_interval: float,
        upload_keys: UploadKeys | None = None,
        upload_url: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.backend = backend
        self.hub = hub
        self.max_timeout = max_timeout
        self.max_retries = max_retries
        self.poll_interval = poll_interval
        #: Where runners send outputs the backend cannot read back (None: they are not kept).
        self.upload_keys = upload_keys if not backend.logs_outlive_jobs else None
        self.upload_url = upload_url
        self._creating: dict[tuple[str, str], asyncio.Lock] = {}
        self._task: asyncio.Task | None = None
        #: Jobs being handed to the backend now, by id.
        self._starting: dict[str, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        #: Set after each pass of the watch loop (tests and the live log wait on it).
        self.observed = asyncio.Event()

    # --- create ------------------------------------------------------------------------------

    async def create(self, owner: str, body: Any) -> tuple[JobRecord, bool]:
        """Admit and start a job; returns (job, created). A repeated idempotency key returns
        the first job with created False. Bad input raises :class:`JobInputError` with nothing
        recorded and nothing reserved."""
        request = parse_request(body, self.max_timeout, self.max_retries)
        key = request.idempotency_key
        lock = self._creating.setdefault((owner, key or request.job_id), asyncio.Lock())
        async with lock:
            if key:
                existing = self.store.find(owner=owner, idempotency_key=key)
                if existing:
                    return existing[0], False
            storage = await self.backend.storage(owner)
            if storage.blocked:
                raise JobInputError(storage.blocked, "input_path", 409)
            admitted = await self.hub.admit(
                owner,
                {
                    "flavor": request.flavor,
                    "project": request.project,
                    "gpu_type": request.gpu_type,
                    "image": request.image,
                    # A GPU slice is placed where the job can mount the user's storage.
                    **({"node": storage.node} if storage.node else {}),
                },
                request.name,
            )
            allocation = admitted.get("allocation")
            job = JobRecord(
                job_id=request.job_id,
                owner=owner,
                name=request.name,
                input_path=request.input_path,
                snapshot_path=request.snapshot_path,
                project=admitted.get("project"),
                flavor=request.flavor,
                gpu_type=admitted.get("gpu_type"),
                image=(admitted.get("image") or {}).get("key"),
                image_ref=(admitted.get("image") or {}).get("image"),
                cpu=(admitted.get("flavor") or {}).get("cpu"),
                memory=(admitted.get("flavor") or {}).get("memory"),
                parameters=request.parameters,
                environment=request.environment,
                timeout_seconds=request.timeout_seconds,
                max_retries=request.max_retries,
                output_formats=list(request.output_formats),
                tags=list(request.tags),
                status=Status.QUEUED.value,
                attempts=0,
                allocation_id=allocation["id"] if allocation else None,
                gpu_slice=_held_slice(
                    allocation,
                    admitted.get("environment") or {},
                    admitted.get("pod"),
                    any_type=request.gpu_type is None,
                ),
                idempotency_key=key,
                rerun_of=request.rerun_of,
                node=storage.node,
                create_time=now_ms(),
            )
            try:
                with self.store.session() as session:
                    session.add(job)
            except IntegrityError:
                await self._release(job)
                raise JobInputError("a job with this job_id exists", "job_id", 409) from None
        self._creating.pop((owner, key or request.job_id), None)
        # Recorded and its slice held: answer now and start it in the background when the
        # backend has room (a start that fails is recorded as FAILED and its slice released).
        job.pending_reason = self.dispatch().get(job.job_id)
        return job, True

    def dispatch(self) -> dict[str, str]:
        """Hand the waiting jobs to the backend, oldest first, as far as it has room; the
        others keep waiting with a pending reason that says why (returned by job id)."""
        waiting = [row for row in self.store.waiting() if row.job_id not in self._starting]
        if not waiting:
            return {}
        limit = self.backend.max_running
        room = len(waiting)
        if limit:
            room = max(0, limit - self.store.started() - len(self._starting))
        for row in waiting[:room]:
            job = self.store.get(row.job_id)
            if job is not None:
                self._starting[job.job_id] = asyncio.ensure_future(self._start(job))
        reason = f"waiting for a free runner ({limit} jobs run at once here)"
        for row in waiting[room:]:
            if row.pending_reason != reason:
                self.store.update(row.job_id, pending_reason=reason)
                if row.allocation_id:
                    # Hold its slice while it waits (a reservation alone would expire).
                    self._background(self._hold(row.job_id, row.allocation_id))
        return {row.job_id: reason for row in waiting[room:]}

    async def _hold(self, job_id: str, allocation_id: str) -> None:
        try:
            await self.hub.commit(allocation_id)
        except Exception:
            self.log.exception("could not hold slice %s of waiting job %s", allocation_id, job_id)

    def _background(self, work) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # a reference, so the task is not garbage-collected mid-way
        task.add_done_callback(self._tasks.discard)

    async def _start(self, job: JobRecord) -> None:
        try:
            await self._launch(job)
        finally:
            self._starting.pop(job.job_id, None)

    async def _launch(self, job: JobRecord) -> None:
        try:
            env = runner_environment(self.upload_keys, self.upload_url, job.job_id)
            launch = dataclasses.replace(Launch.of(job), runner_environment=env)
            ref = await self.backend.start(job, launch)
        except Exception as err:
            self.log.exception("job %s could not start", job.job_id)
            self.store.update(
                job.job_id,
                status=Status.FAILED.value,
                status_message=f"could not start: {err}",
                end_time=now_ms(),
            )
            await self._release(job)
            return
        if job.allocation_id:
            await self.hub.commit(job.allocation_id)
        # QUEUED until the backend sees it run (a pod may wait for a node or an image).
        started = self.store.update(job.job_id, backend_ref=ref, pending_reason=None)
        if started is not None and (started.state is Status.STOPPING or started.state.finished):
            await self.backend.cancel(started)  # cancelled while it was being started

    # --- read, cancel ------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    async def cancel(self, job: JobRecord) -> JobRecord:
        """Ask the backend to stop the job; the watch loop records STOPPED once it is gone."""
        if job.state.finished:
            return job
        if not job.backend_ref and job.job_id not in self._starting:
            # Still waiting: nothing runs, so it ends here.
            self.store.update(
                job.job_id,
                status=Status.STOPPED.value,
                status_message="cancelled before it started",
                pending_reason=None,
                end_time=now_ms(),
            )
            await self._release(job)
            return self.store.get(job.job_id) or job
        updated = self.store.update(job.job_id, status=Status.STOPPING.value) or job
        await self.backend.cancel(updated)
        await self.refresh(updated)
        return self.store.get(job.job_id) or updated

    # --- the watch loop ----------------------------------------------------------------------

    def start_watching(self) -> None:
        self.dispatch()  # jobs recorded before a restart but not started yet
        self._task = asyncio.ensure_future(self._watch())

    async def stop_watching(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        while True:
            for job in self.store.to_watch():
                try:
                    await self.refresh(job)
                except Exception:
                    self.log.exception("watching job %s failed; will retry", job.job_id)
            self.dispatch()  # ended jobs made room
            self.observed.set()
            self.observed = asyncio.Event()
            await asyncio.sleep(self.poll_interval)

    async def refresh(self, job: JobRecord) -> None:
        """Record what the backend sees of one job; release its slice when it has ended."""
        if job.state is Status.QUEUED and not job.backend_ref:
            return  # being started right now
        seen = await self.backend.status_of(job)
        values: dict[str, Any] = {}
        if seen.status.value != job.status:
            values["status"] = seen.status.value
        for name in ("pending_reason", "backend_ref"):
            value = getattr(seen, name)
            if value != getattr(job, name) and (name != "backend_ref" or value):
                values[name] = value
        if seen.attempts is not None and seen.attempts != job.attempts:
            values["attempts"] = seen.attempts
        if seen.message and seen.message != job.status_message:
            values["status_message"] = seen.message
        if seen.status is Status.IN_PROGRESS and job.start_time is None:
            values["start_time"] = now_ms()
        if seen.status.finished:
            if not self.backend.logs_outlive_jobs and job.final_log is None:
                values["final_log"] = await self._log_tail(job)
            values["end_time"] = job.end_time or now_ms()
            values["start_time"] = job.start_time or values.get("start_time") or now_ms()
        if values:
            self.store.update(job.job_id, **values)
        if seen.status.finished:
            await self._release(job)

    async def _log_tail(self, job: JobRecord) -> str:
        data = await self.backend.read_file(job, JOB_FILES["log"]) or b""
        return data[-FINAL_LOG_BYTES:].decode("utf-8", "replace")

    async def read_file(self, job: JobRecord, name: str) -> bytes | None:
        """A job file through the backend; once the pod is gone, the log from the record and
        the outputs its runner sent."""
        data = await self.backend.read_file(job, name)
        if data is not None:
            return data
        if name == JOB_FILES["log"]:
            return None if job.final_log is None else job.final_log.encode()
        return self.store.kept_output(job.job_id, name)

    def keep_output(self, job: JobRecord, name: str, data: bytes) -> None:
        """Keep an output the job's runner sent (see :mod:`.uploads`)."""
        self.store.keep_output(job.job_id, name, data)

    async def _release(self, job: JobRecord) -> None:
        if not job.allocation_id:
            return
        try:
            await self.hub.release(job.allocation_id)
        except Exception:
            self.log.exception("could not release slice %s; will retry", job.allocation_id)
            return
        self.store.update(job.job_id, allocation_id=None)


def _held_slice(
    allocation: dict | None, environment: dict[str, str], pod: dict | None, any_type: bool
) -> dict | None:
    """The slice a job holds, as recorded; ``any_type``: the job named no GPU type (the
    allocator chose ``gpu_type``), so a re-run may land on another."""
    if not allocation:
        return None
    return {
        "description": allocation.get("description"),
        "fraction": allocation.get("fraction"),
        "gpu_type": allocation.get("gpu_type"),
        "any_type": any_type,
        "node": allocation.get("node"),
        "environment": environment,
        "allocation": allocation,
        "pod": pod,
    }

"""The interface every backend implements, and what it is told and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from traitlets import Integer
from traitlets.config import LoggingConfigurable

from ..model import Status
from ..store import JobRecord


@dataclass(frozen=True)
class Launch:
    """What a backend needs beyond the job's record to start it."""

    #: The slice's environment for a local process (empty for CPU jobs).
    slice_environment: dict[str, str] = field(default_factory=dict)
    #: The hub's allocation model (``None`` for CPU jobs).
    allocation: dict[str, Any] | None = None
    #: The slice for a pod (environment, volumes, mounts, annotations, node), from the hub.
    pod: dict[str, Any] | None = None
    #: Variables for the runner from the service (where to send its outputs).
    runner_environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, job: JobRecord) -> Launch:
        """The launch of a job already recorded (a retry, or after a restart)."""
        held = job.gpu_slice or {}
        return cls(dict(held.get("environment") or {}), held.get("allocation"), held.get("pod"))


@dataclass(frozen=True)
class Observation:
    """A job's state as the backend sees it now."""

    status: Status
    message: str | None = None
    pending_reason: str | None = None
    attempts: int | None = None
    #: The backend reference changed (a retry started a new process).
    backend_ref: str | None = None


@dataclass(frozen=True)
class Storage:
    """How a job reaches its user's storage, for the dialog and for placing the job."""

    #: Every node can mount it (ReadWriteMany, or a local folder).
    shared: bool = True
    #: The node it is attached to now, where the job must run (None: not attached).
    node: str | None = None
    #: Why no job can run now (a ReadWriteOncePod volume in use), or None.
    blocked: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Backend(LoggingConfigurable):
    """Starts, watches and cancels jobs. One instance per jobs service."""

    #: Whether :meth:`read_file` still reads a job's log after the job is gone (local files
    #: do; a pod's log goes with the pod, so the service keeps the end of it).
    logs_outlive_jobs = True

    max_running = Integer(
        0,
        config=True,
        help="""The most jobs this backend runs at once; the others wait QUEUED, oldest first,
        with their pending reason saying so. 0: no limit (on Kubernetes the cluster's
        scheduler and quotas decide what runs).""",
    )

    async def start(self, job: JobRecord, launch: Launch) -> str:
        """Start the job; returns a reference saved in the record (pid, Job name)."""
        raise NotImplementedError

    async def status_of(self, job: JobRecord) -> Observation:
        """The job's state now; called for every unfinished job, also after a restart."""
        raise NotImplementedError

    async def cancel(self, job: JobRecord) -> None:
        """Stop the job; :meth:`status_of` reports STOPPED once it is gone."""
        raise NotImplementedError

    async def storage(self, owner: str) -> Storage:
        """How a job of ``owner`` reaches their storage (asked before a job is admitted)."""
        return Storage()

    async def read_file(self, job: JobRecord, relative: str) -> bytes | None:
        """A file of the job's folder (log, outputs) for readers other than its owner."""
        return None

    async def close(self) -> None:
        """Release what the backend holds (watches, clients)."""

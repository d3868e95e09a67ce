"""The single-machine backend: each job is the runner in its own process group.

The process is detached from the service (its own session), so it survives the service and
the user's server stopping. Its state lives in the job folder (``status.json``), so a
restarted service finds running jobs by pid and finished ones by their status file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from traitlets import Bool, Float, Integer, Unicode, default

from spawner.os_users import DEFAULT_PREFIX, OSUserError, ensure_os_user, os_user_name

from ..model import Status
from ..store import JobRecord
from .base import Backend, Launch, Observation

#: Runner status file states -> job status.
_FINAL = {
    "completed": Status.COMPLETED,
    "failed": Status.FAILED,
    "timeout": Status.FAILED,
    "cancelled": Status.STOPPED,
}
#: Environment passed through from the service to jobs (nothing secret: no tokens).
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), to detect reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    current = _process_start(pid)
    if current is None or (start is not None and current != start):
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


class LocalBackend(Backend):
    """Runs ``python -m server_extension.runner`` as a local process per job."""

    storage_root_template = Unicode(
        "/tmp/{username}",
        config=True,
        help="""The folder each user's server runs in (their storage), with {username}. Job
        folders are inside it, as the user's server sees them. The single-machine hub sets it
        to the spawner's home_dir_template.""",
    )
    python = Unicode(
        sys.executable,
        config=True,
        help="""Python interpreter that runs the notebook runner (and so the kernels).""",
    )
    kill_grace = Float(
        10.0,
        config=True,
        help="""Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.""",
    )

    max_running = Integer(
        config=True,
        help="""The most jobs that run at once on this machine (default: its CPU count); the
        others wait QUEUED until one ends. Fifty kernels started at once on a small machine
        time out, and starve the hub and the users' servers.""",
    )
    run_as_os_user = Bool(
        False,
        config=True,
        help="""Run each job as its owner's OS account (os_user_prefix + name, made if
        missing, as the single-machine hub's spawner does), never as the jobs service's own
        user. Needs the service to run as root. The single-machine hub turns it on unless it
        runs as a --demo.""",
    )
    os_user_prefix = Unicode(
        DEFAULT_PREFIX,
        config=True,
        help="""Prefix of the OS account names; the same as LocalGPUSpawner.os_user_prefix.""",
    )
    nice = Integer(
        10,
        config=True,
        help="""Scheduling niceness of the job processes (0-19): jobs are batch work, so the
        kernel gives the hub, the proxy and the users' notebooks the CPU first.""",
    )

    @default("max_running")
    def _max_running(self) -> int:
        return os.cpu_count() or 1

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._children: dict[str, subprocess.Popen] = {}
        self._cancelled_at: dict[str, float] = {}  # job id -> monotonic time of the SIGTERM

    def root(self, owner: str) -> Path:
        return Path(self.storage_root_template.format(username=owner)).resolve()

    def job_dir(self, job: JobRecord) -> Path:
        return self.root(job.owner) / Path(job.snapshot_path).parent

    def _status(self, job: JobRecord) -> dict:
        try:
            return json.loads((self.job_dir(job) / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    async def start(self, job: JobRecord, launch: Launch) -> str:
        root = self.root(job.owner)
        job_dir = self.job_dir(job)
        # Run where the notebook lives, so its relative paths work as they do in Lab.
        cwd = (root / Path(job.input_path).parent).resolve()
        if not cwd.is_relative_to(root) or not cwd.is_dir():
            cwd = root
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        env.update(job.environment)
        env.update(launch.slice_environment)
        env.update({"HOME": str(root), "AI_CONSOLE_JOB_ID": job.job_id})
        as_user: dict = {}
        if self.run_as_os_user:
            account = os_user_name(job.owner, self.os_user_prefix)
            try:
                entry = await asyncio.to_thread(ensure_os_user, account, root)
            except OSUserError as err:
                raise RuntimeError(str(err)) from None
            env.update({"USER": account, "LOGNAME": account})
            # The owner's uid and group only: none of the service's supplementary groups.
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        process = subprocess.Popen(
            # `nice` execs the runner, so the pid recorded is the runner's.
            [
                "nice",
                "-n",
                str(self.nice),
                self.python,
                "-m",
                "server_extension.runner",
                str(job_dir),
            ],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: survives us, killed as a group
            **as_user,
        )
        self._children[job.job_id] = process
        return json.dumps({"pid": process.pid, "start": _process_start(process.pid)})

    def _ref(self, job: JobRecord) -> tuple[int | None, str | None]:
        try:
            ref = json.loads(job.backend_ref or "{}")
        except ValueError:
            return None, None
        return ref.get("pid"), ref.get("start")

    async def status_of(self, job: JobRecord) -> Observation:
        pid, start = self._ref(job)
        child = self._children.get(job.job_id)
        if child is not None and child.poll() is not None:
            self._children.pop(job.job_id, None)  # reaped; its status file tells the rest
        status = self._status(job)
        attempts = status.get("attempt")
        if pid is not None and _alive(pid, start):
            if job.timeout_seconds and job.start_time:
                # The runner stops itself at the timeout; this is the guard if it cannot.
                late = time.time() * 1000 - job.start_time - job.timeout_seconds * 1000
                if late > self.kill_grace * 1000:
                    self._signal(pid, signal.SIGKILL)
            cancelled_at = self._cancelled_at.get(job.job_id)
            if cancelled_at is not None and time.monotonic() - cancelled_at > self.kill_grace:
                self._signal(pid, signal.SIGKILL)  # it did not stop when asked
            state = Status.STOPPING if job.state is Status.STOPPING else Status.IN_PROGRESS
            return Observation(state, attempts=attempts)
        self._cancelled_at.pop(job.job_id, None)
        final = _FINAL.get(status.get("state", ""))
        if final is None:
            if job.state is Status.STOPPING:
                return Observation(Status.STOPPED, "cancelled", attempts=attempts)
            return Observation(
                Status.FAILED, "the job's process ended without finishing", attempts=attempts
            )
        if final is Status.FAILED and (attempts or 1) <= job.max_retries:
            # A failing notebook is retried with a new process (the runner counts attempts).
            ref = await self.start(job, Launch.of(job))
            return Observation(Status.IN_PROGRESS, attempts=attempts, backend_ref=ref)
        return Observation(final, _message(status), attempts=attempts)

    async def cancel(self, job: JobRecord) -> None:
        pid, start = self._ref(job)
        if pid is None or not _alive(pid, start):
            return
        self._cancelled_at.setdefault(job.job_id, time.monotonic())
        self._signal(pid, signal.SIGTERM)

    def _signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    async def read_file(self, job: JobRecord, relative: str) -> bytes | None:
        path = (self.job_dir(job) / relative).resolve()
        if not path.is_relative_to(self.job_dir(job).resolve()):
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None


def _message(status: dict) -> str | None:
    state = status.get("state")
    error = status.get("error") or {}
    if state == "timeout":
        return "stopped: the job ran past its timeout"
    if state == "failed" and error:
        cell = status.get("failed_cell")
        where = f" in cell {cell}" if cell is not None else ""
        return f"failed{where}: {error.get('ename', '')}: {error.get('evalue', '')}".strip()
    return state

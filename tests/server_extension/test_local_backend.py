"""The single-machine jobs backend's process handling, with real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from server_extension.jobs.backends.base import Launch
from server_extension.jobs.backends.local import LocalBackend
from server_extension.jobs.model import Status
from server_extension.jobs.store import JobRecord


def _stubborn_runner(tmp_path: Path) -> str:
    """An "interpreter" whose runner ignores SIGTERM, as a runner stuck in a kernel does."""
    script = tmp_path / "stubborn"
    script.write_text("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.1; done\n")
    script.chmod(0o755)
    return str(script)


def seen_dead(pid: int) -> bool:
    """The process is gone (or a zombie, waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_job_that_ignores_cancel_is_killed_after_the_grace_period(tmp_path: Path):
    backend = LocalBackend(
        storage_root_template=str(tmp_path / "{username}"),
        python=_stubborn_runner(tmp_path),
        kill_grace=0.5,
    )
    (tmp_path / "ann" / "jobs" / "j1").mkdir(parents=True)
    job = JobRecord(
        job_id="j1",
        owner="ann",
        input_path="nb.ipynb",
        snapshot_path="jobs/j1/input.ipynb",
        status=Status.IN_PROGRESS.value,
        max_retries=0,
        environment={},
    )

    async def scenario() -> list[tuple[float, Status]]:
        job.backend_ref = await backend.start(job, Launch())
        await asyncio.sleep(0.3)
        await backend.cancel(job)
        job.status = Status.STOPPING.value
        seen, began = [], time.monotonic()
        while time.monotonic() - began < 10:
            observed = await backend.status_of(job)
            seen.append((time.monotonic() - began, observed.status))
            if observed.status is not Status.STOPPING:
                break
            await asyncio.sleep(0.1)
        return seen

    try:
        seen = asyncio.run(scenario())
    finally:
        pid = json.loads(job.backend_ref or "{}").get("pid")
        if pid and not seen_dead(pid):
            os.killpg(pid, signal.SIGKILL)  # never leave a stubborn runner behind
    # Still stopping within the grace period, then killed: cancelled, and the process gone.
    assert seen[0][1] is Status.STOPPING
    assert seen[-1][1] is Status.STOPPED, seen
    assert 0.5 <= seen[-1][0] < 5
    assert seen_dead(pid)

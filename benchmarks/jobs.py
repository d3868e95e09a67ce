"""Jobs benchmark: Run notebook as job on the single-machine hub (local backend) versus
jupyter-scheduler 2.12.1 on a plain Jupyter server, same trivial notebook (``print(1)``).

Ours runs as a user does: ``ai-console up`` with simulated GPUs (``tests/e2e``), a logged-in
user with a running server, every call through the proxy to the user's server extension
(``/user/<name>/ai-console/jobs``), which snapshots the notebook and forwards to the jobs
service. jupyter-scheduler runs in its own virtual environment (created on first use and
cached, ``--scheduler-venv``), as ``jupyter server`` with token auth, its defaults untouched
(every job is a ``multiprocessing`` "spawn" process executing the notebook with nbconvert).
The hub is stopped before jupyter-scheduler runs, so each system has the machine to itself.

Run: ``python benchmarks/jobs.py --json``. The last line printed is one JSON object with

- ``submit_p50_ms``, ``submit_p99_ms``: latency of each of ``--submits`` (50) POSTs ``jobs``
  sent at once from as many threads (one session each), request to 201 response (p99 by
  nearest rank); ``submit_errors`` counts the responses that were not 201. The jobs are then
  waited for (not counted) so they do not disturb what follows.
- ``status_p50_ms``, ``status_p99_ms``: the same burst of GETs of jupyter_server's own
  ``api/status`` (no work behind it) through the same proxy and login: the floor a submit
  stands on here (a submit makes two more hops: to the jobs service, and from it to the hub).
- ``ours_e2e_s``, ``jupyter_scheduler_e2e_s``: one job, submit until ``GET jobs/<id>`` (polled
  every 0.1 s) says COMPLETED; best of ``--rounds`` (3) after a warm-up job.
- ``e2e_ratio``: ours / jupyter-scheduler (target <= 0.8).
- ``ours_concurrent10_s``, ``jupyter_scheduler_concurrent10_s``: ten jobs submitted at once,
  wall time until all ten are COMPLETED.
- ``cpu_cores``: ``os.cpu_count()``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub_config.up import free_port
from tests.e2e.conftest import LocalHub, stop_process_group
from tests.e2e.jobs_setup import FINISHED, JOBS_YAML, LabUser, notebook

ROOT = Path(__file__).resolve().parents[1]
SCHEDULER_VERSION = "2.12.1"
DEFAULT_VENV = Path.home() / ".cache" / "ai-console" / "bench-scheduler-venv"
NOTEBOOK = "bench.ipynb"
POLL = 0.1  # seconds between two looks at a job's status
JOB_TIMEOUT = 600.0  # the longest any phase waits for its jobs

Log = Callable[..., None]


class JobFailed(RuntimeError):
    """A benchmark job ended other than COMPLETED (the product or the setup is at fault)."""


def wait_all(get_status: Callable[[str], dict], ids: list[str], timeout: float) -> list[dict]:
    """Poll each unfinished job every ``POLL`` s until all are finished; returns their records."""
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids) - len(done)} of {len(ids)} jobs unfinished")
        for job_id in ids:
            if job_id not in done:
                job = get_status(job_id)
                if job["status"] in FINISHED:
                    done[job_id] = job
        if len(done) < len(ids):
            time.sleep(POLL)
    failed = [j for j in done.values() if j["status"] != "COMPLETED"]
    if failed:
        raise JobFailed(f"{len(failed)} jobs did not complete, e.g. {json.dumps(failed[0])}")
    return list(done.values())


def at_once(count: int, work: Callable[[int], object]) -> list:
    """Run ``work(i)`` for i < count in as many threads, released together by a barrier."""
    barrier = threading.Barrier(count)

    def task(i: int) -> object:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def kill_leftovers(marker: str) -> int:
    """SIGKILL processes whose command line or working folder is under ``marker`` (our temp
    folder): job runners and kernels run in their own sessions and outlive their parents."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd.startswith(marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


# --- ours: the single-machine hub ---------------------------------------------------------------


class Ours:
    """A logged-in student with a running server on `ai-console up`, submitting through it."""

    def __init__(self, user: LabUser) -> None:
        self.user = user
        self.xsrf = next(
            (
                c.value
                for c in user.client.session.cookies
                if c.name == "_xsrf" and "/user/" in c.path
            ),
            "",
        )

    def session(self) -> requests.Session:
        """A new session with the user's cookies (requests sessions are not thread-safe)."""
        session = requests.Session()
        session.cookies.update(self.user.client.session.cookies)
        session.headers["X-XSRFToken"] = self.xsrf
        return session

    def submit(self, session: requests.Session) -> tuple[requests.Response, float]:
        """POST jobs; returns the response and its latency in seconds."""
        body = {"input_path": NOTEBOOK, "flavor": "2C-4G", "output_formats": ["ipynb"]}
        started = time.perf_counter()
        response = session.post(f"{self.user.base}/jobs", json=body, timeout=120)
        return response, time.perf_counter() - started

    def job_id(self, response: requests.Response) -> str:
        if response.status_code != 201:
            raise JobFailed(f"POST jobs -> {response.status_code}: {response.text[:500]}")
        return response.json()["job_id"]

    def status(self, session: requests.Session) -> Callable[[str], dict]:
        def get(job_id: str) -> dict:
            response = session.get(f"{self.user.base}/jobs/{job_id}", timeout=60)
            response.raise_for_status()
            return response.json()

        return get

    def submit_burst(self, count: int) -> tuple[list[float], int]:
        """``count`` POSTs at once; returns the latencies of the 201s and how many were not."""
        sessions = [self.session() for _ in range(count)]
        results = at_once(count, lambda i: self.submit(sessions[i]))
        ids = [r.json()["job_id"] for r, _ in results if r.status_code == 201]
        errors = [r for r, _ in results if r.status_code != 201]
        for response in errors[:3]:
            print(f"submit -> {response.status_code}: {response.text[:300]}", file=sys.stderr)
        # Let them all finish before the next phase (not counted).
        if not ids:
            raise JobFailed(f"none of {count} submits was accepted")
        wait_all(self.status(sessions[0]), ids, JOB_TIMEOUT)
        return [s for r, s in results if r.status_code == 201], len(errors)

    def status_burst(self, count: int) -> list[float]:
        """``count`` GETs of jupyter_server's own ``api/status`` at once, through the same
        proxy and login: what one hop costs here before any work of ours."""
        sessions = [self.session() for _ in range(count)]
        url = f"{self.user.hub.url}/user/{self.user.name}/api/status"

        def get(i: int) -> float:
            started = time.perf_counter()
            sessions[i].get(url, timeout=60).raise_for_status()
            return time.perf_counter() - started

        return at_once(count, get)

    def e2e(self) -> float:
        session = self.session()
        started = time.perf_counter()
        job_id = self.job_id(self.submit(session)[0])
        wait_all(self.status(session), [job_id], JOB_TIMEOUT)
        return time.perf_counter() - started

    def concurrent(self, count: int) -> float:
        sessions = [self.session() for _ in range(count)]
        started = time.perf_counter()
        ids = at_once(count, lambda i: self.job_id(self.submit(sessions[i])[0]))
        wait_all(self.status(sessions[0]), ids, JOB_TIMEOUT)
        return time.perf_counter() - started


@contextlib.contextmanager
def local_hub(tmp: Path, log: Log) -> Iterator[Ours]:
    tmp.mkdir(parents=True)
    config = tmp / "ai-console.yaml"
    config.write_text(JOBS_YAML)
    hub = LocalHub(tmp, config)
    try:
        started = time.perf_counter()
        hub.start()
        user = LabUser(hub, "student1").start_server()
        user.write(NOTEBOOK, notebook("print(1)"))
        log(f"hub and student1's server up in {time.perf_counter() - started:.1f}s")
        yield Ours(user)
    except BaseException:
        with contextlib.suppress(OSError):
            print(f"--- hub log (tail) ---\n{hub.logs()[-6000:]}", file=sys.stderr)
        raise
    finally:
        hub.stop()


# --- jupyter-scheduler ----------------------------------------------------------------------


def scheduler_venv(venv: Path, log: Log) -> Path:
    """The venv with jupyter-scheduler and ipykernel, made if missing; returns its python."""
    python = venv / "bin" / "python"
    check = (
        "import ipykernel, jupyter_scheduler; "
        f"assert jupyter_scheduler.__version__ == {SCHEDULER_VERSION!r}"
    )
    if (
        python.exists()
        and subprocess.run([python, "-c", check], capture_output=True).returncode == 0
    ):
        return python
    log(f"installing jupyter-scheduler {SCHEDULER_VERSION} into {venv}")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            f"jupyter-scheduler=={SCHEDULER_VERSION}",
            "ipykernel",
        ],
        check=True,
    )
    subprocess.run([python, "-c", check], check=True)
    return python


class Scheduler:
    """jupyter-scheduler's REST API on a running Jupyter server."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"token {self.token}"
        return session

    def submit(self, session: requests.Session) -> str:
        body = {
            "input_uri": NOTEBOOK,
            "runtime_environment_name": "python3",
            "output_formats": ["ipynb"],
            "name": "bench",
        }
        response = session.post(f"{self.url}/scheduler/jobs", json=body, timeout=120)
        if response.status_code != 200:
            raise JobFailed(f"POST /scheduler/jobs -> {response.status_code}: {response.text}")
        return response.json()["job_id"]

    def status(self, session: requests.Session) -> Callable[[str], dict]:
        def get(job_id: str) -> dict:
            response = session.get(f"{self.url}/scheduler/jobs/{job_id}", timeout=60)
            response.raise_for_status()
            job = response.json()
            # A new job's record says STOPPED (the column's default) until its process marks
            # it IN_PROGRESS: without a start time it has not run yet.
            if job["status"] == "STOPPED" and job.get("start_time") is None:
                job["status"] = "QUEUED"
            return job

        return get

    def e2e(self) -> float:
        session = self.session()
        started = time.perf_counter()
        job_id = self.submit(session)
        wait_all(self.status(session), [job_id], JOB_TIMEOUT)
        return time.perf_counter() - started

    def concurrent(self, count: int) -> float:
        sessions = [self.session() for _ in range(count)]
        started = time.perf_counter()
        ids = at_once(count, lambda i: self.submit(sessions[i]))
        wait_all(self.status(sessions[0]), ids, JOB_TIMEOUT)
        return time.perf_counter() - started


@contextlib.contextmanager
def jupyter_scheduler(tmp: Path, python: Path, log: Log) -> Iterator[Scheduler]:
    """``jupyter server`` from the venv with jupyter-scheduler, its state all under ``tmp``."""
    root = tmp / "root"
    root.mkdir(parents=True)
    nbformat.write(notebook("print(1)"), root / NOTEBOOK)
    for folder in ("data", "runtime", "config", "ipython"):
        (tmp / folder).mkdir()  # the scheduler's SQLite cannot make its own folder
    port, token = free_port(), secrets.token_hex(16)
    bin_dir = python.parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV"))},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        # The scheduler's SQLite database and staging area live in the data dir.
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "IPYTHONDIR": str(tmp / "ipython"),
    }
    argv = [
        bin_dir / "jupyter-server", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    server_log = tmp / "jupyter-server.log"
    with server_log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    scheduler = Scheduler(f"http://127.0.0.1:{port}", token)
    try:
        started, deadline = time.perf_counter(), time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("jupyter server did not come up")
            if "extension failed loading" in server_log.read_text():
                raise RuntimeError("jupyter-scheduler failed to load")
            with contextlib.suppress(requests.ConnectionError):
                if scheduler.session().get(f"{scheduler.url}/scheduler/config", timeout=5).ok:
                    break
            time.sleep(0.3)
        log(f"jupyter server with jupyter-scheduler up in {time.perf_counter() - started:.1f}s")
        yield scheduler
    except BaseException:
        print(
            f"--- jupyter server log (tail) ---\n{server_log.read_text()[-6000:]}", file=sys.stderr
        )
        raise
    finally:
        stop_process_group(process)


# --- the run ----------------------------------------------------------------------------------


def best_e2e(system: Ours | Scheduler, rounds: int, label: str, log: Log) -> float:
    log(f"{label} warm-up: {system.e2e():.2f}s")
    times = []
    for i in range(rounds):
        times.append(system.e2e())
        log(f"{label} e2e round {i}: {times[-1]:.2f}s")
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    parser.add_argument("--submits", type=int, default=50, help="concurrent POSTs (phase 1)")
    parser.add_argument("--rounds", type=int, default=3, help="timed end-to-end runs, each system")
    parser.add_argument("--concurrent", type=int, default=10, help="jobs submitted at once")
    parser.add_argument("--scheduler-venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    log: Log = (lambda *a: None) if args.json else print

    python = scheduler_venv(args.scheduler_venv, log)
    tmp = Path(tempfile.mkdtemp(prefix="ai-console-bench-jobs-"))
    try:
        with local_hub(tmp / "ours", log) as ours:
            latencies, errors = ours.submit_burst(args.submits)
            log(f"{len(latencies)} submits: p50 {statistics.median(latencies) * 1000:.0f} ms")
            floor = ours.status_burst(args.submits)
            log(f"{args.submits} api/status at once: p99 {nearest_rank(floor, 0.99) * 1000:.0f} ms")
            ours_e2e = best_e2e(ours, args.rounds, "ours", log)
            ours_concurrent = ours.concurrent(args.concurrent)
            log(f"ours {args.concurrent} at once: {ours_concurrent:.2f}s")
        kill_leftovers(str(tmp / "ours"))
        with jupyter_scheduler(tmp / "scheduler", python, log) as scheduler:
            theirs_e2e = best_e2e(scheduler, args.rounds, "jupyter-scheduler", log)
            theirs_concurrent = scheduler.concurrent(args.concurrent)
            log(f"jupyter-scheduler {args.concurrent} at once: {theirs_concurrent:.2f}s")
    finally:
        kill_leftovers(str(tmp))
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    result = {
        "cpu_cores": os.cpu_count(),
        "submits": args.submits,
        "submit_errors": errors,
        "submit_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "submit_p99_ms": round(nearest_rank(latencies, 0.99) * 1000, 1),
        "status_p50_ms": round(statistics.median(floor) * 1000, 1),
        "status_p99_ms": round(nearest_rank(floor, 0.99) * 1000, 1),
        "ours_e2e_s": round(ours_e2e, 3),
        "jupyter_scheduler_e2e_s": round(theirs_e2e, 3),
        "e2e_ratio": round(ours_e2e / theirs_e2e, 3),
        f"ours_concurrent{args.concurrent}_s": round(ours_concurrent, 3),
        f"jupyter_scheduler_concurrent{args.concurrent}_s": round(theirs_concurrent, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

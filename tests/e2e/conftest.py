"""Fixtures that run real hubs: `ai-console up` as its own process, on a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hub_config.up import free_port
from spawner.os_users import os_user_name

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "student-pass-123"
ADMIN_PASSWORD = "admin-pass-0123456789-0123456789-xyz"


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hub exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not up after {timeout}s:\n{log.read_text()[-4000:]}")


def stop_process_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class ProcessGroup:
    """A test's server started as its own process group (``self.process``)."""

    process: subprocess.Popen | None = None

    def kill(self) -> None:
        """The whole group dies at once, as in a node failure."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)


class LocalHub:
    """`ai-console up` as its own process group; can be killed and started again."""

    def __init__(self, tmp_path: Path, hub_yaml: Path | None, demo: bool = True) -> None:
        """``demo``: the shared-password demo (PASSWORD for everyone); without, accounts of
        their own (ADMIN_PASSWORD for the platform admins; see :meth:`password_of`)."""
        self.demo = demo
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = tmp_path / "data"
        self._accounts: set[str] = set()
        if not demo:
            # Users' homes are inside the data directory and their accounts must pass through
            # to them: not under pytest's tmp_path, which only root may enter.
            self.data = Path(tempfile.mkdtemp(prefix="ai-console-data-", dir="/tmp")) / "data"
            self.data.parent.chmod(0o711)
        self.log = tmp_path / "hub.log"
        self.hub_yaml = hub_yaml
        self.process: subprocess.Popen | None = None
        #: More `ai-console up` options, e.g. ["--agent-url", url].
        self.extra_args: list[str] = []

    def start(self) -> None:
        env = {**os.environ, "PATH": f"{ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}"}
        argv = [
            sys.executable, "-m", "hub_config.cli", "up",
            "--simulate-gpus", "gpu-01=RTX3090:24576x1,gpu-02=A100:81920x1",
            "--port", str(self.port), "--data-dir", str(self.data),
            *(["--demo", "--password", PASSWORD] if self.demo else []),
            "--admin-password", ADMIN_PASSWORD,
            *(["--config", str(self.hub_yaml)] if self.hub_yaml else []),
            *self.extra_args,
        ]  # fmt: skip
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_http(f"{self.url}/hub/login", self.process, self.log)

    def kill_hub_only(self) -> None:
        """SIGKILL the hub process alone: its proxy and the users' servers keep running."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)

    def logs(self) -> str:
        return self.log.read_text()

    def sign_up(self, name: str, password: str) -> str:
        """Sign up at /hub/signup as a student does; returns the page's text."""
        client = requests.Session()
        client.get(f"{self.url}/hub/signup", timeout=30)
        xsrf = next((c.value for c in client.cookies if c.name == "_xsrf"), "")
        fields = {"username": name, "signup_password": password, "_xsrf": xsrf}
        fields["signup_password_confirmation"] = password
        return client.post(f"{self.url}/hub/signup", data=fields, timeout=30).text

    def password_of(self, name: str) -> str:
        """What ``name`` logs in with: the demo's shared password, else an account of its own,
        signed up and approved by the platform admin the first time it is asked for."""
        if self.demo or name in self._accounts:
            return PASSWORD
        self.sign_up(name, PASSWORD)
        admin = requests.Session()
        admin.get(f"{self.url}/hub/login", timeout=30)
        xsrf = next((c.value for c in admin.cookies if c.name == "_xsrf"), "")
        login = {"username": "admin", "password": ADMIN_PASSWORD, "_xsrf": xsrf}
        admin.post(f"{self.url}/hub/login", data=login, timeout=30).raise_for_status()
        admin.get(f"{self.url}/hub/authorize/{name}", timeout=30).raise_for_status()
        self._accounts.add(name)
        return PASSWORD

    def remove(self) -> None:
        """Stop, and remove the OS accounts and the data folder it made on this machine."""
        self.stop()
        if not self.demo:
            for name in self._accounts:
                subprocess.run(["userdel", os_user_name(name)], capture_output=True)
            shutil.rmtree(self.data.parent, ignore_errors=True)


@pytest.fixture
def hub_yaml() -> Path | None:
    """The admin YAML the local hub runs with (None: the shipped example)."""
    return None


@pytest.fixture
def local_hub(tmp_path: Path, hub_yaml: Path | None) -> Iterator[LocalHub]:
    """`ai-console up` with simulated GPUs and the shipped example YAML (or ``hub_yaml``)."""
    hub = LocalHub(tmp_path, hub_yaml)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()

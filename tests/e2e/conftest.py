"""Fixtures that run real hubs: `ai-console up` as its own process, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "student-pass-123"
ADMIN_PASSWORD = "admin-pass-0123456789-0123456789-xyz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class LocalHub:
    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def logs(self) -> str:
        return self.log.read_text()


@pytest.fixture
def hub_yaml() -> Path | None:
    """The admin YAML the local hub runs with (None: the shipped example)."""
    return None


@pytest.fixture
def local_hub(tmp_path: Path, hub_yaml: Path | None) -> Iterator[LocalHub]:
    """`ai-console up` with simulated GPUs and the shipped example YAML (or ``hub_yaml``)."""
    port = free_port()
    log = tmp_path / "hub.log"
    env = {**os.environ, "PATH": f"{ROOT / 'node_modules' / '.bin'}:{os.environ['PATH']}"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hub_config.cli",
                "up",
                "--simulate-gpus",
                "gpu-01=RTX3090:24576x1,gpu-02=A100:81920x1",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                "--password",
                PASSWORD,
                "--admin-password",
                ADMIN_PASSWORD,
                *(["--config", str(hub_yaml)] if hub_yaml else []),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/hub/login", process, log)
        yield LocalHub(url, process, log)
    finally:
        stop_process_group(process)

"""What ``ai-console up`` checks before it starts a hub, and how it tells the teacher.

One hub per data directory (a lock held while the hub runs), a port nobody else holds, the
admin's YAML valid, whether this machine has a GPU; the login is printed once the hub answers,
and kept in the data directory for ``ai-console up --show-login``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

LOCK_FILE = "hub.lock"
LOGIN_FILE = "login.txt"
PROXY_PID_FILE = "jupyterhub-proxy.pid"


class StartRefused(Exception):
    """One line saying why the hub cannot start here."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold the data directory for this process's life (the kernel drops the lock when the
    process ends, however it ends). Raises :class:`StartRefused` if another hub holds it."""
    handle = open(data_dir / LOCK_FILE, "a+")  # noqa: SIM115  (held until the process exits)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StartRefused(
            f"{data_dir} is in use by a running hub (pid {holder}); stop it first, or use "
            "another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def check_port(ip: str, port: int, data_dir: Path) -> None:
    """Refuse a port someone else listens on. This data directory's own proxy, left running
    by a hub that died, is fine: the new hub replaces it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
            return
        except OSError:
            pass
    if _own_proxy_alive(data_dir):
        return
    raise StartRefused(
        f"port {port} on {ip} is in use by another program (another hub?); stop it, or use "
        "another --port"
    )


def _own_proxy_alive(data_dir: Path) -> bool:
    try:
        pid = int((data_dir / PROXY_PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def write_login(data_dir: Path, text: str) -> Path:
    """The login lines, readable by the hub's own user only."""
    path = data_dir / LOGIN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)  # an older file may have had wider permissions
    return path


def read_login(data_dir: Path) -> str:
    path = data_dir / LOGIN_FILE
    if not path.is_file():
        raise StartRefused(f"no hub has started in {data_dir} yet (no {LOGIN_FILE})")
    return path.read_text()


def print_when_up(url: str, text: str, timeout: float = 600) -> threading.Thread:
    """Print ``text`` once the hub at ``url`` answers, after its start-up logs."""

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}hub/health", timeout=2):
                    print(text, end="", flush=True)
                    return
            except OSError:
                time.sleep(0.5)

    thread = threading.Thread(target=wait, name="ai-console-banner", daemon=True)
    thread.start()
    return thread

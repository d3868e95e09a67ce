"""What ``ai-console up`` checks before it starts a hub, and how it tells the teacher.

One hub per data directory (a lock held while the hub runs), a port nobody else holds, the
admin's YAML valid, whether this machine has a GPU, and (without ``--demo``) what accounts of
their own need: root, and an interpreter every account can read. The data directory is then
made private (users pass through it to their homes only); the login is printed once the hub
answers, and kept in the data directory for ``ai-console up --show-login``.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import stat
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO

LOCK_FILE = "hub.lock"
LOGIN_FILE = "login.txt"
ADMIN_PASSWORD_FILE = "admin-password"
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


def private_data_dir(data_dir: Path, homes: Path) -> None:
    """The data directory as users' own accounts may see it: they pass through it to their
    homes (mode 0711) but list and read nothing of the hub's (databases, secrets: 0600)."""
    for folder in (data_dir, homes):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o711)
    for entry in data_dir.iterdir():
        if entry.is_file() and not entry.is_symlink():
            os.chmod(entry, 0o600)


def accounts_refusal(password_given: bool, data_dir: Path, package_dir: Path) -> str | None:
    """Why the hub cannot give users accounts of their own here (one line), or None."""
    if password_given:
        return (
            "--password is the shared password of --demo; without --demo every user signs up "
            "with a password of their own"
        )
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return (
            "accounts of their own run each user's server as that user's OS account, which "
            "needs root: run it as root (sudo), or pass --demo for a shared-password demo "
            "where every server runs as you"
        )
    needed = [Path(sys.executable), Path(sys.prefix), package_dir.parent]
    private = unreadable_for_users([*needed, data_dir.resolve().parent])  # homes are inside
    if private is not None:
        return (
            f"each user's server runs as their own OS account, which cannot read {private}; "
            "install AI Console where every account can read it (a virtual environment made "
            "from /usr/bin/python3 outside a private home, as `make install` does), or pass "
            "--demo"
        )
    return None


def unreadable_for_users(paths: Iterable[Path]) -> Path | None:
    """The first folder (or file) on the way to ``paths`` that other OS accounts cannot pass
    (or read), or None: users' servers run as their own accounts and need the interpreter, its
    libraries and this package."""
    for path in paths:
        path = path.resolve()
        for step in (*reversed(path.parents), path):
            mode = step.stat().st_mode
            needed = stat.S_IXOTH if step.is_dir() else stat.S_IROTH
            if not mode & needed:
                return step
    return None


def saved_admin_password(data_dir: Path, given: str | None) -> str:
    """The platform admins' first password: ``given``, else the one saved by an earlier start
    (their accounts were made with it), else a new one; kept in a file only root reads."""
    path = data_dir / ADMIN_PASSWORD_FILE
    if given is None and path.is_file():
        saved = path.read_text().strip()
        if saved:
            return saved
    password = given or secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


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

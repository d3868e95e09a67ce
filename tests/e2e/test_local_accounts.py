"""The single-machine hub's default, as a class meets it: accounts of their own, approved by a
platform admin, and each user's server as its own OS account, so one student reads neither
another's files nor the hub's secrets (issue 8, point 17). `--demo` keeps the shared password
and says so (tests/e2e/test_local_up.py)."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from spawner.os_users import os_user_name

from .conftest import ADMIN_PASSWORD, LocalHub
from .hubclient import HubClient

STUDENT_PASSWORD = "my-own-pass-4821"


@pytest.fixture
def accounts_hub(tmp_path: Path) -> Iterator[LocalHub]:
    hub = LocalHub(tmp_path, None, demo=False)
    try:
        hub.start()
        yield hub
    finally:
        hub.remove()
        subprocess.run(["userdel", os_user_name("student1")], capture_output=True)


def as_user(account: str, code: str) -> subprocess.CompletedProcess:
    """Python run as ``account``: what that user's kernel can do."""
    return subprocess.run(
        ["runuser", "-u", account, "--", "python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def server_pids(user: str) -> list[int]:
    """Processes whose environment says they are ``user``'s server."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"JUPYTERHUB_USER={user}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_students_have_accounts_of_their_own_and_servers_as_their_own_os_user(
    accounts_hub: LocalHub,
):
    hub = accounts_hub
    # Nobody takes the admin's name by signing up first: the account was made at start.
    assert "already in use" in hub.sign_up("admin", "attacker-pass-999")
    assert HubClient(hub.url).login("admin", "attacker-pass-999").status_code != 302
    # Names the YAML does not list get no account at all.
    hub.sign_up("mallory", "mallory-pass-123")
    assert HubClient(hub.url).login("mallory", "mallory-pass-123").status_code != 302

    hub.sign_up("student1", STUDENT_PASSWORD)
    student = HubClient(hub.url)
    assert student.login("student1", STUDENT_PASSWORD).status_code != 302, "approved by name"
    admin = HubClient(hub.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    admin.session.get(f"{hub.url}/hub/authorize/student1", timeout=30).raise_for_status()
    assert student.login("student1", STUDENT_PASSWORD).status_code == 302
    # The shared password of the demo is no way in.
    assert HubClient(hub.url).login("student2", "student-pass-123").status_code != 302

    assert student.spawn("student1", "pytorch-quarter-3090").status_code == 302
    server = student.wait_for_server("student1")
    assert server.get("ready"), hub.logs()[-3000:]

    account = pwd.getpwnam(os_user_name("student1"))
    pids = server_pids("student1")
    assert pids and {uid_of(pid) for pid in pids} == {account.pw_uid}
    home = hub.data / "users" / "student1"
    assert home.stat().st_uid == account.pw_uid
    assert stat.S_IMODE(home.stat().st_mode) == 0o700

    # What that student's code can reach: its home, not the hub's secrets or database.
    hub_pid = hub.process.pid
    probe = as_user(
        account.pw_name,
        "import os, sys\n"
        f"os.chdir({str(home)!r}); open('mine.txt', 'w').write('ok')\n"
        "denied = []\n"
        f"for path in ['/proc/{hub_pid}/environ', {str(hub.data / 'jupyterhub.sqlite')!r},\n"
        f"             {str(hub.data / 'admin-password')!r}, {str(hub.data / 'login.txt')!r}]:\n"
        "    try:\n"
        "        open(path, 'rb').read()\n"
        "    except PermissionError:\n"
        "        denied.append(path)\n"
        "try:\n"
        f"    os.listdir({str(hub.data)!r})\n"
        "except PermissionError:\n"
        "    denied.append('listing')\n"
        "print(len(denied))\n",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "5", probe.stdout + probe.stderr
    assert os.stat(home / "mine.txt").st_uid == account.pw_uid

"""OS accounts of the single-machine hub's users: names that are valid and never collide, no
server as a system account, a private home each."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from hub_config.up_checks import saved_admin_password, unreadable_for_users
from spawner.os_users import MAX_NAME, OSUserError, ensure_os_user, os_user_name


@pytest.mark.parametrize(
    ("hub_name", "expected"),
    [("student1", "aic-student1"), ("t_a-2", "aic-t_a-2")],
)
def test_plain_names_keep_their_name(hub_name: str, expected: str) -> None:
    assert os_user_name(hub_name) == expected


def test_names_that_must_change_never_share_an_account() -> None:
    names = ["a.b", "a-b", "A-b", "ünï", "x" * 40, "x" * 41, "root"]
    accounts = [os_user_name(n) for n in names]
    assert len(set(accounts)) == len(names)
    for account in accounts:
        assert len(account) <= MAX_NAME and account.startswith("aic-")
        assert all(c.isascii() and (c.isalnum() or c in "-_") for c in account), account
    assert os_user_name("root") == "aic-root"  # never the system's root


def test_a_system_account_is_never_used(tmp_path: Path) -> None:
    with pytest.raises(OSUserError, match="system account"):
        ensure_os_user("daemon", tmp_path / "home")


def test_an_account_is_made_once_with_a_private_home(tmp_path: Path) -> None:
    name = os_user_name(f"unit-{os.getpid()}")
    home = tmp_path / "home"
    try:
        made = ensure_os_user(name, home)
        again = ensure_os_user(name, home)  # a second start: the same account
        assert made.pw_uid == again.pw_uid == pwd.getpwnam(name).pw_uid > 999
        assert home.stat().st_uid == made.pw_uid
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_a_private_folder_on_the_way_is_found() -> None:
    # Under /tmp itself: pytest's tmp_path is inside a folder only root may pass.
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        private = base / "private"
        private.mkdir(mode=0o700)
        (private / "python").write_text("")
        assert unreadable_for_users([private / "python"]) == private
        private.chmod(0o755)
        (private / "python").chmod(0o600)
        assert unreadable_for_users([private / "python"]) == private / "python"
        (private / "python").chmod(0o755)
        assert unreadable_for_users([private / "python"]) is None
    finally:
        shutil.rmtree(base)


def test_the_admin_password_survives_a_restart(tmp_path: Path) -> None:
    first = saved_admin_password(tmp_path, None)
    assert saved_admin_password(tmp_path, None) == first  # the accounts were made with it
    assert saved_admin_password(tmp_path, "given-one") == "given-one"
    assert stat.S_IMODE((tmp_path / "admin-password").stat().st_mode) == 0o600

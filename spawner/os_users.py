"""Each user of the single-machine hub as an OS account of their own.

The hub runs as root and creates ``<prefix><name>`` (``aic-alice``) the first time that user's
server or job starts: its own group, a home of its own (mode 0700), no password (nobody logs in
to the machine with it). The user's server and jobs then run with that uid, so one student
reads neither another's files nor the hub's environment (``/proc/<pid>/environ`` is readable
only by its own uid) nor its database.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import subprocess
from pathlib import Path

DEFAULT_PREFIX = "aic-"
#: Linux user names are at most 32 characters (useradd).
MAX_NAME = 32
#: Accounts at or below this uid are the system's (Debian's SYS_UID_MAX): never run a user
#: server as one, whatever its name.
SYSTEM_UID_MAX = 999
_INVALID = re.compile(r"[^a-z0-9_-]")


class OSUserError(Exception):
    """The OS account cannot be made or used; the text says why, for the user's spawn page."""


def os_user_name(hub_name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The account name for a hub user: lowercase letters, digits, ``-`` and ``_``, at most 32
    characters. Where the hub name had to change to fit, a hash of it is appended, so two hub
    names never share one account (``a.b`` and ``a-b``)."""
    base = _INVALID.sub("-", hub_name.lower())
    name = prefix + base
    if base == hub_name and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(hub_name.encode("utf-8")).hexdigest()[:8]
    return f"{name[: MAX_NAME - len(digest) - 1]}-{digest}"


def ensure_os_user(name: str, home: Path, comment: str = "") -> pwd.struct_passwd:
    """The account ``name`` with ``home`` (made, owned by it, mode 0700); created if missing.

    Raises :class:`OSUserError` when it cannot be created (not root, no ``useradd``) or when the
    name belongs to a system account.
    """
    entry = _lookup(name)
    if entry is None:
        command = [
            "useradd",
            "--home-dir",
            str(home),
            "--no-create-home",
            "--user-group",
            "--shell",
            "/bin/bash",
            "--comment",
            comment or "AI Console user",
            name,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise OSUserError(f"cannot create the account {name}: {err}") from None
        entry = _lookup(name)  # a second start for the same user may have made it meanwhile
        if entry is None:
            why = done.stderr.strip() or f"useradd exited with {done.returncode}"
            raise OSUserError(f"cannot create the account {name}: {why}")
    if entry.pw_uid <= SYSTEM_UID_MAX:
        raise OSUserError(f"{name} is a system account (uid {entry.pw_uid}); no server runs as it")
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)
    return entry


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None

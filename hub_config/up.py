"""``ai-console up``: the whole hub on one machine (the embedded default).

JupyterHub with the local GPU spawner, configurable-http-proxy, SQLite and the admin's
``ai-console.yaml`` (the shipped example unless told otherwise), on 127.0.0.1:8000. GPUs come
from NVML; ``--simulate-gpus`` declares simulated ones for trying profiles without a GPU.
Logins use one generated shared password for users, and a second one for the platform admins
named in the YAML, printed once the hub answers and kept (mode 0600) in the data directory for
``--show-login``. Before anything starts it checks the YAML, that no other hub uses the data
directory and that the port is free (:mod:`hub_config.up_checks`).
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from gpu_fraction.errors import InventoryError
from gpu_fraction.simulated import SIMULATED_SPEC_HELP, simulated

from . import settings_env
from .loader import ConfigError, load_config
from .up_checks import (
    StartRefused,
    accounts_refusal,
    check_port,
    lock_data_dir,
    print_when_up,
    private_data_dir,
    read_login,
    saved_admin_password,
    write_login,
)

PACKAGE_DIR = Path(__file__).resolve().parent
HUB_CONFIG_FILE = PACKAGE_DIR / "jupyterhub_config.py"
EXAMPLE_CONFIG = PACKAGE_DIR / "examples" / "ai-console.yaml"


def find_proxy() -> str | None:
    """configurable-http-proxy: $AI_CONSOLE_PROXY, then PATH, then node_modules up from here."""
    explicit = os.environ.get(settings_env.PROXY)
    if explicit:
        return explicit
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    for folder in [Path.cwd(), *PACKAGE_DIR.parents]:
        candidate = folder / "node_modules" / ".bin" / "configurable-http-proxy"
        if candidate.exists():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai-console up",
        description="Run the AI Console hub on this machine (local processes, SQLite).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        default=str(EXAMPLE_CONFIG),
        help="the admin's ai-console.yaml (courses, images, GPU profiles, roles)",
    )
    parser.add_argument("--ip", default="127.0.0.1", help="address the hub listens on")
    parser.add_argument("--port", type=int, default=8000, help="port the hub listens on")
    parser.add_argument(
        "--hub-port",
        type=int,
        default=0,
        help="port of the hub's internal API (0: a free one, so several hubs can run)",
    )
    parser.add_argument(
        "--simulate-gpus",
        metavar="SPEC",
        help=f"declare simulated GPUs instead of reading NVML; {SIMULATED_SPEC_HELP}",
    )
    parser.add_argument(
        "--agent-url",
        action="append",
        default=[],
        metavar="URL",
        help="a node agent's /metrics (e.g. http://127.0.0.1:9410/metrics of `ai-console agent` "
        "on this machine): its live GPU figures and idle slices appear on the admin page; "
        "may be given more than once",
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get(settings_env.DATA_DIR, "ai-console-data"),
        help="where the SQLite database, cookie secret and logs live",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="a demo, not for a class: everyone logs in with one shared password and every "
        "server runs as this machine's user running the hub, so any user can read the others' "
        "files and the hub's secrets. Without it, users sign up with passwords of their own, a "
        "platform admin approves them, and each server runs as its user's own OS account "
        "(which needs root)",
    )
    parser.add_argument(
        "--password",
        help="--demo only: the shared password for users (at least 8 characters); generated "
        "if not given",
    )
    parser.add_argument(
        "--admin-password",
        help="password for the platform admins (at least 32 characters); generated if not "
        "given. Without --demo it is their accounts' first password, kept across restarts",
    )
    parser.add_argument("--debug", action="store_true", help="verbose hub logs")
    parser.add_argument(
        "--show-login",
        action="store_true",
        help="print the address and passwords of the hub running in --data-dir, and exit",
    )
    return parser


def fail(message: str) -> int:
    print(f"ai-console up: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.show_login:
        try:
            print(read_login(Path(args.data_dir).resolve()), end="")
        except StartRefused as err:
            return fail(str(err))
        return 0
    config = Path(args.config)
    if not config.is_file():
        print(f"ai-console up: --config: no such file: {config}", file=sys.stderr)
        return 2
    try:
        loaded = load_config(config)  # before anything starts, and before any login is printed
    except ConfigError as err:
        return fail(str(err))
    if args.simulate_gpus:
        try:
            simulated(args.simulate_gpus)
        except InventoryError as err:
            print(f"ai-console up: --simulate-gpus: {err.message}", file=sys.stderr)
            return 2
    if not args.demo:
        refusal = accounts_refusal(args.password is not None, Path(args.data_dir), PACKAGE_DIR)
        if refusal:
            return fail(refusal)
    if args.password is not None and len(args.password) < 8:
        print("ai-console up: --password: use at least 8 characters", file=sys.stderr)
        return 2
    if args.admin_password is not None and len(args.admin_password) < 32:
        print("ai-console up: --admin-password: use at least 32 characters", file=sys.stderr)
        return 2
    proxy = find_proxy()
    if proxy is None:
        print(
            "ai-console up: configurable-http-proxy not found; install it with "
            "`npm install configurable-http-proxy@4` or set AI_CONSOLE_PROXY",
            file=sys.stderr,
        )
        return 2
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = lock_data_dir(data_dir)  # held until this process ends
        check_port(args.ip, args.port, data_dir)
    except StartRefused as err:
        return fail(str(err))
    url = f"http://{args.ip}:{args.port}/"
    if args.demo:
        password = args.password or secrets.token_urlsafe(12)
        admin_password = args.admin_password or secrets.token_urlsafe(32)
        login = demo_login(url, config.name, password, admin_password)
    else:
        # Only root passes into the data directory's files; users pass through to their homes.
        os.umask(0o077)
        private_data_dir(data_dir, data_dir / "users")
        password = ""
        admin_password = saved_admin_password(data_dir, args.admin_password)
        login = accounts_login(url, config.name, loaded.platform_admins, admin_password)
    os.environ.update(
        {
            settings_env.MODE: "local",
            settings_env.CONFIG: str(config.resolve()),
            settings_env.DATA_DIR: str(data_dir),
            settings_env.PROXY: proxy,
            settings_env.PASSWORD: password,
            settings_env.ADMIN_PASSWORD: admin_password,
            settings_env.SIMULATE_GPUS: args.simulate_gpus or "",
            settings_env.AGENT_URLS: " ".join(args.agent_url),
            settings_env.DEMO: "1" if args.demo else "",
        }
    )
    saved = write_login(data_dir, login)
    banner = (
        login
        + no_gpu_note(args.simulate_gpus)
        + (
            f"AI Console: this login is kept in {saved}; print it again with "
            f"`ai-console up --show-login --data-dir {args.data_dir}`\n"
        )
    )
    print(f"AI Console: starting; the login follows once the hub answers at {url}", flush=True)
    local = args.ip if args.ip not in ("0.0.0.0", "", "::") else "127.0.0.1"
    print_when_up(f"http://{local}:{args.port}/", banner)
    from jupyterhub.app import main as hub_main

    hub_port = args.hub_port or free_port()
    hub_argv = [
        "-f",
        str(HUB_CONFIG_FILE),
        f"--ip={args.ip}",
        f"--port={args.port}",
        f"--JupyterHub.hub_port={hub_port}",
        # The proxy's own API port too, so a second hub on this machine does not collide.
        f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{free_port()}",
    ]
    if args.debug:
        hub_argv.append("--debug")
    os.chdir(data_dir)
    try:
        hub_main(argv=hub_argv)
    finally:
        lock.close()
    return 0


def demo_login(url: str, config_name: str, password: str, admin_password: str) -> str:
    """The demo's login lines, which say plainly what the demo is not."""
    who = _this_user()
    return (
        f"AI Console: DEMO MODE (--demo): everyone shares one password and every server runs "
        f"as {who}, so any user can read the others' files and the hub's secrets. Not for a "
        f"class: without --demo each user has an account and an OS user of their own.\n"
        f"AI Console: open {url} and log in with any user name from {config_name} and the "
        f"password: {password}\n"
        f"AI Console: platform admins log in with the admin password: {admin_password}\n"
    )


def accounts_login(url: str, config_name: str, admins: Iterable[str], admin_password: str) -> str:
    """How the teacher and the students get in when each has an account of their own."""
    names = ", ".join(sorted(admins)) or "(none listed)"
    return (
        f"AI Console: open {url}; platform admins ({names}) log in with the password: "
        f"{admin_password} (each may change theirs at {url}hub/change-password)\n"
        f"AI Console: students sign up at {url}hub/signup with a user name from {config_name} "
        f"and a password of their own; a platform admin approves them at {url}hub/authorize\n"
        "AI Console: each user's server and jobs run as their own OS account (aic-<name>), "
        "with a private home under the data directory's users/ folder\n"
    )


def _this_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def no_gpu_note(simulate: str | None) -> str:
    """A sentence for the teacher when this machine has no GPU the hub can use."""
    if simulate:
        return ""
    from gpu_fraction.inventory import from_nvml

    inventory = from_nvml()
    if inventory.gpus:
        return ""
    return (
        f"AI Console: no NVIDIA GPU was found on this machine ({inventory.error or 'none'}). "
        "Students can start CPU-only profiles; GPU profiles will be refused. To try GPU "
        "profiles without a GPU, start again with --simulate-gpus gpu-01=RTX3090:24576x1.\n"
    )

"""`ai-console up` as a teacher meets it: one hub per data directory and port, a bad YAML
refused before anything starts, the login printed once the hub answers and kept for later,
and a plain sentence when the machine has no GPU."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_fraction.inventory import from_nvml
from hub_config.up import free_port

from .conftest import ADMIN_PASSWORD, PASSWORD, ROOT, LocalHub, stop_process_group, wait_http
from .hubclient import HubClient


def up(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env_path = f"{ROOT / 'node_modules' / '.bin'}"
    return subprocess.run(
        [sys.executable, "-m", "hub_config.cli", "up", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": f"{env_path}:/usr/bin:/bin"},
    )


def test_a_second_hub_on_the_same_data_dir_or_port_is_refused(local_hub: LocalHub, tmp_path):
    again = up("--demo", "--data-dir", str(local_hub.data), "--port", str(free_port()))
    assert again.returncode == 2, again.stdout + again.stderr
    assert "is in use by a running hub" in again.stderr and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    taken = up("--demo", "--data-dir", str(tmp_path / "other"), "--port", str(local_hub.port))
    assert taken.returncode == 2, taken.stdout + taken.stderr
    assert f"port {local_hub.port} on 127.0.0.1 is in use" in taken.stderr
    # The first hub, its proxy included, is untouched.
    assert HubClient(local_hub.url).login("student1", PASSWORD).status_code == 302


def test_a_bad_yaml_is_refused_before_anything_starts(tmp_path):
    config = tmp_path / "ai-console.yaml"
    config.write_text("profiles:\n  - display_name: X\n    image: [pytorch]\n")
    refused = up("--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert refused.returncode == 2
    assert "image" in refused.stderr and "Traceback" not in refused.stderr
    assert "password" not in refused.stdout  # no login printed for a hub that never ran
    assert not (tmp_path / "data").exists()


def test_the_login_comes_after_the_hub_is_up_and_again_on_demand(local_hub: LocalHub):
    log = local_hub.logs()
    deadline = time.monotonic() + 30
    while "platform admins log in" not in log:
        assert time.monotonic() < deadline, log[-3000:]
        time.sleep(0.3)
        log = local_hub.logs()
    assert log.index("JupyterHub is now running") < log.index("platform admins log in")
    assert "DEMO MODE (--demo): everyone shares one password" in log  # said, not hidden
    assert "no NVIDIA GPU" not in log  # simulated GPUs
    shown = up("--show-login", "--data-dir", str(local_hub.data))
    assert shown.returncode == 0 and PASSWORD in shown.stdout and ADMIN_PASSWORD in shown.stdout
    saved = local_hub.data / "login.txt"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


def test_without_a_gpu_the_teacher_is_told_what_works(tmp_path: Path):
    port = free_port()
    log = tmp_path / "hub.log"
    argv = [
        sys.executable, "-m", "hub_config.cli", "up", "--port", str(port),
        "--data-dir", str(tmp_path / "data"), "--demo", "--password", PASSWORD,
    ]  # fmt: skip
    env = {"PATH": f"{ROOT / 'node_modules' / '.bin'}:/usr/bin:/bin"}
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/hub/login", process, log)
        deadline = time.monotonic() + 30
        while "--show-login" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        stop_process_group(process)
    text = log.read_text()
    if from_nvml().gpus:
        assert "no NVIDIA GPU" not in text
    else:
        assert "no NVIDIA GPU was found on this machine" in text
        assert "GPU profiles will be refused" in text and "--simulate-gpus" in text


def test_accounts_of_their_own_need_root_and_say_so(tmp_path: Path):
    """Run by a teacher without root, the default refuses in one line and names the way out."""
    data = Path(tempfile.mkdtemp(dir="/tmp"))
    data.chmod(0o777)
    try:
        refused = subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-m", "hub_config.cli", "up",
             "--data-dir", str(data / "data"), "--port", str(free_port())],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        shutil.rmtree(data)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "needs root" in refused.stderr and "--demo" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_demo_mode_needs_asking_for_and_a_shared_password_alone_is_refused(tmp_path: Path):
    refused = up("--password", PASSWORD, "--data-dir", str(tmp_path / "data"))
    assert refused.returncode == 2
    assert "--password is the shared password of --demo" in refused.stderr
    assert not (tmp_path / "data").exists()

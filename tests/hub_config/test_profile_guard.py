"""A profile_list set in Python config after configure(c) stops the hub at start, saying where
the list belongs (z2jh's hub.extraConfig would otherwise replace the YAML's profiles)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_config.hub import EXAMPLE_CONFIG

EXTRA_CONFIG = """
from hub_config.hub import configure

c = get_config()  # noqa: F821
configure(c)
c.KubeSpawner.image = "quay.io/jupyter/minimal-notebook:latest"  # other settings are fine
{extra}
"""


def start_hub(tmp_path: Path, extra: str) -> subprocess.CompletedProcess:
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(EXTRA_CONFIG.format(extra=extra))
    env = {
        **os.environ,
        "AI_CONSOLE_MODE": "kubernetes",
        "AI_CONSOLE_CONFIG": str(EXAMPLE_CONFIG),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    # JupyterHub's own config loading, as its start runs it, without serving afterwards.
    load = (
        "import sys; from jupyterhub.app import JupyterHub; app = JupyterHub(); "
        "app.load_config_file(sys.argv[1]); print(app.config.KubeSpawner.image)"
    )
    return subprocess.run(
        [sys.executable, "-c", load, str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("section", ["KubeSpawner", "FractionalGPUKubeSpawner"])
def test_a_profile_list_in_extra_config_stops_the_hub_naming_where_it_belongs(
    tmp_path: Path, section: str
) -> None:
    done = start_hub(
        tmp_path, f'c.{section}.profile_list = [{{"display_name": "GPU", "slug": "gpu"}}]'
    )
    assert done.returncode != 0
    assert f"c.{section}.profile_list is set after AI Console's configure(c)" in done.stderr
    assert "Move the list under profiles: in ai-console.yaml" in done.stderr
    assert "Traceback" not in done.stderr


def test_other_settings_after_configure_load(tmp_path: Path) -> None:
    done = start_hub(tmp_path, "")
    assert done.returncode == 0, done.stderr
    assert "quay.io/jupyter/minimal-notebook:latest" in done.stdout

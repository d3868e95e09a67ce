"""The control plane's binaries: built once per machine from the pinned Go module, or taken
from ``AI_CONSOLE_K8S_BIN``.

``python -m tests.control_plane.binaries`` builds what is missing (``make test`` runs it) and
prints the folder. The build goes to ``$AI_CONSOLE_CACHE`` (default ``~/.cache/ai-console``),
outside the work tree, so fresh clones on the same machine (CI's) reuse it; a stamp made of the
module's files decides whether a cached build still matches.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

GOMOD = Path(__file__).with_name("gomod")
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
PACKAGES = (
    "./etcd",
    "k8s.io/kubernetes/cmd/kube-apiserver",
    "k8s.io/kubernetes/cmd/kube-controller-manager",
    "k8s.io/kubernetes/cmd/kube-scheduler",
)
NEEDS = (
    "the Kubernetes tests need Go (1.26 or newer) to build the control plane once, or "
    "AI_CONSOLE_K8S_BIN=<folder with etcd, kube-apiserver, kube-controller-manager, "
    "kube-scheduler>"
)


class MissingBinaries(RuntimeError):
    """No usable control plane binaries and no way to build them."""


def kubernetes_version() -> str:
    """The pinned ``k8s.io/kubernetes`` release, e.g. ``v1.37.2``."""
    match = re.search(
        r"^\s*(?:require )?k8s\.io/kubernetes (v\S+)", (GOMOD / "go.mod").read_text(), re.M
    )
    if match is None:
        raise RuntimeError(f"{GOMOD / 'go.mod'} does not require k8s.io/kubernetes")
    return match.group(1)


def _stamp() -> str:
    digest = hashlib.sha256()
    for path in sorted(GOMOD.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(GOMOD).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where this machine keeps the build of the pinned release."""
    base = Path(os.environ.get("AI_CONSOLE_CACHE") or Path.home() / ".cache" / "ai-console")
    return base / f"k8s-{kubernetes_version()}"


def _complete(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in BINARIES)


def bin_dir() -> Path:
    """The folder holding the four binaries (``AI_CONSOLE_K8S_BIN`` or the cache); no build."""
    given = os.environ.get("AI_CONSOLE_K8S_BIN")
    if given:
        folder = Path(given)
        if not _complete(folder):
            missing = [n for n in BINARIES if not os.access(folder / n, os.X_OK)]
            raise MissingBinaries(f"AI_CONSOLE_K8S_BIN={given} lacks {', '.join(missing)}")
        return folder
    folder = cache_dir() / "bin"
    stamp = cache_dir() / "stamp"
    if _complete(folder) and stamp.exists() and stamp.read_text() == _stamp():
        return folder
    raise MissingBinaries(f"no control plane build in {folder}: run make test; {NEEDS}")


def build() -> Path:
    """Build the binaries into the cache unless a matching build is there; return the folder."""
    try:
        return bin_dir()
    except MissingBinaries:
        if os.environ.get("AI_CONSOLE_K8S_BIN"):
            raise
    go = shutil.which("go")
    if go is None:
        raise MissingBinaries(NEEDS)
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    # The version stamps are what `make` in kubernetes/kubernetes writes; without them the
    # components report v0.0.0 and version-skew checks misfire.
    ldflags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        ldflags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    target = cache_dir()
    staging = target / "bin.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    print(f"building the Kubernetes {version} control plane into {target} (once per machine)")
    started = time.monotonic()
    subprocess.run(
        [go, "build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", f"{staging}/", *PACKAGES],
        cwd=GOMOD,
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"},
    )
    shutil.rmtree(target / "bin", ignore_errors=True)
    staging.rename(target / "bin")
    (target / "stamp").write_text(_stamp())
    print(f"built in {time.monotonic() - started:.0f} s")
    return target / "bin"


def main() -> int:
    try:
        print(build())
    except MissingBinaries as err:
        print(err, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as err:
        print(f"the control plane build failed ({err}); {NEEDS}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

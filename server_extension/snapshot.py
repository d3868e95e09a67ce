"""Check a notebook a user submits and copy it where the job will run from.

Pure file work inside the server's root: paths are resolved and must stay inside it (no
``..``, no symlink out), the notebook must parse and be small enough, and the snapshot is
written before anything is reserved, so later edits do not change a queued job.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from .jobs.model import SNAPSHOT_FOLDER as JOBS_FOLDER  # job folders, relative to the root
from .jobs.model import JobInputError


@dataclass(frozen=True)
class Notebook:
    path: str  # relative to the root, with forward slashes
    node: nbformat.NotebookNode


def resolve(root: Path, relative: Any, field: str = "input_path") -> Path:
    """``relative`` inside ``root`` (symlinks followed), or :class:`JobInputError`."""
    if not isinstance(relative, str) or not relative.strip():
        raise JobInputError("give the notebook's path relative to your home folder", field)
    if "\x00" in relative or Path(relative).is_absolute():
        raise JobInputError(f"{relative!r} must be a path relative to your home folder", field)
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise JobInputError(f"{relative!r} is outside your home folder", field)
    return path


def read_notebook(root: Path, relative: Any, max_bytes: int) -> Notebook:
    """Read and validate the notebook at ``relative``."""
    path = resolve(root, relative)
    if path.suffix != ".ipynb":
        raise JobInputError(f"{relative} is not a notebook (.ipynb)", "input_path")
    if not path.is_file():
        raise JobInputError(f"{relative} does not exist", "input_path", 404)
    size = path.stat().st_size
    if size > max_bytes:
        raise JobInputError(
            f"{relative} is {size >> 20} MiB; notebooks up to {max_bytes >> 20} MiB can run "
            "as jobs (clear large outputs first)",
            "input_path",
        )
    try:
        node = nbformat.read(path, as_version=4)
        nbformat.validate(node)
    except (ValueError, nbformat.ValidationError, json.JSONDecodeError) as err:
        raise JobInputError(f"{relative} is not a valid notebook: {err}", "input_path") from None
    return Notebook(path.relative_to(root.resolve()).as_posix(), node)


def kernel_name(node: nbformat.NotebookNode) -> str:
    return (node.metadata.get("kernelspec") or {}).get("name") or "python3"


def write_snapshot(root: Path, job_id: str, node: nbformat.NotebookNode, spec: dict) -> str:
    """Write ``input.ipynb`` and ``spec.json`` for the runner; returns the snapshot's path."""
    folder = root.resolve() / JOBS_FOLDER / job_id
    folder.mkdir(parents=True, exist_ok=False)
    nbformat.write(node, folder / "input.ipynb")
    (folder / "spec.json").write_text(json.dumps({"input": "input.ipynb", **spec}))
    return f"{JOBS_FOLDER}/{job_id}/input.ipynb"


def remove_snapshot(root: Path, job_id: str) -> None:
    """Undo :func:`write_snapshot` after a refused submission (nothing half-written stays)."""
    shutil.rmtree(root.resolve() / JOBS_FOLDER / job_id, ignore_errors=True)


def job_file(root: Path, job: dict, name: str) -> Path | None:
    """A file of a job's folder in this root, or None when it is not there."""
    snapshot = job.get("snapshot_path") or ""
    try:
        folder = resolve(root, snapshot).parent
    except JobInputError:
        return None
    path = folder / name
    return path if path.is_file() else None


def read_status(root: Path, job: dict) -> dict:
    """The runner's status file of a job (progress, failing cell), or {}."""
    path = job_file(root, job, "status.json")
    if path is None:
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}

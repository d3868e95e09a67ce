"""The job model (jupyter-scheduler's shape plus ours) and the checks of a job request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

#: Output formats the runner can write.
OUTPUT_FORMATS = ("ipynb", "html")
#: The files the runner writes in a job's folder, by what they hold.
JOB_FILES = {"log": "job.log", "ipynb": "output.ipynb", "html": "output.html"}
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Names of the environment that the job's slice and runner set; a user may not replace them.
RESERVED_ENV = re.compile(
    r"^(NVIDIA_|CUDA_|JUPYTERHUB_|AI_CONSOLE_|KUBERNETES_|XLA_PYTHON_CLIENT_MEM_FRACTION$|"
    r"TF_|PYTHONPATH$|PATH$|HOME$|LD_)"
)
#: Where the server extension snapshots a job, relative to the owner's storage.
SNAPSHOT_FOLDER = ".ai-console/jobs"
MAX_NAME = 200
MAX_TAGS = 20
MAX_ENV = 50
MAX_TEXT = 4096


class Status(str, Enum):
    """jupyter-scheduler's job statuses."""

    CREATED = "CREATED"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"

    @property
    def finished(self) -> bool:
        return self in (Status.COMPLETED, Status.FAILED, Status.STOPPED)


class JobInputError(ValueError):
    """A job request is invalid; ``field`` names the request field at fault."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True)
class JobRequest:
    """A checked request for a new job (the snapshot already exists)."""

    job_id: str
    name: str
    input_path: str
    snapshot_path: str
    flavor: str
    project: str | None
    gpu_type: str | None
    image: str | None
    parameters: dict[str, Any]
    environment: dict[str, str]
    timeout_seconds: int | None
    max_retries: int
    output_formats: tuple[str, ...]
    tags: tuple[str, ...]
    idempotency_key: str | None
    rerun_of: str | None


_FIELDS = {
    "job_id",
    "name",
    "input_path",
    "snapshot_path",
    "flavor",
    "project",
    "gpu_type",
    "image",
    "parameters",
    "environment",
    "timeout_seconds",
    "max_retries",
    "output_formats",
    "tags",
    "idempotency_key",
    "rerun_of",
}


def _text(body: dict, name: str, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise JobInputError(f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise JobInputError(f"{name} must be a string, got {type(value).__name__}", name)
    if len(value) > limit or "\x00" in value:
        raise JobInputError(f"{name} must be at most {limit} characters of text", name)
    return value


def _integer(body: dict, name: str, low: int, high: int, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise JobInputError(f"{name} must be a whole number from {low} to {high}", name)
    return value


def parse_request(body: Any, max_timeout: int, max_retries: int) -> JobRequest:
    """Check every field's type and range; raises :class:`JobInputError` naming the field."""
    if not isinstance(body, dict):
        raise JobInputError("the request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise JobInputError(f"unknown field {unknown[0]!r}", unknown[0])
    job_id = _text(body, "job_id", required=True)
    if not JOB_ID_RE.match(job_id or ""):
        raise JobInputError("job_id must be 32 lowercase hex digits", "job_id")
    # The service runs and reads exactly this folder of the owner's storage, never a path the
    # caller chose (that could reach another user's files).
    snapshot = _text(body, "snapshot_path", required=True)
    if snapshot != f"{SNAPSHOT_FOLDER}/{job_id}/input.ipynb":
        raise JobInputError(
            f"snapshot_path must be {SNAPSHOT_FOLDER}/<job_id>/input.ipynb", "snapshot_path"
        )
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise JobInputError("parameters must be an object of name: value", "parameters")
    environment = body.get("environment") or {}
    if not isinstance(environment, dict) or len(environment) > MAX_ENV:
        raise JobInputError(f"environment must be an object of at most {MAX_ENV} names")
    for key, value in environment.items():
        if not ENV_NAME_RE.match(key) or RESERVED_ENV.match(key):
            raise JobInputError(
                f"environment variable {key!r} is not allowed (letters, digits and _; not "
                "one the platform sets, such as CUDA_* or NVIDIA_*)",
                "environment",
            )
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise JobInputError(f"environment variable {key} must be a string", "environment")
    formats = body.get("output_formats") or ["ipynb"]
    if not isinstance(formats, list) or any(f not in OUTPUT_FORMATS for f in formats):
        raise JobInputError(
            f"output_formats must be a list of {', '.join(OUTPUT_FORMATS)}", "output_formats"
        )
    if "ipynb" not in formats:
        formats = ["ipynb", *formats]  # the executed notebook is always kept
    tags = body.get("tags") or []
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_TAGS
        or any(not isinstance(t, str) or not 0 < len(t) <= 64 for t in tags)
    ):
        raise JobInputError(f"tags must be a list of at most {MAX_TAGS} short strings", "tags")
    rerun_of = _text(body, "rerun_of")
    if rerun_of is not None and not JOB_ID_RE.match(rerun_of):
        raise JobInputError("rerun_of must be a job id", "rerun_of")
    return JobRequest(
        job_id=job_id or "",
        name=_text(body, "name", required=True, limit=MAX_NAME) or "",
        input_path=_text(body, "input_path", required=True) or "",
        snapshot_path=snapshot,
        flavor=_text(body, "flavor", required=True, limit=64) or "",
        project=_text(body, "project", limit=63),
        gpu_type=_text(body, "gpu_type", limit=64),
        image=_text(body, "image", limit=63),
        parameters=parameters,
        environment=dict(environment),
        timeout_seconds=_integer(body, "timeout_seconds", 1, max_timeout, None),
        max_retries=_integer(body, "max_retries", 0, max_retries, 0) or 0,
        output_formats=tuple(dict.fromkeys(formats)),
        tags=tuple(dict.fromkeys(tags)),
        idempotency_key=_text(body, "idempotency_key", limit=128),
        rerun_of=rerun_of,
    )

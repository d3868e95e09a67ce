"""Outputs a job's runner sends to the service at its end, kept for readers other than the owner.

On Kubernetes the executed notebook stays in the owner's storage, which a course admin cannot
reach and the service does not mount; once the pod is gone nothing else has it. So the runner
sends it (and its html) here before it exits, and the service keeps it in its store.

The runner holds a token good for that one job only: an HMAC of the job id under a key derived
from the service's own hub token. Nobody needs to store it, and it opens nothing else: not the
hub, not Kubernetes, not another job. The job's own code can read it and replace its own outputs,
which it could do in the owner's storage anyway, and only until the job has ended.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from tornado import web

from server_extension.output_sender import ENV_UPLOAD_TOKEN, ENV_UPLOAD_URL

from .json_api import JSONHandler
from .model import JOB_FILES, JOB_ID_RE, OUTPUT_FORMATS


class UploadKeys:
    """Mints and checks the per-job upload tokens."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"ai-console-job-outputs\0" + secret.encode()).digest()

    def token(self, job_id: str) -> str:
        return hmac.new(self._key, job_id.encode(), hashlib.sha256).hexdigest()

    def valid(self, job_id: str, token: str) -> bool:
        return hmac.compare_digest(self.token(job_id), token)


def runner_environment(keys: UploadKeys | None, url: str, job_id: str) -> dict[str, str]:
    """What the runner of ``job_id`` needs to send its outputs (nothing when none are kept)."""
    if keys is None or not url:
        return {}
    return {
        ENV_UPLOAD_URL: f"{url.rstrip('/')}/jobs/{job_id}/outputs",
        ENV_UPLOAD_TOKEN: keys.token(job_id),
    }


class OutputUploadHandler(JSONHandler):
    """``PUT <prefix>/api/jobs/<id>/outputs/<ipynb|html>``, ``Authorization: Bearer <token>``."""

    async def put(self, job_id: str, fmt: str) -> None:
        keys: UploadKeys | None = self.settings["upload_keys"]
        limit: int = self.settings["kept_output_bytes"]
        if keys is None or not limit:
            raise web.HTTPError(404, "this service keeps no job outputs")
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if (
            scheme.lower() != "bearer"
            or not JOB_ID_RE.match(job_id)
            or not keys.valid(job_id, token)
        ):
            raise web.HTTPError(403, "not a valid upload token for this job")
        manager = self.settings["jobs_manager"]
        job = manager.get(job_id)
        if job is None:
            raise web.HTTPError(404, f"no job {job_id}")
        if job.state.finished:
            # The runner sends before it exits, so before the service can see the job end.
            raise web.HTTPError(409, f"job {job_id} has ended; its outputs are final")
        data = self.request.body
        if len(data) > limit:
            raise web.HTTPError(413, f"{fmt} output is over {limit} bytes; it stays with the owner")
        if fmt == "ipynb" and not _is_notebook(data):
            raise web.HTTPError(400, "ipynb output is not a notebook (JSON with cells)")
        manager.keep_output(job, JOB_FILES[fmt], data)
        self.set_status(204)
        self.finish()


def _is_notebook(data: bytes) -> bool:
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("cells"), list)


def upload_route(api: str) -> tuple[str, type]:
    formats = "|".join(OUTPUT_FORMATS)
    return (rf"{api}/jobs/([^/]+)/outputs/({formats})", OutputUploadHandler)

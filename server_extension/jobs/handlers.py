"""REST handlers of the jobs service: authenticate with the hub, authorise, hand over.

Every handler is authenticated by :class:`HubAuthenticated` (the caller's hub token, with the
``access:services!service=ai-console-jobs`` scope) and authorised by :class:`.access.Caller`:
another user's job is a 404, never a 403, so job ids of others cannot be probed. The one
exception is the runner's upload of a job's outputs, authenticated by that job's own token
(:mod:`.uploads`).
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.services.auth import HubAuthenticated
from tornado import web

from .access import Caller
from .json_api import JSONHandler
from .manager import JobsManager
from .model import JOB_FILES, JOB_ID_RE, OUTPUT_FORMATS, JobInputError, Status
from .store import JobRecord
from .uploads import upload_route


class JobsAPIHandler(HubAuthenticated, JSONHandler):
    """JSON in and out, for the caller's hub token."""

    @property
    def manager(self) -> JobsManager:
        return self.settings["jobs_manager"]

    @property
    def hub_auth(self):
        return self.settings["hub_auth"]

    @property
    def caller(self) -> Caller:
        return Caller.from_model(self.current_user)

    def send(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def refuse(self, err: JobInputError) -> None:
        self.send(err.status, {"message": err.message, "field": err.field})

    def body(self) -> Any:
        try:
            return json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as err:
            raise web.HTTPError(400, f"request body is not JSON: {err}") from None

    def job_or_404(self, job_id: str) -> JobRecord:
        job = self.manager.get(job_id) if JOB_ID_RE.match(job_id) else None
        if job is None or not self.caller.may_see(job):
            raise web.HTTPError(404, f"no job {job_id}")
        return job

    def user_token(self) -> str:
        return self.hub_auth.get_token(self) or ""


class ChoicesHandler(JobsAPIHandler):
    @web.authenticated
    async def get(self) -> None:
        try:
            choices = await self.manager.hub.choices(self.user_token())
        except JobInputError as err:
            self.refuse(err)
            return
        choices["max_timeout_seconds"] = self.manager.max_timeout
        choices["max_retries"] = self.manager.max_retries
        choices["output_formats"] = list(OUTPUT_FORMATS)
        # Where a job can reach the user's storage, for the dialog to say.
        choices["storage"] = (await self.manager.backend.storage(self.caller.name)).to_json()
        self.send(200, choices)


class JobsHandler(JobsAPIHandler):
    @web.authenticated
    async def get(self) -> None:
        caller = self.caller
        status = self.get_argument("status", None)
        if status is not None and status not in Status.__members__:
            raise web.HTTPError(400, f"status must be one of {', '.join(Status.__members__)}")
        text = (self.get_argument("q", "") or "").lower()
        tag = self.get_argument("tag", None)
        jobs = self.manager.store.all() if caller.manages_others else []
        if not caller.manages_others:
            jobs = self.manager.store.find(owner=caller.name)
        found = [
            job.as_json()
            for job in jobs
            if caller.may_see(job)
            and (status is None or job.status == status)
            and (tag is None or tag in job.tags)
            and (
                not text
                or any(text in str(v).lower() for v in (job.name, job.input_path, job.owner))
                or any(text in t.lower() for t in job.tags)
            )
        ]
        self.send(200, {"jobs": found})

    @web.authenticated
    async def post(self) -> None:
        caller = self.caller
        if not caller.own_jobs:
            raise web.HTTPError(403, "this token may not submit jobs (custom:ai-console:jobs)")
        try:
            job, created = await self.manager.create(caller.name, self.body())
        except JobInputError as err:
            self.refuse(err)
            return
        self.send(201 if created else 200, job.as_json())


class JobHandler(JobsAPIHandler):
    @web.authenticated
    async def get(self, job_id: str) -> None:
        self.send(200, self.job_or_404(job_id).as_json())

    @web.authenticated
    async def delete(self, job_id: str) -> None:
        job = await self.manager.cancel(self.job_or_404(job_id))
        self.send(200, job.as_json())


class JobFileHandler(JobsAPIHandler):
    """A job's log or output, for callers who cannot read the owner's storage themselves."""

    @web.authenticated
    async def get(self, job_id: str, kind: str) -> None:
        job = self.job_or_404(job_id)
        fmt = kind if kind == "log" else self.get_argument("format", "ipynb")
        if fmt not in JOB_FILES:
            raise web.HTTPError(400, f"format must be one of {', '.join(OUTPUT_FORMATS)}")
        name = JOB_FILES[fmt]
        data = await self.manager.read_file(job, name)
        if data is None:
            raise web.HTTPError(404, f"job {job_id} has no {name} yet")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(data)


def handlers(prefix: str) -> list[tuple[str, type]]:
    api = prefix.rstrip("/") + "/api"
    return [
        (rf"{api}/choices", ChoicesHandler),
        (rf"{api}/jobs", JobsHandler),
        (rf"{api}/jobs/([^/]+)", JobHandler),
        (rf"{api}/jobs/([^/]+)/(log|output)", JobFileHandler),
        upload_route(api),
    ]

"""REST handlers of the server extension under ``<base_url>/ai-console/`` (openapi.yaml); the
GPU slice's status (``slice``) is in :mod:`server_extension.slice_status`.

Handlers parse, check what only the user's server can check (the path, the notebook, its
kernel, the parameters), snapshot, and forward to the jobs service with the server's own hub
token; the service decides the rest. Every handler is authenticated and authorised by
jupyter_server (``@web.authenticated`` and ``@authorized`` on the ``ai_console`` resource).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from .jobs.model import JOB_FILES, JobInputError
from .jobs_client import JobsClient, ServiceError
from .parameters import ParameterError, check_parameters, declared_parameters
from .snapshot import (
    JOBS_FOLDER,
    job_file,
    kernel_name,
    read_notebook,
    read_status,
    remove_snapshot,
    resolve,
    write_snapshot,
)

AUTH_RESOURCE = "ai_console"
JOB_ID = r"([0-9a-f]{32})"
_FINISHED = {"COMPLETED", "FAILED", "STOPPED"}
_TYPES = {
    "log": "text/plain; charset=utf-8",
    "ipynb": "application/x-ipynb+json",
    "html": "text/html; charset=utf-8",
}


class AiConsoleHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def extension(self):
        return self.settings["ai_console"]

    @property
    def jobs(self) -> JobsClient:
        return self.extension.jobs_client

    @property
    def root(self) -> Path:
        return Path(self.settings["server_root_dir"]).expanduser().resolve()

    def send(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def fail(self, status: int, message: str, field: str | None = None) -> None:
        self.send(status, {"message": message, "field": field})

    def body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as err:
            raise JobInputError(f"the request body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise JobInputError("the request body must be a JSON object")
        return body

    def enrich(self, job: dict) -> dict:
        """Add progress and the failing cell from the runner's status file (own jobs)."""
        if job.get("owner") != self.current_user.username:
            return job
        status = read_status(self.root, job)
        if status:
            job["progress"] = {"cell": status.get("cell", 0), "cells": status.get("cells", 0)}
            job["failed_cell"] = status.get("failed_cell")
            job["failed_cell_number"] = status.get("failed_cell_number")
        return job

    async def service(self, method: str, path: str, body: Any = None, query=None) -> Any:
        """Call the jobs service, passing its refusals on unchanged (status, message, field)."""
        try:
            return await self.jobs.call(method, path, body, query)
        except ServiceError as err:
            raise _Relay(err) from None

    async def run(self, work) -> None:
        try:
            await work()
        except _Relay as relay:
            err = relay.error
            self.fail(err.status, str(err.body.get("message")), err.body.get("field"))
        except JobInputError as err:
            self.fail(err.status, err.message, err.field)


class _Relay(Exception):
    def __init__(self, error: ServiceError) -> None:
        self.error = error


class FlavorsHandler(AiConsoleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        async def work():
            _, choices = await self.service("GET", "choices")
            self.send(200, choices)

        await self.run(work)


class ParametersHandler(AiConsoleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        async def work():
            notebook = read_notebook(
                self.root, self.get_argument("path", ""), self.extension.max_notebook_bytes
            )
            declared = declared_parameters(notebook.node)
            self.send(200, {"parameters": [vars(p) for p in declared]})

        await self.run(work)


class Submitting(AiConsoleHandler):
    """Handlers that create jobs (submit and re-run)."""

    async def submit(
        self, body: dict[str, Any], rerun_of: str | None = None, read_from: str | None = None
    ) -> tuple[int, Any]:
        """Check, snapshot and forward one submission; undo the snapshot if it is refused.

        ``read_from`` (a re-run) is the snapshot to run instead of the notebook at
        ``input_path``, which still names the notebook the job came from.
        """
        allowed = {
            "name", "input_path", "project", "flavor", "gpu_type", "image", "parameters",
            "environment", "timeout_seconds", "max_retries", "output_formats", "tags",
            "idempotency_key",
        }  # fmt: skip
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise JobInputError(f"unknown field {unknown[0]!r}", unknown[0])
        limit = self.extension.max_notebook_bytes
        notebook = read_notebook(self.root, read_from or body.get("input_path"), limit)
        input_path = body["input_path"] if read_from else notebook.path
        kernel = kernel_name(notebook.node)
        specs = self.kernel_spec_manager.find_kernel_specs()
        if kernel not in specs:
            raise JobInputError(
                f"the notebook's kernel {kernel!r} is not installed in this image (kernels: "
                f"{', '.join(sorted(specs))}); change the notebook's kernel",
                "input_path",
            )
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise JobInputError("parameters must be an object of name: value", "parameters")
        try:
            values = check_parameters(declared_parameters(notebook.node), parameters)
        except ParameterError as err:
            field = f"parameters.{err.name}" if err.name else "parameters"
            raise JobInputError(str(err), field) from None
        name = body.get("name") or default_name(input_path)
        job_id = uuid.uuid4().hex
        spec = {
            "parameters": values,
            "output_formats": body.get("output_formats") or ["ipynb"],
            "kernel_name": kernel,
            "timeout_seconds": body.get("timeout_seconds"),
            # The kernel runs where the notebook lives (relative paths work as in Lab),
            # written relative to the job folder so it holds wherever the storage is mounted.
            "cwd": os.path.relpath(Path(input_path).parent, f"{JOBS_FOLDER}/{job_id}"),
        }
        snapshot = write_snapshot(self.root, job_id, notebook.node, spec)
        request = {
            **body,
            "name": name,
            "input_path": input_path,
            "parameters": values,
            "job_id": job_id,
            "snapshot_path": snapshot,
            "rerun_of": rerun_of,
        }
        try:
            status, job = await self.service("POST", "jobs", request)
        except BaseException:
            remove_snapshot(self.root, job_id)
            raise
        if job.get("job_id") != job_id:  # the same idempotency key: the first job stands
            remove_snapshot(self.root, job_id)
        return status, job


class JobsHandler(Submitting):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        async def work():
            query = {k: self.get_argument(k, None) for k in ("status", "q", "tag")}
            _, listing = await self.service("GET", "jobs", query=query)
            self.send(200, {"jobs": [self.enrich(j) for j in listing.get("jobs", [])]})

        await self.run(work)

    @web.authenticated
    @authorized
    async def post(self) -> None:
        async def work():
            status, job = await self.submit(self.body())
            self.send(status, self.enrich(job))

        await self.run(work)


class JobHandler(AiConsoleHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        async def work():
            _, job = await self.service("GET", f"jobs/{job_id}")
            self.send(200, self.enrich(job))

        await self.run(work)

    @web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        async def work():
            _, job = await self.service("DELETE", f"jobs/{job_id}")
            self.send(200, self.enrich(job))

        await self.run(work)


class RerunHandler(Submitting):
    @web.authenticated
    @authorized
    async def post(self, job_id: str) -> None:
        async def work():
            _, old = await self.service("GET", f"jobs/{job_id}")
            if old.get("owner") != self.current_user.username:
                raise JobInputError("only the owner of a job can re-run it", None, 403)
            body = self.body()
            unknown = sorted(set(body) - {"name", "parameters", "idempotency_key"})
            if unknown:
                raise JobInputError(f"unknown field {unknown[0]!r}", unknown[0])
            request = {
                k: old.get(k)
                for k in ("project", "flavor", "gpu_type", "image", "environment",
                          "timeout_seconds", "max_retries", "output_formats", "tags")
            }  # fmt: skip
            if (old.get("gpu_slice") or {}).get("any_type"):
                request["gpu_type"] = None  # the first run left the type to the allocator
            request["input_path"] = old["input_path"]
            request["parameters"] = {
                **(old.get("parameters") or {}),
                **(body.get("parameters") or {}),
            }
            request["name"] = body.get("name") or f"{old['name']}-rerun"
            request["idempotency_key"] = body.get("idempotency_key")
            request = {k: v for k, v in request.items() if v is not None}
            # The re-run runs the snapshot of the first run, not the notebook as edited since.
            status, job = await self.submit(request, job_id, read_from=old["snapshot_path"])
            self.send(status, self.enrich(job))

        await self.run(work)


class JobFileHandler(AiConsoleHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str, kind: str) -> None:
        async def work():
            fmt = kind if kind == "log" else self.get_argument("format", "ipynb")
            if fmt not in JOB_FILES:
                raise JobInputError("format must be ipynb or html", "format")
            _, job = await self.service("GET", f"jobs/{job_id}")
            self.set_header("Content-Type", _TYPES[fmt])
            if job.get("owner") != self.current_user.username:
                # Someone else's job (a course admin): the service reads it for us.
                _, data = await self._relay_file(job_id, kind, fmt)
                self.finish(data)
                return
            if kind == "log" and self.get_argument("follow", "0") == "1":
                await self.follow(job)
                return
            path = job_file(self.root, job, JOB_FILES[fmt])
            if path is None:
                raise JobInputError(f"job {job_id} has no {JOB_FILES[fmt]} yet", "format", 404)
            self.finish(path.read_bytes())

        await self.run(work)

    async def _relay_file(self, job_id: str, kind: str, fmt: str):
        try:
            return await self.jobs.fetch("GET", f"jobs/{job_id}/{kind}", query={"format": fmt})
        except ServiceError as err:
            raise _Relay(err) from None

    async def follow(self, job: dict) -> None:
        """Stream the log as the runner appends to it, until the job has ended."""
        folder = resolve(self.root, job["snapshot_path"]).parent
        path, offset, checked = folder / "job.log", 0, 0.0
        status = job.get("status")
        while True:
            finished = status in _FINISHED
            if path.is_file():
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                if chunk:
                    offset += len(chunk)
                    try:
                        self.write(chunk)
                        await self.flush()
                    except StreamClosedError:
                        return
            if finished:
                break
            await asyncio.sleep(self.extension.follow_interval)
            if time.monotonic() - checked > 2:
                checked = time.monotonic()
                _, latest = await self.service("GET", f"jobs/{job['job_id']}")
                status = latest.get("status")
        self.finish()


def default_name(path: str) -> str:
    """``<notebook>-<yyyy-mm-dd_hhmmss>``, as the dialog prefills it."""
    return f"{Path(path).stem}-{time.strftime('%Y-%m-%d_%H%M%S')}"


def handlers(base_url: str) -> list[tuple[str, type]]:
    from jupyter_server.utils import url_path_join

    from .slice_status import SliceStatusHandler

    def route(path: str) -> str:
        return url_path_join(base_url, "ai-console", path)

    return [
        (route("flavors"), FlavorsHandler),
        (route("parameters"), ParametersHandler),
        (route("jobs"), JobsHandler),
        (route(f"jobs/{JOB_ID}"), JobHandler),
        (route(f"jobs/{JOB_ID}/rerun"), RerunHandler),
        (route(f"jobs/{JOB_ID}/(log|output)"), JobFileHandler),
        (route("slice"), SliceStatusHandler),
    ]

"""``python -m server_extension.jobs``: the jobs service process.

JupyterHub starts it as a managed service (``c.JupyterHub.services``) and gives it its token,
URL and prefix in the environment; every setting below can also come from a config file.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlparse

from jupyterhub.services.auth import HubAuth
from tornado import web
from traitlets import Bool, Float, Integer, Type, Unicode, default
from traitlets.config import Application

from .backends.base import Backend
from .backends.local import LocalBackend
from .handlers import handlers
from .hub_client import HubClient
from .manager import JobsManager
from .store import Store
from .uploads import UploadKeys


class JobsService(Application):
    """Runs notebooks as jobs for their owners, on the backend named in configuration."""

    name = "ai-console-jobs"
    description = __doc__

    config_file = Unicode(
        "",
        config=True,
        help="""Python config file to load (c.JobsService..., c.LocalBackend...).""",
    )
    db_url = Unicode(
        "sqlite:///ai-console-jobs.sqlite",
        config=True,
        help="""SQLAlchemy URL of the job records (SQLite by default; PostgreSQL with
        postgresql://...). Migrations run at start.""",
    )
    backend_class = Type(
        LocalBackend,
        klass=Backend,
        config=True,
        help="""Where jobs run: server_extension.jobs.backends.local.LocalBackend (processes on
        this machine) or the Kubernetes backend.""",
    )
    max_timeout_seconds = Integer(
        7 * 24 * 3600,
        config=True,
        help="""The longest timeout a job may ask for (seconds).""",
    )
    max_retries = Integer(3, config=True, help="""The most retries a job may ask for.""")
    exit_with_parent = Bool(
        False,
        config=True,
        help="""Stop when the process that started this service is gone. The single-machine
        hub starts the service as its child; a hub killed outright would otherwise leave it
        running beside the one the restarted hub starts: two dispatchers on one job database,
        which may both start a waiting job. Running jobs go on; the next service follows
        them.""",
    )
    poll_interval = Float(
        0.5,
        config=True,
        help="""Seconds between two looks at every unfinished job.""",
    )
    service_url = Unicode(
        config=True,
        help="""URL the service listens on; JupyterHub passes it as JUPYTERHUB_SERVICE_URL.""",
    )
    service_prefix = Unicode(
        config=True,
        help="""URL prefix of the service behind the proxy (JUPYTERHUB_SERVICE_PREFIX).""",
    )
    hub_api_url = Unicode(
        config=True,
        help="""The hub's API URL (JUPYTERHUB_API_URL).""",
    )
    upload_url = Unicode(
        config=True,
        help="""Base URL at which a job's pod reaches this service's API directly (not through
        the hub's proxy), e.g. http://ai-console-jobs.<namespace>.svc:10101/services/ai-console-
        jobs/api. The runner sends the executed notebook and html there at its end, so course
        admins can still read them once the pod is gone. Default: service_url and
        service_prefix. Empty: outputs stay only in the owner's storage. Only backends whose
        files vanish with the job (Kubernetes) use it.""",
    )
    kept_output_bytes = Integer(
        16 << 20,
        config=True,
        help="""The largest output file (executed notebook or html) the service keeps for a
        job, in bytes; a larger one stays only in the owner's storage. 0: keep none.""",
    )

    @default("service_url")
    def _service_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")

    @default("service_prefix")
    def _service_prefix(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/ai-console-jobs/")

    @default("upload_url")
    def _upload_url(self) -> str:
        return f"{self.service_url.rstrip('/')}{self.service_prefix.rstrip('/')}/api"

    @default("hub_api_url")
    def _hub_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)

    def build(self) -> tuple[web.Application, JobsManager]:
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        hub_auth = HubAuth(api_token=token, api_url=self.hub_api_url, cache_max_age=10)
        upload_keys = UploadKeys(token) if token and self.kept_output_bytes else None
        manager = JobsManager(
            store=Store(self.db_url),
            backend=self.backend_class(parent=self, log=self.log),
            hub=HubClient(self.hub_api_url, token),
            max_timeout=self.max_timeout_seconds,
            max_retries=self.max_retries,
            poll_interval=self.poll_interval,
            upload_keys=upload_keys,
            upload_url=self.upload_url,
            parent=self,
            log=self.log,
        )
        app = web.Application(
            handlers(self.service_prefix),
            jobs_manager=manager,
            hub_auth=hub_auth,
            upload_keys=manager.upload_keys,
            kept_output_bytes=self.kept_output_bytes,
        )
        return app, manager

    async def serve(self) -> None:
        app, manager = self.build()
        url = urlparse(self.service_url)
        app.listen(url.port or 80, url.hostname or "127.0.0.1")
        manager.start_watching()
        self.log.info("jobs service on %s (backend %s)", self.service_url, self.backend_class)
        if not self.exit_with_parent:
            await asyncio.Event().wait()
        parent = os.getppid()
        while os.getppid() == parent:  # an orphan is adopted by another process
            await asyncio.sleep(1)
        self.log.warning("the hub that started this jobs service is gone; stopping")

    def start(self) -> None:
        try:
            asyncio.run(self.serve())
        except KeyboardInterrupt:  # the hub stops its services with SIGINT
            self.log.info("jobs service stopped; running jobs go on")


main = JobsService.launch_instance

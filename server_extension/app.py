"""The AI Console server extension: Run notebook as job, inside the user's own server."""

from __future__ import annotations

import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Integer, Unicode, default

from .handlers import handlers
from .jobs_client import JobsClient

#: Set by the hub on every server: the jobs service's URL, reachable from the server.
ENV_JOBS_URL = "AI_CONSOLE_JOBS_URL"


class AiConsoleExtension(ExtensionApp):
    """REST API for the Lab extension; forwards jobs to the hub's jobs service."""

    name = "ai_console"

    jobs_url = Unicode(
        config=True,
        help=f"""URL of the jobs service (…/services/ai-console-jobs/). The hub sets
        ${ENV_JOBS_URL} on every server; empty: jobs cannot be submitted (503).""",
    )
    hub_token = Unicode(
        config=True,
        help="""Token the jobs service is called with: the server's own hub token
        (JUPYTERHUB_API_TOKEN), which acts for this server's user only.""",
    )
    max_notebook_bytes = Integer(
        20 << 20,
        config=True,
        help="""Largest notebook that can run as a job, in bytes.""",
    )
    follow_interval = Float(
        0.5,
        config=True,
        help="""Seconds between two reads of a job's log while following it.""",
    )

    open_job_files = Bool(
        True,
        config=True,
        help="""Let Lab open the job files under the hidden `.ai-console/` folder (the executed
        notebook, its html, the log) by turning on ContentsManager.allow_hidden, unless the
        server's configuration sets allow_hidden itself. Lab's file browser still hides
        dot-files unless the user shows them.""",
    )

    @default("jobs_url")
    def _jobs_url(self) -> str:
        return os.environ.get(ENV_JOBS_URL, "")

    @default("hub_token")
    def _hub_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def initialize_settings(self) -> None:
        self.jobs_client = JobsClient(self.jobs_url, self.hub_token)
        self.settings["ai_console"] = self
        self._allow_hidden_job_files()

    def _allow_hidden_job_files(self) -> None:
        """Outputs live in `.ai-console/jobs/<id>/`; without allow_hidden Lab gets a 404."""
        configured = any(
            "allow_hidden" in self.serverapp.config.get(section, {})
            for section in ("ContentsManager", "FileContentsManager", "LargeFileManager")
        )
        if self.open_job_files and not configured:
            self.serverapp.contents_manager.allow_hidden = True

    def initialize_handlers(self) -> None:
        base_url = self.serverapp.base_url
        # Absolute routes, so the handlers do not depend on the extension's own URL prefix.
        self.serverapp.web_app.add_handlers(".*$", handlers(base_url))

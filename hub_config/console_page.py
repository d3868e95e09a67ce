"""The AI Console page, ``/hub/ai-console``, and its data, ``GET /hub/api/ai-console/console``.

For platform admins (every slice) and course admins (owners only within their own projects:
:mod:`hub_config.console_view`); anyone else gets 403. The page is JupyterHub's own page
template with a script that draws the data and refreshes it every few seconds. The data API
also needs the ``gpu-map`` scope, in any filter, so a token made without it cannot read the
map even for an admin.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jupyterhub.handlers.base import BaseHandler
from tornado import web

from gpu_fraction.model import Allocation
from spawner.agent_samples import AgentSamples
from spawner.allocation_api import SCOPE_GPU_MAP, SliceAPIHandler
from spawner.manager import current_manager
from spawner.usage_history import UsageHistory, UsageRow, to_csv, utilization_csv

from .access import projects_administered_by
from .console_view import console_view, usage_view, visible_projects
from .model import AiConsoleConfig
from .spawn_texts import gpu_amount

#: Our page and the hub's page.html with the link to it; first in c.JupyterHub.template_paths.
TEMPLATES = Path(__file__).resolve().parent / "templates" / "console"
PAGE = "ai-console.html"
#: How often the open page asks for fresh data.
REFRESH_SECONDS = 5
DAY = 86400
#: How often the open page reloads the GPU-hours history (it changes by the minute).
HISTORY_REFRESH_SECONDS = 60
#: The GPU-hours history the page plots (and the CSV holds) by default, and at most.
DEFAULT_DAYS = 14
MAX_DAYS = 366
DENIED = "The AI Console page is for platform admins and course admins."
#: The template variable that shows the navigation bar's link (c.JupyterHub.template_vars).
NAV_VAR = "ai_console_page"
#: The template variable with the user's own slices, for the home page.
HOME_VAR = "ai_console_my_slices"


def may_see(config: AiConsoleConfig, user: str) -> bool:
    """Whether ``user`` administers anything the page shows."""
    return bool(projects_administered_by(config, user))


def nav_link(config: AiConsoleConfig):
    """The template variable's callable: JupyterHub passes the page's user (or None)."""

    def shown(user: Any) -> bool:
        return user is not None and may_see(config, user.name)

    return shown


def my_slices(config: AiConsoleConfig):
    """The home page's template variable: the user's own slices, servers and jobs, as
    ``{kind, server, gpu_type, share, project, committed, simulated}``."""

    def slices(user: Any) -> list[dict[str, Any]]:
        manager = current_manager()
        if user is None or manager is None:
            return []
        mine = [a for a in manager.allocations() if a.owner.user == user.name]
        return [_home_entry(config, a, manager.is_committed(a.id)) for a in mine]

    return slices


def _home_entry(config: AiConsoleConfig, allocation: Allocation, committed: bool) -> dict:
    project = config.projects.get(allocation.owner.project)
    return {
        "kind": allocation.owner.kind,
        "server": allocation.owner.name,
        "gpu_type": allocation.gpu_type,
        "share": gpu_amount(allocation.fraction),
        "project": project.display_name if project else allocation.owner.project,
        "committed": committed,
        "simulated": allocation.simulated,
    }


class AdminPageHandler(BaseHandler):
    """A page of the hub for platform and course admins only (cookie login)."""

    def initialize(self, ai_console: AiConsoleConfig) -> None:
        self.ai_console = ai_console

    def page_viewer(self) -> str:
        """The logged-in user's name, if they may see the page (else 403)."""
        if not may_see(self.ai_console, self.current_user.name):
            raise web.HTTPError(403, DENIED)
        return self.current_user.name


class ConsolePageHandler(AdminPageHandler):
    @web.authenticated
    async def get(self) -> None:
        self.page_viewer()
        html = await self.render_template(
            PAGE,
            refresh_seconds=REFRESH_SECONDS,
            history_days=DEFAULT_DAYS,
            history_seconds=HISTORY_REFRESH_SECONDS,
            viewer=self.current_user.name,
        )
        self.finish(html)


class ConsoleDataHandler(SliceAPIHandler):
    def initialize(self, ai_console: AiConsoleConfig) -> None:
        self.ai_console = ai_console

    def console_viewer(self) -> str:
        """The caller's name, if they may read the page's data (else 403)."""
        user = getattr(self.current_user, "orm_user", None)
        if user is None:
            raise web.HTTPError(403, "Only a logged-in admin can read the AI Console page.")
        if SCOPE_GPU_MAP not in self.parsed_scopes:  # in any filter
            raise web.HTTPError(403, f"Action requires the scope {SCOPE_GPU_MAP}")
        if not may_see(self.ai_console, user.name):
            raise web.HTTPError(403, DENIED)
        return user.name

    async def get(self) -> None:
        viewer = self.console_viewer()
        manager = self.slice_manager
        capacity = await manager.capacity()
        samples = AgentSamples.instance(config=self.settings["config"])
        live = samples if (samples.urls or samples.label_selector) else None
        view = console_view(self.ai_console, viewer, manager.usage(), capacity, live)
        self.set_header("Cache-Control", "no-store")
        self.write_json(200, view)


def history_span(days_argument: str | None, now: float) -> tuple[float, list[str]]:
    """The epoch second the history starts at and its days (UTC, oldest first) for a
    ``?days=N`` argument (1..MAX_DAYS, default DEFAULT_DAYS); ValueError names what is wrong."""
    try:
        days = int(days_argument) if days_argument else DEFAULT_DAYS
    except ValueError:
        raise ValueError(f"days must be a whole number, not {days_argument!r}") from None
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    today = int(now // DAY * DAY)
    starts = [today - DAY * back for back in range(days - 1, -1, -1)]
    return starts[0], [time.strftime("%Y-%m-%d", time.gmtime(start)) for start in starts]


def requested_span(handler: web.RequestHandler) -> tuple[UsageHistory, float, list[str]]:
    """The hub's history, and the start and days of the handler's ``?days=`` (else 400)."""
    history = UsageHistory.instance(config=handler.settings["config"])
    try:
        since, days = history_span(handler.get_argument("days", None), history.clock())
    except ValueError as err:
        raise web.HTTPError(400, str(err)) from None
    return history, since, days


def viewer_rows(
    handler: web.RequestHandler, config: AiConsoleConfig, viewer: str
) -> tuple[list[UsageRow], list[str]]:
    """The history rows ``viewer`` may read for the handler's ``?days=``, and those days."""
    history, since, days = requested_span(handler)
    return history.rows(since, projects=visible_projects(config, viewer)), days


class UsageDataHandler(ConsoleDataHandler):
    async def get(self) -> None:
        user = self.console_viewer()
        history, since, days = requested_span(self)
        rows = history.rows(since, projects=visible_projects(self.ai_console, user))
        view = usage_view(self.ai_console, rows, days, history.utilization_rows(since))
        view["recording"] = history.enabled
        self.set_header("Cache-Control", "no-store")
        self.write_json(200, view)


def send_csv(handler: web.RequestHandler, what: str, days: list[str], text: str) -> None:
    """Send ``text`` as a CSV download named for ``what`` and its ``days``."""
    handler.set_header("Content-Type", "text/csv; charset=utf-8")
    filename = f"ai-console-{what}-{days[0]}-to-{days[-1]}.csv"
    handler.set_header("Content-Disposition", f'attachment; filename="{filename}"')
    handler.set_header("Cache-Control", "no-store")
    handler.finish(text)


class UsageCsvHandler(AdminPageHandler):
    @web.authenticated
    async def get(self) -> None:
        rows, days = viewer_rows(self, self.ai_console, self.page_viewer())
        send_csv(self, "gpu-hours", days, to_csv(rows))


class UtilizationCsvHandler(AdminPageHandler):
    @web.authenticated
    async def get(self) -> None:
        self.page_viewer()  # GPU utilisation per type: what every console viewer sees
        history, since, days = requested_span(self)
        send_csv(self, "gpu-utilization", days, utilization_csv(history.utilization_rows(since)))


def handlers(config: AiConsoleConfig) -> list[tuple[str, type, dict[str, Any]]]:
    """For ``c.JupyterHub.extra_handlers`` (JupyterHub adds the hub prefix)."""
    return [
        (r"/ai-console", ConsolePageHandler, {"ai_console": config}),
        (r"/ai-console/usage\.csv", UsageCsvHandler, {"ai_console": config}),
        (r"/ai-console/utilization\.csv", UtilizationCsvHandler, {"ai_console": config}),
        (r"/api/ai-console/console", ConsoleDataHandler, {"ai_console": config}),
        (r"/api/ai-console/usage", UsageDataHandler, {"ai_console": config}),
    ]

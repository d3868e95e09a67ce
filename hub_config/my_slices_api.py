"""``GET /hub/api/ai-console/my-slices``: the caller's own GPU slices, and whether idle.

For a user (cookie) or their server's token (scope custom:ai-console:own-slices for its own
user): each slice's server name, kind, GPU type and share, how long it has been idle (null
unless flagged) and in how many minutes the hub stops its server for idleness (null unless it
will). The Lab extension warns its user from this. There is no parameter naming a user, so no
scope shows anyone else's slices.
"""

from __future__ import annotations

import math
from typing import Any

from jupyterhub.scopes import has_scope
from tornado import web

from spawner.agent_samples import AgentSamples
from spawner.allocation_api import SliceAPIHandler

from .model import AiConsoleConfig
from .roles import SCOPE_OWN_SLICES
from .spawn_texts import gpu_amount


def _whole_minutes(value: float | None, up: bool = False) -> int | None:
    """Minutes as the user reads them: idle time rounded down, time left rounded up."""
    if value is None:
        return None
    return math.ceil(value) if up else math.floor(value)


class MySlicesHandler(SliceAPIHandler):
    def initialize(self, ai_console: AiConsoleConfig) -> None:
        self.ai_console = ai_console

    async def get(self) -> None:
        user = getattr(self.current_user, "orm_user", None)
        if user is None:
            raise web.HTTPError(403, "Only a user, or their server, can ask for their slices.")
        if not has_scope(f"{SCOPE_OWN_SLICES}!user={user.name}", self.parsed_scopes, db=self.db):
            raise web.HTTPError(403, f"Action requires the scope {SCOPE_OWN_SLICES}")
        samples = AgentSamples.instance(config=self.settings["config"])
        manager = self.slice_manager
        mine = [a for a in manager.allocations() if a.owner.user == user.name]
        slices: list[dict[str, Any]] = [
            {
                "server": a.owner.name,
                "kind": a.owner.kind,
                "gpu_type": a.gpu_type,
                "share": gpu_amount(a.fraction),
                "committed": manager.is_committed(a.id),
                "idle_minutes": _whole_minutes(samples.idle_minutes_of(a.id)),
                "stops_in_minutes": _whole_minutes(samples.stops_in_minutes_of(a), up=True),
            }
            for a in mine
        ]
        self.set_header("Cache-Control", "no-store")
        self.write_json(200, {"slices": slices})


def handlers(config: AiConsoleConfig) -> list[tuple[str, type, dict[str, Any]]]:
    """For ``c.JupyterHub.extra_handlers`` (JupyterHub adds the hub prefix)."""
    return [(r"/api/ai-console/my-slices", MySlicesHandler, {"ai_console": config})]

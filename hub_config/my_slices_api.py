"""``GET /hub/api/ai-console/my-slices``: the caller's own GPU slices, and whether idle.

For a user (cookie) or their server's token (scope custom:ai-console:own-slices for its own
user): each slice's server name, kind, GPU type and share, how long it has been idle (null
unless flagged) and in how many minutes the hub stops its server for idleness (null unless it
will), and the node agent's readings of it: GPU memory its processes hold and, for a slice of
whole GPUs, their utilisation (null where no agent reports its GPUs; a fraction's own
utilisation cannot be told apart on a shared GPU). The Lab extension warns its user from this,
and shows the readings where the server cannot read NVML for its own processes. There is no
parameter naming a user, so no scope shows anyone else's slices.
"""

from __future__ import annotations

import math
from typing import Any

from spawner.agent_samples import AgentSamples

from .model import AiConsoleConfig
from .own_user_api import OwnUserHandler
from .roles import SCOPE_OWN_SLICES
from .spawn_texts import gpu_amount


def _whole_minutes(value: float | None, up: bool = False) -> int | None:
    """Minutes as the user reads them: idle time rounded down, time left rounded up."""
    if value is None:
        return None
    return math.ceil(value) if up else math.floor(value)


class MySlicesHandler(OwnUserHandler):
    scope = SCOPE_OWN_SLICES
    no_user = "Only a user, or their server, can ask for their slices."

    async def get(self) -> None:
        user = self.own_user()
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
                **samples.readings_of(a),
            }
            for a in mine
        ]
        self.set_header("Cache-Control", "no-store")
        self.write_json(200, {"slices": slices})


def handlers(config: AiConsoleConfig) -> list[tuple[str, type, dict[str, Any]]]:
    """For ``c.JupyterHub.extra_handlers`` (JupyterHub adds the hub prefix)."""
    return [(r"/api/ai-console/my-slices", MySlicesHandler, {"ai_console": config})]

"""``GET /hub/api/ai-console/spawn-options``: the caller's own spawn form, as it stands now.

For a logged-in user (cookie with the hub's XSRF token, or a token with the scope
custom:ai-console:spawn-options for its own user), each of their profiles: slug, display
name, how many could start now (``free``, ``null`` for CPU-only), whether the form disables
it and why, and the projects it may be charged to with the same counts. It never answers for
anyone else: there is no parameter naming a user, so no scope, however broad, shows another
user's view. The spawn form's script polls it to refresh its counts; the counts and reasons are
in the language of the request's Accept-Language (English or zh-TW).
"""

from __future__ import annotations

from typing import Any

from .model import AiConsoleConfig
from .own_user_api import OwnUserHandler
from .page_texts import translator
from .roles import SCOPE_SPAWN_OPTIONS
from .spawn_form import current_availability


class SpawnOptionsHandler(OwnUserHandler):
    scope = SCOPE_SPAWN_OPTIONS
    no_user = "Only a logged-in user can ask for their spawn options."

    async def get(self) -> None:
        user = self.own_user()
        spawner = user.orm_spawners.get("")
        options = (spawner.user_options or {}) if spawner is not None else {}
        groups = [group.name for group in user.groups]
        spots = await current_availability(
            self.ai_console, user.name, groups, self.slice_manager, options
        )
        self.set_header("Cache-Control", "no-store")
        # The counts and reasons in the language the browser asks for (the form's script sends
        # its Accept-Language), as page.html translates the rest of the page.
        translate = translator(self.request.headers.get("Accept-Language"))
        profiles = [spot.as_dict(translate) for spot in spots]
        self.write_json(200, {"user": user.name, "profiles": profiles})


def handlers(config: AiConsoleConfig) -> list[tuple[str, type, dict[str, Any]]]:
    """For ``c.JupyterHub.extra_handlers`` (JupyterHub adds the hub prefix)."""
    return [(r"/api/ai-console/spawn-options", SpawnOptionsHandler, {"ai_console": config})]

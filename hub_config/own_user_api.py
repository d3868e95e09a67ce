"""The base of the hub APIs that answer only for their caller (the spawn form's counts, the
caller's own slices): there is no parameter naming a user, so no scope, however broad, shows
anyone else's view."""

from __future__ import annotations

from typing import Any, ClassVar

from jupyterhub.scopes import has_scope
from tornado import web

from spawner.allocation_api import SliceAPIHandler

from .model import AiConsoleConfig


class OwnUserHandler(SliceAPIHandler):
    """A handler for a user (cookie) or a token of theirs with ``scope`` for their own user."""

    #: The scope the caller needs, filtered to their own user.
    scope: ClassVar[str] = ""
    #: The 403 for a caller who is no user (a service, or nobody).
    no_user: ClassVar[str] = "Only a logged-in user can ask for this."

    def initialize(self, ai_console: AiConsoleConfig) -> None:
        self.ai_console = ai_console

    def own_user(self) -> Any:
        """The caller's ``orm.User``, if they may read their own view (else 403)."""
        # The hub hands handlers its User wrapper; services and anonymous callers have none.
        user = getattr(self.current_user, "orm_user", None)
        if user is None:
            raise web.HTTPError(403, self.no_user)
        if not has_scope(f"{self.scope}!user={user.name}", self.parsed_scopes, db=self.db):
            raise web.HTTPError(403, f"Action requires the scope {self.scope}")
        return user

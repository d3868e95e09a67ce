"""What every handler of the jobs service shares: token auth only, and errors as JSON."""

from __future__ import annotations

import json
from typing import Any

from tornado import web


class JSONHandler(web.RequestHandler):
    """Errors as ``{"message", "field"}``; no cookies, so no XSRF check."""

    def check_xsrf_cookie(self) -> None:
        pass  # token-authenticated API; no cookies are accepted

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "field": None}))

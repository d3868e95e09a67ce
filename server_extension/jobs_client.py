"""The server extension's calls to the jobs service, with the user's own hub token."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .http import http_client


class ServiceError(Exception):
    """The jobs service refused or failed; carries its status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


class JobsClient:
    def __init__(self, url: str, token: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/") + "/api"
        self.token = token
        self.timeout = timeout
        self._http: AsyncHTTPClient | None = None

    async def call(
        self, method: str, path: str, body: Any = None, query: dict | None = None
    ) -> tuple[int, Any]:
        """JSON in and out; raises :class:`ServiceError` for a 4xx or 5xx."""
        raw = await self.fetch(method, path, body, query)
        try:
            return raw[0], json.loads(raw[1] or b"{}")
        except json.JSONDecodeError:
            return raw[0], {"message": raw[1].decode(errors="replace")}

    async def fetch(
        self, method: str, path: str, body: Any = None, query: dict | None = None
    ) -> tuple[int, bytes]:
        if not self.url.startswith("http"):
            raise ServiceError(503, {"message": "no jobs service is configured for this hub"})
        url = f"{self.url}/{path}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        request = HTTPRequest(
            url,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=self.timeout,
        )
        try:
            if self._http is None:
                self._http = http_client()
            response = await self._http.fetch(request)
        except HTTPClientError as err:
            if err.response is None:
                message = f"the jobs service is unreachable: {err}"
                raise ServiceError(502, {"message": message}) from None
            text = err.response.body or b"{}"
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                payload = {"message": text.decode(errors="replace")}
            if not isinstance(payload, dict):
                payload = {"message": str(payload)}
            raise ServiceError(err.code, payload) from None
        except OSError as err:
            message = f"the jobs service is unreachable: {err}"
            raise ServiceError(502, {"message": message}) from None
        return response.code, response.body or b""

"""Calls from the jobs service to the hub's AI Console API (one allocator for all slices)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..http import http_client
from .model import JobInputError


class HubClient:
    """The hub's ``/api/ai-console/...`` endpoints, with the service's own token.

    ``user_token`` calls (the dialog's choices) go with the caller's token instead, so the hub
    answers for that user and nobody else.
    """

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self._http: AsyncHTTPClient | None = None

    async def _call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        request = HTTPRequest(
            f"{self.api_url}/ai-console/{path}",
            method=method,
            headers={
                "Authorization": f"token {token or self.token}",
                "Content-Type": "application/json",
            },
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            request_timeout=30,
        )
        try:
            if self._http is None:
                self._http = http_client()
            response = await self._http.fetch(request)
        except HTTPClientError as err:
            if err.response is None:
                raise
            response = err.response
        text = response.body.decode() if response.body else "{}"
        try:
            return response.code, json.loads(text)
        except json.JSONDecodeError:
            return response.code, {"message": text}

    async def choices(self, user_token: str) -> dict[str, Any]:
        """What the token's user may choose (projects, flavors with free counts, images)."""
        code, body = await self._call("GET", "job-choices", token=user_token)
        if code != 200:
            raise JobInputError(_message(body, code), None, code if code < 500 else 502)
        return body

    async def admit(self, user: str, request: dict[str, Any], name: str) -> dict[str, Any]:
        """Check a job against the admin's YAML and reserve its slice (if it has a GPU)."""
        code, body = await self._call(
            "POST", "job-admissions", {"user": user, "request": request, "name": name}
        )
        if code not in (200, 201):
            field = body.get("field") if isinstance(body, dict) else None
            raise JobInputError(_message(body, code), field, code if code < 500 else 502)
        return body

    async def commit(self, allocation_id: str) -> None:
        code, body = await self._call("POST", f"allocations/{quote(allocation_id)}/commit")
        if code != 200:
            raise RuntimeError(f"committing slice {allocation_id}: {_message(body, code)}")

    async def release(self, allocation_id: str) -> None:
        code, body = await self._call("DELETE", f"allocations/{quote(allocation_id)}")
        if code != 200:
            raise RuntimeError(f"releasing slice {allocation_id}: {_message(body, code)}")


def _message(body: Any, code: int) -> str:
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"the hub answered {code}"

"""Whether the hub finds this server's GPU slice idle, when it will stop the server, and
what the node agent reads of the slice.

The hub answers ``GET {JUPYTERHUB_API_URL}/ai-console/my-slices`` for the token's own user::

    {"slices": [{"server": "", "kind": "notebook", "gpu_type": "RTX3090", "share": "1/4",
                 "idle_minutes": 42, "stops_in_minutes": 8, "memory_used_mib": 1229,
                 "utilization_percent": null}]}

This server's entry is the notebook slice named as the hub named the server
(``JUPYTERHUB_SERVER_NAME``, "" for the default server). The slice status
(:mod:`server_extension.slice_status`) adds it as ``"idle"``: ``{"idle_minutes": n | null,
"stops_in_minutes": m | null}``, or ``null`` when it is unknown (no hub, no entry, any error).
A failing hub never fails the slice status.

The Lab polls the slice status every 5 s; the hub's answer is kept :data:`CACHE_S` seconds
(failures too), and calls made while one is in flight share it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .http import http_client

logger = logging.getLogger(__name__)

ENV_API_URL = "JUPYTERHUB_API_URL"
ENV_SERVER_NAME = "JUPYTERHUB_SERVER_NAME"
#: The hub's endpoint, relative to its API URL (``<hub>/hub/api``).
MY_SLICES_PATH = "ai-console/my-slices"
#: How long one answer of the hub (or its failure) is used.
CACHE_S = 30.0
#: How long the slice status waits for the hub.
TIMEOUT_S = 3.0


def _count(value: Any) -> int | None:
    """A count (minutes, MiB) as the hub gives it, or None (absent, null or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0, int(value))


def find_entry(answer: Any, server_name: str) -> Mapping[str, Any] | None:
    """This server's entry in the hub's answer; None when there is none."""
    slices = answer.get("slices") if isinstance(answer, Mapping) else None
    if not isinstance(slices, list):
        return None
    for entry in slices:
        if not isinstance(entry, Mapping):
            continue
        if entry.get("kind") == "notebook" and (entry.get("server") or "") == server_name:
            return entry
    return None


def idle_of(entry: Mapping[str, Any] | None) -> dict[str, int | None] | None:
    """The ``idle`` of an entry (None: no entry)."""
    if entry is None:
        return None
    return {
        "idle_minutes": _count(entry.get("idle_minutes")),
        "stops_in_minutes": _count(entry.get("stops_in_minutes")),
    }


def readings_of(entry: Mapping[str, Any] | None) -> dict[str, int | None]:
    """The node agent's readings of the slice in an entry (None each where not given)."""
    entry = entry or {}
    rate = _count(entry.get("utilization_percent"))
    return {
        "memory_used_mib": _count(entry.get("memory_used_mib")),
        "utilization_percent": None if rate is None else min(100, rate),
    }


def pick_idle(answer: Any, server_name: str) -> dict[str, int | None] | None:
    """This server's ``idle`` from the hub's answer; None when the answer has no entry for it."""
    return idle_of(find_entry(answer, server_name))


class IdleStatus:
    """The hub's idle verdict on this server's slice, fetched at most once per ``cache_s``."""

    def __init__(
        self,
        api_url: str,
        token: str,
        server_name: str = "",
        *,
        cache_s: float = CACHE_S,
        timeout_s: float = TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = f"{api_url.rstrip('/')}/{MY_SLICES_PATH}" if api_url else ""
        self.token = token
        self.server_name = server_name
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._http: AsyncHTTPClient | None = None
        self._value: Mapping[str, Any] | None = None
        self._fetched_at: float | None = None
        self._pending: asyncio.Future | None = None

    @classmethod
    def from_environment(cls, token: str, env: Mapping[str, str] | None = None) -> IdleStatus:
        env = os.environ if env is None else env
        return cls(env.get(ENV_API_URL, ""), token, env.get(ENV_SERVER_NAME, ""))

    async def get(self) -> dict[str, int | None] | None:
        """``{"idle_minutes", "stops_in_minutes"}`` for this server, or None (unknown)."""
        return idle_of(await self.entry())

    async def entry(self) -> Mapping[str, Any] | None:
        """This server's entry in the hub's answer, or None (unknown)."""
        if not self.url.startswith("http") or not self.token:
            return None
        now = self._clock()
        if self._fetched_at is not None and now - self._fetched_at < self.cache_s:
            return self._value
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._refresh())
        pending = self._pending
        try:
            # shield: a caller that goes away does not cancel the fetch the others wait for.
            return await asyncio.shield(pending)
        finally:
            if self._pending is pending and pending.done():
                self._pending = None

    async def _refresh(self) -> Mapping[str, Any] | None:
        try:
            value = await self._fetch()
        except Exception as err:  # unreachable, refused, slow, not JSON: unknown
            logger.debug("ai-console: no idle status from the hub (%s)", err)
            value = None
        self._value, self._fetched_at = value, self._clock()
        return value

    async def _fetch(self) -> Mapping[str, Any] | None:
        if self._http is None:
            self._http = http_client()
        request = HTTPRequest(
            self.url,
            headers={"Authorization": f"token {self.token}", "Accept": "application/json"},
            connect_timeout=self.timeout_s,
            request_timeout=self.timeout_s,
        )
        response = await self._http.fetch(request)
        return find_entry(json.loads(response.body or b"{}"), self.server_name)

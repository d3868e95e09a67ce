"""Stopping idle notebook servers through the hub's own REST API, as jupyterhub-idle-culler does.

The hub's configuration registers a service, ``ai-console-culler``, whose only role is to stop
servers (``servers`` scope), with a token made at each start and never written anywhere but the
hub's database; :class:`spawner.agent_samples.AgentSamples` calls :func:`stop_server` when a
notebook's slice stayed idle ``settings.stop_idle_after_minutes``. Going through the API means
the hub stops the server exactly as when its user clicks "Stop My Server": the proxy route goes,
the spawner stops, the slice is released.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

CULLER_SERVICE = "ai-console-culler"
CULLER_ROLE = "ai-console-culler"


def culler_service(token: str) -> dict[str, Any]:
    """The ``c.JupyterHub.services`` entry: a token, no URL, no process."""
    return {"name": CULLER_SERVICE, "api_token": token, "display": False}


def culler_role() -> dict[str, Any]:
    return {
        "name": CULLER_ROLE,
        "description": "Stops notebook servers whose GPU slice stayed idle (AI Console)",
        "scopes": ["servers", "read:users:name"],
        "services": [CULLER_SERVICE],
    }


def make_stopper(token: str):
    """``AgentSamples.stop_server``: DELETE the server through the hub's API."""

    async def stop_server(user: str, server_name: str) -> None:
        from jupyterhub.app import JupyterHub  # the running hub: its API URL is known only now

        api = JupyterHub.instance().hub.api_url.rstrip("/")
        name = urllib.parse.quote(user, safe="")
        path = (
            f"/users/{name}/server"
            if not server_name
            else (f"/users/{name}/servers/{urllib.parse.quote(server_name, safe='')}")
        )
        try:
            await AsyncHTTPClient().fetch(
                api + path,
                method="DELETE",
                headers={"Authorization": f"token {token}"},
                request_timeout=30,
            )
        except HTTPClientError as err:
            body = err.response.body.decode(errors="replace") if err.response else ""
            message = json.loads(body).get("message", body) if body.startswith("{") else body
            raise RuntimeError(f"the hub refused to stop {user}'s server: {message}") from None

    return stop_server


def new_token() -> str:
    return secrets.token_hex(32)

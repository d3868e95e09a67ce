"""A small HTTP client for a running hub: log in like a browser, then use the REST API."""

from __future__ import annotations

import json
import time

import requests


class HubClient:
    """One logged-in browser session against a hub at ``base`` (e.g. http://127.0.0.1:8000)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()

    @property
    def xsrf(self) -> str:
        """The hub's XSRF cookie (a single-user server sets its own under /user/...)."""
        for cookie in self.session.cookies:
            if cookie.name == "_xsrf" and cookie.path.startswith("/hub"):
                return cookie.value
        return ""

    def login(self, username: str, password: str) -> requests.Response:
        page = self.session.get(f"{self.base}/hub/login", timeout=30)
        page.raise_for_status()
        return self.session.post(
            f"{self.base}/hub/login?next=",
            data={"username": username, "password": password, "_xsrf": self.xsrf},
            timeout=30,
            allow_redirects=False,
        )

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-XSRFToken": self.xsrf, **kwargs.pop("headers", {})}
        return self.session.request(
            method, f"{self.base}/hub/api{path}", headers=headers, timeout=30, **kwargs
        )

    def spawn_form(self) -> str:
        response = self.session.get(f"{self.base}/hub/spawn", timeout=30)
        response.raise_for_status()
        return response.text

    def spawn(self, user: str, profile: str) -> requests.Response:
        """Submit the spawn form as the browser does."""
        return self.session.post(
            f"{self.base}/hub/spawn/{user}",
            data={"profile": profile, "_xsrf": self.xsrf},
            timeout=60,
            allow_redirects=False,
        )

    def wait_for_server(self, user: str, timeout: float = 90) -> dict:
        """Wait until the user's default server is ready (or its spawn failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            if (not server or not server.get("pending")) and not model.get("pending"):
                return server or {}
            time.sleep(0.5)
        raise TimeoutError(f"server of {user} not ready after {timeout}s")

    def open_server(self, user: str, path: str = "lab") -> requests.Response:
        """Open the user's server as a browser does (the OAuth redirects set its cookie)."""
        return self.session.get(f"{self.base}/user/{user}/{path}", timeout=60)

    def progress_messages(self, user: str) -> list[str]:
        """The spawn progress events (server-sent events) as the spawn page shows them."""
        response = self.api("GET", f"/users/{user}/server/progress", stream=True)
        messages = []
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[len("data:") :])
                if "message" in event:
                    messages.append(event["message"])
                if event.get("ready") or event.get("failed"):
                    break
        return messages

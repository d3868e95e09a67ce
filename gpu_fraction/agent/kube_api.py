"""The Kubernetes API as the agent's pod reaches it, with the standard library only.

The agent talks to two endpoints (patch its node, list the pods on its node) and must start on
nodes whose image carries no Kubernetes client, so it sends plain HTTPS requests as the pod's
service account. The token is re-read on every request because bound tokens are rotated.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TOKEN_FILE = SERVICE_ACCOUNT_DIR + "/token"
DEFAULT_CA_FILE = SERVICE_ACCOUNT_DIR + "/ca.crt"


class KubeAPIError(Exception):
    """A request that did not get through; the text says why (RBAC's words where it refused)."""


class KubeAPI:
    """Requests to one API server: ``base_url`` defaults to
    ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        token_file: str | Path = DEFAULT_TOKEN_FILE,
        ca_file: str | Path | None = DEFAULT_CA_FILE,
        timeout: float = 10.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url or in_cluster_url(os.environ if environ is None else environ)
        self.token_file = Path(token_file)
        self.ca_file = Path(ca_file) if ca_file else None
        self.timeout = timeout

    def describe(self) -> str:
        return self.base_url or "(no API server configured)"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """Send one request; returns the decoded JSON answer or raises :class:`KubeAPIError`."""
        if not self.base_url:
            raise KubeAPIError("KUBERNETES_SERVICE_HOST is not set (is the agent in a pod?)")
        url = f"{self.base_url.rstrip('/')}{path}"
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = content_type
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._ssl_context(url)
            ) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            raise KubeAPIError(f"HTTP {err.code} {_error_detail(err)}") from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise KubeAPIError(str(err)) from None
        try:
            return json.loads(payload or b"null")
        except ValueError as err:
            raise KubeAPIError(
                f"the API server answered something that is not JSON: {err}"
            ) from None

    def _token(self) -> str | None:
        try:
            return self.token_file.read_text(encoding="utf-8").strip() or None
        except OSError as err:
            logger.warning("no service-account token at %s (%s)", self.token_file, err)
            return None

    def _ssl_context(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("https:"):
            return None
        if self.ca_file is not None and self.ca_file.exists():
            return ssl.create_default_context(cafile=str(self.ca_file))
        return ssl.create_default_context()


def in_cluster_url(environ: Mapping[str, str]) -> str | None:
    """The API server's URL from a pod's environment, or None outside a pod."""
    host = environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        return None
    port = environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:  # an IPv6 address needs brackets in a URL
        host = f"[{host}]"
    return f"https://{host}:{port}"


def _error_detail(err: urllib.error.HTTPError) -> str:
    """The API server's Status message when there is one (it says what RBAC refused)."""
    try:
        payload = json.loads(err.read().decode("utf-8", "replace") or "{}")
    except (ValueError, OSError):
        return str(err.reason)
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])
    return str(err.reason)

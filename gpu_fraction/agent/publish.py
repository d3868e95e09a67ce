"""Publish the node's GPU list, the value of the node annotation ``ai-console/gpus``.

Two targets: a JSON file (the single-machine hub reads it; its content is exactly the
annotation's value, a JSON list) and the node object in Kubernetes, patched from inside the
agent's pod with the standard library only. A failure is logged and reported as ``False``; it
never stops the agent, which retries later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .. import keys

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TOKEN_FILE = SERVICE_ACCOUNT_DIR + "/token"
DEFAULT_CA_FILE = SERVICE_ACCOUNT_DIR + "/ca.crt"

GpuList = Sequence[Mapping[str, Any]]


def annotation_value(gpus: GpuList) -> str:
    """The annotation's text: a compact JSON list of ``{index, uuid, product, memory_mib}``."""
    return json.dumps([dict(gpu) for gpu in gpus], separators=(",", ":"), sort_keys=True)


def node_patch(gpus: GpuList) -> dict[str, Any]:
    """The JSON merge patch that sets the annotation on a node (other annotations untouched)."""
    return {"metadata": {"annotations": {keys.ANN_NODE_GPUS: annotation_value(gpus)}}}


class Publisher(Protocol):
    """Something that can publish a GPU list; ``True`` when it got through."""

    def publish(self, gpus: GpuList) -> bool: ...

    def describe(self) -> str: ...


class FilePublisher:
    """Writes the list to a file atomically (temporary file in the same folder + ``os.replace``),
    so a reader never sees half a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"file {self.path}"

    def publish(self, gpus: GpuList) -> bool:
        tmp_name: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(annotation_value(gpus) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            # mkstemp creates the file 0600; the hub may run as another user and must read it.
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, self.path)
            tmp_name = None
        except OSError as err:
            logger.error("cannot write the GPU list to %s: %s", self.path, err)
            return False
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
        logger.info("published %d GPU(s) to %s", len(gpus), self.path)
        return True


class NodeAnnotationPublisher:
    """Patches ``/api/v1/nodes/<name>`` with the annotation, as the pod's service account.

    ``base_url`` defaults to ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``; the
    token is re-read on every publish because bound service-account tokens are rotated. The
    service account needs ``patch`` on ``nodes``.
    """

    def __init__(
        self,
        node_name: str,
        *,
        base_url: str | None = None,
        token_file: str | Path = DEFAULT_TOKEN_FILE,
        ca_file: str | Path | None = DEFAULT_CA_FILE,
        timeout: float = 10.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.node_name = node_name
        self.base_url = base_url or _in_cluster_url(os.environ if environ is None else environ)
        self.token_file = Path(token_file)
        self.ca_file = Path(ca_file) if ca_file else None
        self.timeout = timeout

    def describe(self) -> str:
        return f"node {self.node_name} at {self.base_url or '(no API server configured)'}"

    def publish(self, gpus: GpuList) -> bool:
        if not self.base_url:
            logger.error(
                "cannot publish GPUs to node %s: KUBERNETES_SERVICE_HOST is not set "
                "(is the agent running in a pod?)",
                self.node_name,
            )
            return False
        url = f"{self.base_url.rstrip('/')}/api/v1/nodes/{urllib.parse.quote(self.node_name)}"
        headers = {
            "Content-Type": "application/merge-patch+json",
            "Accept": "application/json",
        }
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps(node_patch(gpus)).encode("utf-8")
        request = urllib.request.Request(url, data=body, headers=headers, method="PATCH")
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._ssl_context(url)
            ) as response:
                response.read()
        except urllib.error.HTTPError as err:
            detail = _error_detail(err)
            logger.error(
                "cannot publish GPUs to node %s: HTTP %d %s", self.node_name, err.code, detail
            )
            return False
        except (urllib.error.URLError, OSError, ValueError) as err:
            logger.error("cannot publish GPUs to node %s: %s", self.node_name, err)
            return False
        logger.info("published %d GPU(s) to node %s", len(gpus), self.node_name)
        return True

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


def _in_cluster_url(environ: Mapping[str, str]) -> str | None:
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

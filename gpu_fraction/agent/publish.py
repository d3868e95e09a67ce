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
import tempfile
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .. import keys
from .kube_api import KubeAPI, KubeAPIError

logger = logging.getLogger(__name__)

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
    """Patches ``/api/v1/nodes/<name>`` with the annotation through ``api`` (the pod's service
    account, which needs ``patch`` on ``nodes``)."""

    def __init__(self, node_name: str, api: KubeAPI) -> None:
        self.node_name = node_name
        self.api = api

    @property
    def base_url(self) -> str | None:
        return self.api.base_url

    def describe(self) -> str:
        return f"node {self.node_name} at {self.api.describe()}"

    def publish(self, gpus: GpuList) -> bool:
        path = f"/api/v1/nodes/{urllib.parse.quote(self.node_name)}"
        try:
            self.api.request(
                "PATCH", path, node_patch(gpus), content_type="application/merge-patch+json"
            )
        except KubeAPIError as err:
            logger.error("cannot publish GPUs to node %s: %s", self.node_name, err)
            return False
        logger.info("published %d GPU(s) to node %s", len(gpus), self.node_name)
        return True

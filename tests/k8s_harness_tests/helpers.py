"""Helpers shared by the harness tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client


def pod_manifest(name: str, labels: dict | None = None, **spec: object) -> dict:
    """A minimal valid pod."""
    body: dict = {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": body,
    }


def wait(predicate: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def api_error(exc: client.ApiException) -> dict[str, Any]:
    """The parsed Status body of an ApiException."""
    import json

    return json.loads(exc.body)

"""The fault proxy in front of the real API server, as the hub's clients meet it: errors with
the server's Status shape, lost responses after a write, and KubeSpawner's reflectors
recovering from dropped watches and failed re-lists."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from kubespawner.spawner import PodReflector

from tests.control_plane.api import ApiError

from .test_kubelet import pod


async def eventually(check: Callable[[], object], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def test_a_lost_create_response_still_created_the_pod(kube):
    hub = kube.hub_client()
    kube.faults.fail(1.0, 503, verbs="create", resources="pods", times=1, after=True)
    with pytest.raises(ApiError) as lost:
        hub.create("pods", pod("made-anyway", "pass"), kube.namespace)
    assert lost.value.code == 503 and lost.value.reason == "ServiceUnavailable"
    assert kube.get("pods", "made-anyway") is not None  # the write happened
    with pytest.raises(ApiError) as again:
        hub.create("pods", pod("made-anyway", "pass"), kube.namespace)
    assert again.value.code == 409  # the real server's AlreadyExists, no fault any more


async def test_pod_reflector_survives_dropped_watches_and_failed_relists(kube):
    kube.add_node("node-1")
    dropped = kube.faults.drop_watches(after_events=1, resources="pods")
    reflector = PodReflector(
        namespace=kube.namespace, labels={"component": "singleuser-server"}, timeout_seconds=5
    )
    await reflector.start()
    try:
        await eventually(lambda: dropped.matched >= 1)  # the watch is established
        failed = kube.faults.fail(1.0, 503, verbs="list", resources="pods", times=2)
        for i in range(3):
            body = pod(f"jupyter-{i}", "import time; time.sleep(60)")
            body["metadata"]["labels"] = {"component": "singleuser-server"}
            kube.admin.create("pods", body, kube.namespace)
            key = f"{kube.namespace}/jupyter-{i}"
            await eventually(lambda key=key: key in reflector.pods)
        # Each event closed the stream; the re-lists failed twice before the reflector recovered.
        assert dropped.injected >= 2 and failed.injected == 2
        phase = lambda: reflector.pods[f"{kube.namespace}/jupyter-2"]["status"].get("phase")  # noqa: E731
        await eventually(lambda: phase() == "Running")
    finally:
        await reflector.stop()

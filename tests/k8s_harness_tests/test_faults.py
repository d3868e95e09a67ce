"""Fault injection: failing shares of requests with Status bodies, delays, dropped watches."""

from __future__ import annotations

import json
import time

import pytest
import urllib3
from kubernetes import client, watch

from tests.k8s_harness import KubeHarness

from .helpers import pod_manifest


def _outcomes(core: client.CoreV1Api, n: int) -> list[int]:
    out = []
    for _ in range(n):
        try:
            core.list_namespaced_config_map("default")
            out.append(200)
        except client.ApiException as exc:
            out.append(exc.status)
    return out


def test_share_of_requests_fail_deterministically(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    rule = k8s_harness.faults.fail(0.3, 503, verbs="list", resources="configmaps")
    first = _outcomes(core, 60)
    failures = first.count(503)
    assert set(first) == {200, 503}
    assert 8 <= failures <= 30
    assert rule.injected == failures and rule.matched == 60
    k8s_harness.faults.reseed(0)
    assert _outcomes(core, 60) == first  # same seed, same sequence
    core.list_namespaced_secret("default")  # other resources are untouched
    k8s_harness.faults.clear()
    assert _outcomes(core, 5) == [200] * 5


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
        (429, "TooManyRequests"),
        (504, "Timeout"),
    ],
)
def test_status_bodies(
    k8s_harness: KubeHarness, core: client.CoreV1Api, code: int, reason: str
) -> None:
    k8s_harness.faults.fail(1.0, code, verbs="create", resources="pods", times=1)
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_pod("default", pod_manifest("p"))
    body = json.loads(info.value.body)
    assert info.value.status == code
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == reason and body["code"] == code
    if code == 429:
        assert info.value.headers["Retry-After"] == "1"
    assert k8s_harness.get("pods", "p") is None  # refused before it was applied
    core.create_namespaced_pod("default", pod_manifest("p"))  # times=1: the retry works


def test_lost_response_after_apply(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.faults.fail(1.0, 504, verbs="create", resources="pods", times=1, after=True)
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_pod("default", pod_manifest("maybe"))
    assert info.value.status == 504
    assert k8s_harness.get("pods", "maybe") is not None  # the write happened anyway
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_pod("default", pod_manifest("maybe"))
    assert info.value.status == 409


def test_delay_triggers_client_timeout(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    rule = k8s_harness.faults.delay(0.5, verbs="get", resources="namespaces", times=1)
    start = time.monotonic()
    # urllib3 retries the read timeout on its own; the second attempt is not delayed.
    assert core.read_namespace("default", _request_timeout=0.2).metadata.name == "default"
    assert 0.2 <= time.monotonic() - start < 0.7  # a delayed retry would take >= 0.7 s
    assert rule.injected == 1
    k8s_harness.faults.delay(0.5, verbs="get", resources="namespaces")
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        core.read_namespace("default", _request_timeout=0.1)


def test_dropped_watch_streams(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.faults.drop_watches(after_events=1, resources="pods")
    for name in ("a", "b", "c"):
        core.create_namespaced_pod("default", pod_manifest(name, schedulerName="manual"))
    start = time.monotonic()
    events = list(watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=5))
    assert len(events) == 1 and time.monotonic() - start < 2  # closed early, not at the timeout
    k8s_harness.faults.clear()
    k8s_harness.faults.slow_watches(0.2, resources="pods")
    start = time.monotonic()
    w = watch.Watch()
    for i, _ in enumerate(w.stream(core.list_namespaced_pod, "default", timeout_seconds=5)):
        if i == 2:
            w.stop()
    assert time.monotonic() - start >= 0.6

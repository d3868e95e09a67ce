"""LIST + WATCH semantics: resourceVersion resume, selectors, 410 Expired, bookmarks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import requests
from kubernetes import client, watch

from tests.k8s_harness import KubeHarness

from .helpers import pod_manifest


def _events(
    core: client.CoreV1Api, expect: int | None = None, **kwargs: object
) -> list[tuple[str, str]]:
    """Watch pods in default: until ``expect`` events arrived, else until the 1 s timeout."""
    w = watch.Watch()
    out = []
    timeout = 5 if expect else 1
    for ev in w.stream(core.list_namespaced_pod, "default", timeout_seconds=timeout, **kwargs):
        out.append((ev["type"], ev["raw_object"]["metadata"]["name"]))
        if expect is not None and len(out) >= expect:
            w.stop()
    return out


def test_resume_from_list_resource_version(
    k8s_harness_factory: Callable[..., KubeHarness],
) -> None:
    harness = k8s_harness_factory()  # no nodes: no kubelet changes the pods
    core = client.CoreV1Api(harness.sync_api_client())
    core.create_namespaced_pod("default", pod_manifest("a", schedulerName="manual"))
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod_manifest("b", schedulerName="manual"))
    core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "y"}}})
    core.delete_namespaced_pod("a", "default")
    assert _events(core, 3, resource_version=rv) == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
    ]
    later = core.list_namespaced_pod("default").metadata.resource_version
    assert _events(core, resource_version=later) == []


def test_watch_without_resource_version_starts_with_current_state(
    k8s_harness_factory: Callable[..., KubeHarness],
) -> None:
    harness = k8s_harness_factory()
    core = client.CoreV1Api(harness.sync_api_client())
    # A scheduler nobody runs: no controller touches these pods.
    core.create_namespaced_pod("default", pod_manifest("one", schedulerName="manual"))
    core.create_namespaced_pod("default", pod_manifest("two", schedulerName="manual"))
    assert sorted(_events(core, 2)) == [("ADDED", "one"), ("ADDED", "two")]
    assert sorted(_events(core, 2, resource_version="0")) == [("ADDED", "one"), ("ADDED", "two")]


def test_label_selector_transitions(
    k8s_harness_factory: Callable[..., KubeHarness],
) -> None:
    harness = k8s_harness_factory()
    core = client.CoreV1Api(harness.sync_api_client())
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod_manifest("p", schedulerName="manual"))
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": "x"}}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"tier": "1"}}})
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": None}}})
    events = _events(core, 3, resource_version=rv, label_selector="app in (x, y)")
    assert events == [("ADDED", "p"), ("MODIFIED", "p"), ("DELETED", "p")]


def test_field_selectors(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod_manifest("runner"))
    k8s_harness.wait_for_pod_phase("runner", "Running")
    running = core.list_namespaced_pod("default", field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["runner"]
    on_node = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=harness-node-1")
    assert [p.metadata.name for p in on_node.items] == ["runner"]
    events = core.list_namespaced_event(
        "default", field_selector="involvedObject.kind=Pod,involvedObject.name=runner"
    )
    assert {"Scheduled", "Started"} <= {e.reason for e in events.items}
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert info.value.status == 400
    assert json.loads(info.value.body)["message"] == "field label not supported: spec.bogus"
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("default", label_selector="a in b")
    assert info.value.status == 400


def test_too_old_resource_version_is_410_expired(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    old = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod_manifest("new"))
    k8s_harness.compact()
    with pytest.raises(client.ApiException) as info:
        _events(core, resource_version=old)
    assert info.value.status == 410
    assert info.value.reason.startswith("Expired: too old resource version")
    # The raw stream: HTTP 200, then one ERROR event carrying a Status.
    resp = requests.get(
        f"{k8s_harness.url}/api/v1/namespaces/default/pods",
        params={"watch": "1", "resourceVersion": old},
        headers={"Authorization": f"Bearer {k8s_harness.token}"},
        timeout=5,
    )
    assert resp.status_code == 200
    event = json.loads(resp.text.splitlines()[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_pod("default", resource_version=old, resource_version_match="Exact")
    assert info.value.status == 410


def test_bookmarks_and_timeout(k8s_harness_factory: Callable[..., KubeHarness]) -> None:
    harness = k8s_harness_factory(bookmark_interval=0.2)
    core = client.CoreV1Api(harness.sync_api_client())
    rv = core.list_namespaced_pod("default").metadata.resource_version
    start = time.monotonic()
    w = watch.Watch()
    types = [
        ev["type"]
        for ev in w.stream(
            core.list_namespaced_pod,
            "default",
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
        )
    ]
    assert 0.9 < time.monotonic() - start < 3
    assert "BOOKMARK" in types


def test_chunked_newline_delimited_stream(k8s_harness: KubeHarness) -> None:
    headers = {"Authorization": f"Bearer {k8s_harness.token}"}
    lines = []
    with requests.get(
        f"{k8s_harness.url}/api/v1/namespaces",
        params={"watch": "true", "timeoutSeconds": "5"},
        headers=headers,
        stream=True,
        timeout=5,
    ) as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        for line in resp.iter_lines():
            lines.append(json.loads(line))
            if len(lines) == 4:  # the four system namespaces
                break
    assert {ev["object"]["metadata"]["name"] for ev in lines} >= {"default", "kube-system"}
    assert all(ev["type"] == "ADDED" and ev["object"]["kind"] == "Namespace" for ev in lines)


def test_send_initial_events(k8s_harness: KubeHarness) -> None:
    headers = {"Authorization": f"Bearer {k8s_harness.token}"}
    params = {
        "watch": "1",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "5",
    }
    events = []
    with requests.get(
        f"{k8s_harness.url}/api/v1/namespaces",
        params=params,
        headers=headers,
        stream=True,
        timeout=5,
    ) as resp:
        for line in resp.iter_lines():
            events.append(json.loads(line))
            if events[-1]["type"] == "BOOKMARK":
                break
    assert [e["type"] for e in events] == ["ADDED"] * 4 + ["BOOKMARK"]
    annotations = events[-1]["object"]["metadata"]["annotations"]
    assert annotations == {"k8s.io/initial-events-end": "true"}
    bad = requests.get(
        f"{k8s_harness.url}/api/v1/namespaces",
        params={"watch": "1", "resourceVersionMatch": "NotOlderThan", "resourceVersion": "1"},
        headers=headers,
        timeout=5,
    )
    assert bad.status_code == 422

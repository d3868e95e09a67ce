"""CRUD for every resource through the real sync client, and the server's error shapes."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from kubernetes import client

from tests.k8s_harness import KubeHarness

from .helpers import api_error, pod_manifest


def _raises(fn, *args, **kwargs) -> client.ApiException:
    with pytest.raises(client.ApiException) as info:
        fn(*args, **kwargs)
    return info.value


def test_discovery_and_version(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    version = client.VersionApi(core.api_client).get_code()
    assert (version.major, version.minor) == ("1", "33")
    groups = client.ApisApi(core.api_client).get_api_versions()
    assert [g.name for g in groups.groups] == ["batch"]
    resources = core.get_api_resources()
    names = {r.name for r in resources.resources}
    assert {"pods", "pods/status", "pods/log", "services", "secrets", "namespaces"} <= names
    jobs = client.BatchV1Api(core.api_client).get_api_resources()
    assert {r.name for r in jobs.resources} == {"jobs", "jobs/status"}


def test_requires_bearer_token(k8s_harness: KubeHarness) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = requests.get(f"{k8s_harness.url}/api/v1/namespaces", headers=headers, timeout=5)
        assert resp.status_code == 401
        assert resp.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    ok = requests.get(
        f"{k8s_harness.url}/version",
        headers={"Authorization": f"Bearer {k8s_harness.token}"},
        timeout=5,
    )
    assert ok.status_code == 200


def test_pod_crud_and_server_fields(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod_manifest("web", {"app": "web"}))
    md = created.metadata
    assert md.uid and md.creation_timestamp and int(md.resource_version) > 0
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always"
    assert created.spec.termination_grace_period_seconds == 30
    assert created.spec.containers[0].image_pull_policy == "IfNotPresent"

    read = core.read_namespaced_pod("web", "default")
    assert read.metadata.uid == md.uid

    listed = core.list_namespaced_pod("default", label_selector="app=web")
    assert [p.metadata.name for p in listed.items] == ["web"]
    assert int(listed.metadata.resource_version) >= int(md.resource_version)

    patched = core.patch_namespaced_pod("web", "default", {"metadata": {"labels": {"tier": "x"}}})
    assert patched.metadata.labels == {"app": "web", "tier": "x"}
    assert int(patched.metadata.resource_version) > int(md.resource_version)

    read.metadata.annotations = {"note": "replaced"}
    assert _raises(core.replace_namespaced_pod, "web", "default", read).status == 409  # stale
    fresh = core.read_namespaced_pod("web", "default")
    fresh.metadata.annotations = {"note": "replaced"}
    replaced = core.replace_namespaced_pod("web", "default", fresh)
    assert replaced.metadata.annotations == {"note": "replaced"}
    assert replaced.metadata.labels == {"app": "web", "tier": "x"}


def test_conflict_on_stale_resource_version(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cfg"}, "data": {"a": "1"}}
    )
    core.patch_namespaced_config_map("cfg", "default", {"data": {"a": "2"}})
    first.data = {"a": "3"}
    exc = _raises(core.replace_namespaced_config_map, "cfg", "default", first)
    body = api_error(exc)
    assert exc.status == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "cfg": the object has been modified; please '
        "apply your changes to the latest version and try again"
    )
    assert body["details"] == {"name": "cfg", "kind": "configmaps"}


def test_not_found_and_already_exists_shapes(core: client.CoreV1Api) -> None:
    exc = _raises(core.read_namespaced_pod, "nope", "default")
    assert exc.status == 404
    assert api_error(exc) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }
    core.create_namespaced_pod("default", pod_manifest("twice"))
    exc = _raises(core.create_namespaced_pod, "default", pod_manifest("twice"))
    assert exc.status == 409
    assert api_error(exc)["reason"] == "AlreadyExists"
    assert api_error(exc)["message"] == 'pods "twice" already exists'
    exc = _raises(core.create_namespaced_pod, "missing-ns", pod_manifest("x"))
    assert exc.status == 404
    assert api_error(exc)["details"] == {"name": "missing-ns", "kind": "namespaces"}


async def test_schema_invalid_pod_is_refused_and_not_stored(k8s_harness: KubeHarness) -> None:
    # The sync client (v37) refuses unknown fields itself, so send them with kubernetes_asyncio.
    from kubernetes_asyncio import client as aclient

    async with await k8s_harness.async_api_client() as api_client:
        core = aclient.CoreV1Api(api_client)
        bad = pod_manifest("typo")
        bad["spec"]["containers"][0]["imagee"] = "busybox"
        with pytest.raises(aclient.ApiException) as info:
            await core.create_namespaced_pod("default", bad)
        body = json.loads(info.value.body)
        assert info.value.status == 422
        assert body["reason"] == "Invalid"
        assert body["details"]["kind"] == "Pod"
        assert body["details"]["causes"][0]["field"] == "spec.containers[0].imagee"
        assert "'imagee' was unexpected" in body["message"]
        assert k8s_harness.get("pods", "typo") is None

        wrong_type = pod_manifest("wrong-type")
        wrong_type["spec"]["containers"][0]["ports"] = [{"containerPort": "80"}]
        with pytest.raises(aclient.ApiException) as info:
            await core.create_namespaced_pod("default", wrong_type)
        assert info.value.status == 422
        assert "is not of type 'integer'" in json.loads(info.value.body)["message"]
        assert k8s_harness.get("pods", "wrong-type") is None


@pytest.mark.parametrize(
    ("name", "field", "expected"),
    [
        ("Upper", "metadata.name", "a lowercase RFC 1123 subdomain must consist of"),
        ("x" * 254, "metadata.name", "must be no more than 253 characters"),
    ],
)
def test_invalid_names(core: client.CoreV1Api, name: str, field: str, expected: str) -> None:
    exc = _raises(core.create_namespaced_pod, "default", pod_manifest(name))
    body = api_error(exc)
    assert exc.status == 422
    assert body["message"].startswith(f'Pod "{name}" is invalid: {field}: Invalid value: ')
    assert expected in body["message"]
    assert body["details"]["causes"][0] == {
        "reason": "FieldValueInvalid",
        "message": body["details"]["causes"][0]["message"],
        "field": field,
    }


def test_semantic_validation(core: client.CoreV1Api) -> None:
    bad = pod_manifest("gpu", {"bad key!": "v"})
    bad["spec"]["containers"][0]["resources"] = {"requests": {"nvidia.com/gpu": "1"}}
    bad["spec"]["containers"].append({"name": "main", "image": "x"})
    exc = _raises(core.create_namespaced_pod, "default", bad)
    causes = {(c["field"], c["reason"]) for c in api_error(exc)["details"]["causes"]}
    assert ("metadata.labels", "FieldValueInvalid") in causes
    assert ("spec.containers[0].resources.limits", "FieldValueRequired") in causes
    assert ("spec.containers[1].name", "FieldValueDuplicate") in causes
    svc = {"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}}
    exc = _raises(core.create_namespaced_service, "default", svc)
    assert "DNS-1035 label" in api_error(exc)["message"]
    exc = _raises(core.create_namespaced_pod, "default", {**pod_manifest("x"), "metadata": {}})
    assert (
        "metadata.name: Required value: name or generateName is required"
        in api_error(exc)["message"]
    )


def test_pod_spec_is_immutable(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod_manifest("frozen"))
    exc = _raises(
        core.patch_namespaced_pod, "frozen", "default", {"spec": {"restartPolicy": "Never"}}
    )
    assert exc.status == 422
    assert "pod updates may not change fields other than" in api_error(exc)["message"]
    image = {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}}
    assert core.patch_namespaced_pod("frozen", "default", image).spec.containers[0].image == (
        "busybox:1.37"
    )


def test_generate_name_and_dry_run(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    body = pod_manifest("")
    body["metadata"] = {"generateName": "gen-"}
    made = core.create_namespaced_pod("default", body)
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9
    dry = core.create_namespaced_pod("default", pod_manifest("dry"), dry_run="All")
    assert dry.metadata.name == "dry"
    assert k8s_harness.get("pods", "dry") is None


def test_services_pvcs_secrets_configmaps_events(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    svc = core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "hub"},
            "spec": {"selector": {"app": "hub"}, "ports": [{"port": 8081}]},
        },
    )
    assert svc.spec.cluster_ip.startswith("127.96.")
    assert svc.spec.ports[0].target_port == 8081
    assert core.delete_namespaced_service("hub", "default").metadata.name == "hub"

    pvc = core.create_namespaced_persistent_volume_claim(
        "default",
        {
            "metadata": {"name": "claim-a"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    assert pvc.status.phase == "Pending"
    k8s_harness.wait_for(
        lambda: (k8s_harness.get("pvc", "claim-a") or {}).get("status", {}).get("phase") == "Bound"
    )
    assert core.read_namespaced_persistent_volume_claim("claim-a", "default").spec.volume_name

    secret = core.create_namespaced_secret(
        "default", {"metadata": {"name": "tok"}, "stringData": {"token": "s3cret"}}
    )
    assert secret.type == "Opaque" and secret.string_data is None
    assert base64.b64decode(secret.data["token"]) == b"s3cret"
    exc = _raises(
        core.create_namespaced_secret, "default", {"metadata": {"name": "b"}, "data": {"k": "!!"}}
    )
    assert exc.status == 422

    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"k": "v"}})
    status = core.delete_namespaced_config_map("cm", "default")
    assert status["kind"] == "Status" and status["status"] == "Success"

    event = core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "ev1"},
            "involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"},
            "reason": "Test",
            "message": "hello",
            "type": "Normal",
        },
    )
    assert event.reason == "Test"
    events = core.list_namespaced_event("default", field_selector="reason=Test")
    assert [e.metadata.name for e in events.items] == ["ev1"]


def test_nodes_and_namespaces(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    k8s_harness.add_node("gpu-1", labels={"gpu": "rtx3090"}, allocatable={"nvidia.com/gpu": 4})
    node = core.read_node("gpu-1")
    assert node.status.allocatable["nvidia.com/gpu"] == "4"
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert node.status.addresses[0].address == "127.0.0.1"
    assert [n.metadata.name for n in core.list_node(label_selector="gpu").items] == ["gpu-1"]

    ns = core.create_namespace({"metadata": {"name": "course-a"}})
    assert ns.status.phase == "Active"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "course-a"
    core.create_namespaced_config_map("course-a", {"metadata": {"name": "x"}})
    core.create_namespaced_pod("course-a", pod_manifest("p"))
    deleted = core.delete_namespace("course-a")
    assert deleted["status"]["phase"] == "Terminating"
    exc = _raises(core.create_namespaced_config_map, "course-a", {"metadata": {"name": "y"}})
    assert exc.status == 403
    k8s_harness.wait_for_deletion("namespaces", "course-a", namespace="")
    assert k8s_harness.list("pods", "course-a") == []
    exc = _raises(core.delete_namespace, "default")
    assert exc.status == 403


def test_owner_references_are_garbage_collected(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "dep", "ownerReferences": [ref]}}
    )
    core.delete_namespaced_config_map("owner", "default")
    k8s_harness.wait_for_deletion("secrets", "dep")


def test_list_paging(core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"page-{i}"}})
    first = core.list_namespaced_config_map("default", limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    names = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map("default", limit=2, _continue=token)
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert names == [f"page-{i}" for i in range(5)]


def test_status_subresource_and_patch_types(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod_manifest("st", schedulerName="manual"))
    # Writes to the main resource ignore status; writes to /status change nothing else.
    pod = core.read_namespaced_pod("st", "default")
    pod.status.phase = "Running"
    pod.metadata.labels = {"via": "put"}
    kept = core.replace_namespaced_pod("st", "default", pod)
    assert kept.status.phase == "Pending" and kept.metadata.labels == {"via": "put"}
    status = core.patch_namespaced_pod_status(
        "st",
        "default",
        {"metadata": {"labels": {"ignored": "yes"}}, "status": {"phase": "Running"}},
    )
    assert status.status.phase == "Running" and status.metadata.labels == {"via": "put"}

    core.create_namespaced_config_map("default", {"metadata": {"name": "p"}, "data": {"a": "1"}})
    ops = [{"op": "add", "path": "/data/b", "value": "2"}, {"op": "remove", "path": "/data/a"}]
    assert core.patch_namespaced_config_map("p", "default", ops).data == {"b": "2"}
    merged = core.patch_namespaced_config_map(
        "p",
        "default",
        {"data": {"b": None, "c": "3"}},
        _content_type="application/merge-patch+json",
    )
    assert merged.data == {"c": "3"}
    failed = [{"op": "test", "path": "/data/c", "value": "nope"}]
    assert _raises(core.patch_namespaced_config_map, "p", "default", failed).status == 422
    stale = {"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}}
    assert _raises(core.patch_namespaced_config_map, "p", "default", stale).status == 409


def test_delete_collection(k8s_harness: KubeHarness, core: client.CoreV1Api) -> None:
    for name, tier in (("x1", "a"), ("x2", "a"), ("x3", "b")):
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": name, "labels": {"tier": tier}}}
        )
    core.delete_collection_namespaced_config_map("default", label_selector="tier=a")
    assert [c["metadata"]["name"] for c in k8s_harness.list("configmaps", "default")] == ["x3"]


def test_foreground_deletion_waits_for_dependents(
    k8s_harness: KubeHarness, core: client.CoreV1Api
) -> None:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "fg"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "fg",
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": True,
    }
    core.create_namespaced_pod(
        "default", {**pod_manifest("dep"), "metadata": {"name": "dep", "ownerReferences": [ref]}}
    )
    k8s_harness.wait_for_pod_phase("dep", "Running")
    body = core.delete_namespaced_config_map("fg", "default", propagation_policy="Foreground")
    assert body["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert body["metadata"]["deletionTimestamp"]
    k8s_harness.wait_for_deletion("pods", "dep")
    k8s_harness.wait_for_deletion("configmaps", "fg")

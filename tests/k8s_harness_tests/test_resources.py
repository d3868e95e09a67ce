"""The same create/read/list/patch/replace/delete round trip for every resource type."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.k8s_harness import KubeHarness

from .helpers import pod_manifest

MANIFESTS: dict[str, dict[str, Any]] = {
    "pod": {
        **pod_manifest("obj"),
        "spec": {**pod_manifest("obj")["spec"], "schedulerName": "manual"},
    },
    "service": {"metadata": {"name": "obj"}, "spec": {"ports": [{"port": 80}]}},
    "persistent_volume_claim": {
        "metadata": {"name": "obj"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    },
    "secret": {"metadata": {"name": "obj"}, "data": {"k": "dg=="}},
    "config_map": {"metadata": {"name": "obj"}, "data": {"k": "v"}},
    "event": {
        "metadata": {"name": "obj"},
        "involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"},
        "reason": "R",
        "message": "m",
    },
    "namespace": {"metadata": {"name": "obj"}},
    "node": {"metadata": {"name": "obj"}},
    "job": {
        "metadata": {"name": "obj"},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}
            },
        },
    },
}
CLUSTER_SCOPED = {"namespace", "node"}


def _call(api: Any, verb: str, kind: str, *args: Any, **kwargs: Any) -> Any:
    scope = "" if kind in CLUSTER_SCOPED else "namespaced_"
    if kind not in CLUSTER_SCOPED:
        # Namespaced calls take the namespace after the name (or first, for create/list).
        at = 0 if verb in ("create", "list") else 1
        args = (*args[:at], "default", *args[at:])
    return getattr(api, f"{verb}_{scope}{kind}")(*args, **kwargs)


def _plain(obj: Any) -> dict:
    return obj if isinstance(obj, dict) else obj.to_dict()


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_round_trip(k8s_harness: KubeHarness, kind: str) -> None:
    api_client = k8s_harness.sync_api_client()
    api = client.BatchV1Api(api_client) if kind == "job" else client.CoreV1Api(api_client)
    created = _call(api, "create", kind, MANIFESTS[kind])
    assert created.metadata.uid and created.metadata.resource_version
    assert _call(api, "read", kind, "obj").metadata.uid == created.metadata.uid
    listed = _call(api, "list", kind, field_selector="metadata.name=obj")
    assert [o.metadata.name for o in listed.items] == ["obj"]
    patched = _call(api, "patch", kind, "obj", {"metadata": {"labels": {"round": "trip"}}})
    assert patched.metadata.labels["round"] == "trip"
    fresh = _call(api, "read", kind, "obj")
    fresh.metadata.annotations = {"replaced": "yes"}
    replaced = _call(api, "replace", kind, "obj", fresh)
    assert replaced.metadata.annotations == {"replaced": "yes"}
    assert int(replaced.metadata.resource_version) > int(patched.metadata.resource_version)
    with pytest.raises(client.ApiException) as info:
        _call(api, "create", kind, MANIFESTS[kind])
    assert info.value.status == 409
    body = _plain(_call(api, "delete", kind, "obj"))
    assert body["metadata"] is not None
    plural = {"persistent_volume_claim": "pvc", "config_map": "configmaps"}.get(kind, kind)
    k8s_harness.wait_for_deletion(
        plural, "obj", namespace="" if kind in CLUSTER_SCOPED else "default"
    )
    with pytest.raises(client.ApiException) as info:
        _call(api, "read", kind, "obj")
    assert info.value.status == 404

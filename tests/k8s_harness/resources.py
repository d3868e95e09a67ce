"""The resource types the harness serves, and the discovery documents describing them."""

from __future__ import annotations

from dataclasses import dataclass

from .common import K8S_GIT_VERSION, K8S_VERSION

_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (e.g. ``pods``) of one group/version."""

    plural: str
    singular: str
    kind: str
    group: str
    version: str
    namespaced: bool
    # Which DNS rule metadata.name must follow: "subdomain", "label" or "dns1035".
    name_rule: str = "subdomain"
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = _ALL_VERBS
    # Stores created with ReturnDeletedObject answer DELETE with the object, not a Status.
    return_deleted_object: bool = False

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        """Whether the resource has a status subresource (status is ignored on main writes)."""
        return "status" in self.subresources


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "namespaces",
        "namespace",
        "Namespace",
        "",
        "v1",
        False,
        name_rule="label",
        short_names=("ns",),
        subresources=("status",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    ResourceType(
        "nodes", "node", "Node", "", "v1", False, short_names=("no",), subresources=("status",)
    ),
    ResourceType(
        "pods",
        "pod",
        "Pod",
        "",
        "v1",
        True,
        short_names=("po",),
        subresources=("status", "log"),
        return_deleted_object=True,
    ),
    ResourceType(
        "services",
        "service",
        "Service",
        "",
        "v1",
        True,
        name_rule="dns1035",
        short_names=("svc",),
        subresources=("status",),
        return_deleted_object=True,
    ),
    ResourceType(
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        "",
        "v1",
        True,
        short_names=("pvc",),
        subresources=("status",),
        return_deleted_object=True,
    ),
    ResourceType("secrets", "secret", "Secret", "", "v1", True),
    ResourceType("configmaps", "configmap", "ConfigMap", "", "v1", True, short_names=("cm",)),
    ResourceType("events", "event", "Event", "", "v1", True, short_names=("ev",)),
    ResourceType("jobs", "job", "Job", "batch", "v1", True, subresources=("status",)),
)

_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_NAME: dict[str, ResourceType] = {}
for _r in RESOURCES:
    for _alias in (_r.plural, _r.singular, _r.kind, _r.kind.lower(), *_r.short_names):
        _BY_NAME[_alias] = _r


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    """Find a resource by its URL parts."""
    return _BY_PATH.get((group, version, plural))


def resolve(name: str) -> ResourceType:
    """Find a resource by plural, singular, kind or short name (for harness helpers)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown resource {name!r}") from None


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    """Find a resource by the apiVersion/kind of an object."""
    for r in RESOURCES:
        if r.kind == kind and r.api_version == api_version:
            return r
    return None


GROUP_VERSIONS = {"": ("v1",), "batch": ("v1",)}


def api_versions(server_address: str) -> dict:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_doc(group: str) -> dict:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUP_VERSIONS[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_group_list() -> dict:
    """``GET /apis``."""
    groups = [_group_doc(g) for g in GROUP_VERSIONS if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict | None:
    """``GET /apis/{group}``."""
    if group not in GROUP_VERSIONS or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group)}


_SUBRESOURCE_VERBS = {"status": ("get", "patch", "update"), "log": ("get",)}


def api_resource_list(group: str, version: str) -> dict | None:
    """``GET /api/v1`` or ``GET /apis/{group}/{version}``."""
    if version not in GROUP_VERSIONS.get(group, ()):
        return None
    entries = []
    for r in RESOURCES:
        if r.group != group or r.version != version:
            continue
        entry = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        entries.append(entry)
        for sub in r.subresources:
            kind = "Pod" if sub == "log" else r.kind
            entries.append(
                {
                    "name": f"{r.plural}/{sub}",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": kind,
                    "verbs": list(_SUBRESOURCE_VERBS[sub]),
                }
            )
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}


def version_info() -> dict:
    """``GET /version``."""
    major, minor = K8S_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": K8S_GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }

"""Semantic validation per kind (what the API server checks beyond the OpenAPI schema)."""

from __future__ import annotations

import base64
import binascii
import json

from . import quantity
from .common import get_path
from .errors import (
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
    too_long,
)
from .names import (
    NAME_RULES,
    config_key_errors,
    label_key_errors,
    port_name_errors,
    port_number_errors,
)
from .pod_validation import label_map_errors, validate_pod_spec, validate_pod_update
from .resources import ResourceType
from .selectors import selector_from_match

_MAX_ANNOTATIONS_BYTES = 256 * 1024
_MAX_DATA_BYTES = 1024 * 1024
_ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")


def validate_metadata(rt: ResourceType, md: dict) -> list[FieldError]:
    """ValidateObjectMeta: name, namespace, labels, annotations, finalizers, owner references."""
    errs: list[FieldError] = []
    name_rule = NAME_RULES[rt.name_rule]
    name = md.get("name", "")
    errs += [invalid("metadata.name", name, m) for m in name_rule(name)]
    if rt.namespaced:
        ns = md.get("namespace", "")
        if not ns:
            errs.append(required("metadata.namespace"))
        else:
            errs += [invalid("metadata.namespace", ns, m) for m in NAME_RULES["label"](ns)]
    errs += label_map_errors(md.get("labels"), "metadata.labels")
    annotations = md.get("annotations") or {}
    size = 0
    for key, value in annotations.items():
        errs += [invalid("metadata.annotations", key, m) for m in label_key_errors(key)]
        size += len(key) + len(str(value))
    if size > _MAX_ANNOTATIONS_BYTES:
        errs.append(too_long("metadata.annotations", _MAX_ANNOTATIONS_BYTES))
    for i, fin in enumerate(md.get("finalizers") or []):
        errs += [invalid(f"metadata.finalizers[{i}]", fin, m) for m in label_key_errors(fin)]
    for i, ref in enumerate(md.get("ownerReferences") or []):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errs.append(
                    invalid(f"metadata.ownerReferences[{i}].{key}", "", "must not be empty")
                )
    return errs


def _job(job: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = job.get("spec") or {}
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        if spec.get(key) is not None and spec[key] < 0:
            errs.append(invalid(f"spec.{key}", spec[key], "must be greater than or equal to 0"))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        errs.append(invalid("spec.activeDeadlineSeconds", deadline, "must be greater than 0"))
    template = spec.get("template") or {}
    tmeta, tspec = template.get("metadata") or {}, template.get("spec") or {}
    errs += label_map_errors(tmeta.get("labels"), "spec.template.metadata.labels")
    if tspec.get("restartPolicy") not in ("OnFailure", "Never"):
        errs.append(
            required("spec.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"')
        )
    errs += [
        e for e in validate_pod_spec(tspec, "spec.template.spec") if "restartPolicy" not in e.field
    ]
    selector = spec.get("selector")
    if selector is None:
        errs.append(required("spec.selector"))
    elif not selector_from_match(selector).matches(tmeta.get("labels")):
        errs.append(
            invalid(
                "spec.template.metadata.labels",
                tmeta.get("labels") or {},
                "`selector` does not match template `labels`",
            )
        )
    if spec.get("completionMode") not in ("NonIndexed", "Indexed"):
        errs.append(
            not_supported(
                "spec.completionMode", spec.get("completionMode"), ["NonIndexed", "Indexed"]
            )
        )
    return errs


def _service(svc: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = svc.get("spec") or {}
    stype = spec.get("type")
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if stype not in types:
        errs.append(not_supported("spec.type", stype, types))
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if stype == "ExternalName":
        if not spec.get("externalName"):
            errs.append(required("spec.externalName"))
    elif not ports and not headless:
        errs.append(required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        ppath = f"spec.ports[{i}]"
        name = port.get("name", "")
        if len(ports) > 1 and not name:
            errs.append(required(f"{ppath}.name"))
        elif name:
            errs += [invalid(f"{ppath}.name", name, m) for m in NAME_RULES["label"](name)]
            if name in names:
                errs.append(duplicate(f"{ppath}.name", name))
            names.add(name)
        errs += [
            invalid(f"{ppath}.port", port.get("port"), m)
            for m in port_number_errors(port.get("port", 0))
        ]
        if port.get("protocol") not in ("TCP", "UDP", "SCTP"):
            errs.append(
                not_supported(f"{ppath}.protocol", port.get("protocol"), ["SCTP", "TCP", "UDP"])
            )
        target = port.get("targetPort")
        if isinstance(target, int):
            errs += [invalid(f"{ppath}.targetPort", target, m) for m in port_number_errors(target)]
        elif isinstance(target, str):
            errs += [invalid(f"{ppath}.targetPort", target, m) for m in port_name_errors(target)]
        node_port = port.get("nodePort")
        if node_port is not None and stype not in ("NodePort", "LoadBalancer"):
            errs.append(
                forbidden(f"{ppath}.nodePort", "may not be used when `type` is 'ClusterIP'")
            )
        elif node_port is not None and not 30000 <= node_port <= 32767:
            errs.append(
                invalid(
                    f"{ppath}.nodePort",
                    node_port,
                    "provided port is not in the valid range. "
                    "The range of valid ports is 30000-32767",
                )
            )
    errs += label_map_errors(spec.get("selector"), "spec.selector")
    return errs


def _pvc(pvc: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = pvc.get("spec") or {}
    modes = spec.get("accessModes") or []
    if not modes:
        errs.append(required("spec.accessModes", "at least 1 access mode is required"))
    for mode in modes:
        if mode not in _ACCESS_MODES:
            errs.append(not_supported("spec.accessModes", mode, list(_ACCESS_MODES)))
    storage = get_path(spec, "resources", "requests", "storage")
    if storage is None:
        errs.append(required("spec.resources[storage]"))
    else:
        try:
            if quantity.parse(storage) <= 0:
                errs.append(
                    invalid("spec.resources[storage]", storage, "must be greater than zero")
                )
        except quantity.QuantityError:
            errs.append(
                invalid("spec.resources[storage]", storage, f"quantities {quantity.QUANTITY_HINT}")
            )
    if spec.get("volumeMode") not in ("Filesystem", "Block"):
        errs.append(
            not_supported("spec.volumeMode", spec.get("volumeMode"), ["Block", "Filesystem"])
        )
    return errs


def _data_keys(data: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in data:
        errs += [invalid(f"{path}[{key}]", key, m) for m in config_key_errors(key)]
    return errs


def _secret(secret: dict) -> list[FieldError]:
    data = secret.get("data") or {}
    errs = _data_keys(data, "data")
    size = 0
    for key, value in data.items():
        try:
            size += len(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            errs.append(
                invalid(f"data[{key}]", "<secret contents redacted>", "illegal base64 data")
            )
    if size > _MAX_DATA_BYTES:
        errs.append(too_long("data", _MAX_DATA_BYTES))
    return errs


def _configmap(cm: dict) -> list[FieldError]:
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    errs = _data_keys(data, "data") + _data_keys(binary, "binaryData")
    for key in set(data) & set(binary):
        errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    if len(json.dumps(data)) + len(json.dumps(binary)) > _MAX_DATA_BYTES:
        errs.append(too_long("data", _MAX_DATA_BYTES))
    return errs


def _event(event: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    ns = event["metadata"].get("namespace", "")
    involved_ns = get_path(event, "involvedObject", "namespace")
    if involved_ns and involved_ns != ns:
        errs.append(
            invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
        )
    if event.get("type") and event["type"] not in ("Normal", "Warning"):
        errs.append(not_supported("type", event["type"], ["Normal", "Warning"]))
    return errs


def _node(node: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, taint in enumerate(get_path(node, "spec", "taints", default=[]) or []):
        effect = taint.get("effect")
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(
                not_supported(
                    f"spec.taints[{i}].effect",
                    effect,
                    ["NoExecute", "NoSchedule", "PreferNoSchedule"],
                )
            )
        errs += [
            invalid(f"spec.taints[{i}].key", taint.get("key"), m)
            for m in label_key_errors(taint.get("key", ""))
        ]
    return errs


_BY_KIND = {
    "Pod": lambda o: validate_pod_spec(o.get("spec") or {}),
    "Job": _job,
    "Service": _service,
    "PersistentVolumeClaim": _pvc,
    "Secret": _secret,
    "ConfigMap": _configmap,
    "Event": _event,
    "Node": _node,
}


def validate_object(rt: ResourceType, obj: dict) -> list[FieldError]:
    """All semantic checks for a create (or the new state of an update)."""
    errs = validate_metadata(rt, obj.get("metadata") or {})
    check = _BY_KIND.get(rt.kind)
    if check:
        errs += check(obj)
    return errs


def _immutable(path: str, new: object, old: object) -> list[FieldError]:
    return [] if new == old else [invalid(path, new, "field is immutable")]


def validate_update(rt: ResourceType, new: dict, old: dict) -> list[FieldError]:
    """Checks that only apply to updates (immutable fields)."""
    errs: list[FieldError] = []
    nmd, omd = new["metadata"], old["metadata"]
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        errs += _immutable(f"metadata.{key}", nmd.get(key), omd.get(key))
    nspec, ospec = new.get("spec") or {}, old.get("spec") or {}
    if rt.kind == "Pod":
        errs += validate_pod_update(nspec, ospec)
    elif rt.kind == "Job":
        for key in ("selector", "template", "completions", "completionMode"):
            errs += _immutable(f"spec.{key}", nspec.get(key), ospec.get(key))
    elif rt.kind == "PersistentVolumeClaim":
        strip = lambda s: {k: v for k, v in s.items() if k not in ("resources", "volumeName")}  # noqa: E731
        if strip(nspec) != strip(ospec):
            errs.append(
                forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and "
                    "volumeAttributesClassName for bound claims",
                )
            )
    elif rt.kind == "Service":
        if ospec.get("clusterIP") and nspec.get("clusterIP") != ospec.get("clusterIP"):
            errs.append(
                invalid("spec.clusterIPs[0]", nspec.get("clusterIP"), "may not change once set")
            )
    elif rt.kind in ("Secret", "ConfigMap") and old.get("immutable"):
        for key in ("data", "binaryData"):
            if new.get(key) != old.get(key):
                errs.append(forbidden(key, "field is immutable when `immutable` is set"))
        if not new.get("immutable"):
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    return errs

"""Pod spec checks from ValidatePodSpec and ValidatePodUpdate that matter."""

from __future__ import annotations

from fractions import Fraction

from . import quantity
from .common import deep_copy
from .errors import (
    FieldError,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    required,
)
from .names import (
    config_key_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    label_key_errors,
    label_value_errors,
    port_name_errors,
    port_number_errors,
)

_FIELD_REF_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_RESOURCE_FIELD_REFS = (
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
)
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
    "to 1 if it was previously negative)"
)


def is_extended_resource(name: str) -> bool:
    """Extended resources (e.g. ``nvidia.com/gpu``) are domain-qualified, outside kubernetes.io."""
    if "/" not in name:
        return False
    domain = name.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def label_map_errors(labels: object, path: str) -> list[FieldError]:
    """ValidateLabels."""
    errs: list[FieldError] = []
    if not isinstance(labels, dict):
        return errs
    for key, value in labels.items():
        errs += [invalid(path, key, m) for m in label_key_errors(key)]
        if isinstance(value, str):
            errs += [invalid(path, value, m) for m in label_value_errors(value)]
    return errs


def _resources(res: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    parsed: dict[str, dict[str, Fraction]] = {"limits": {}, "requests": {}}
    for section in ("limits", "requests"):
        for name, value in (res.get(section) or {}).items():
            rpath = f"{path}.{section}[{name}]"
            standard = name in _STANDARD_CONTAINER_RESOURCES or name.startswith("hugepages-")
            if not standard and not is_extended_resource(name):
                errs.append(invalid(rpath, name, "must be a standard resource for containers"))
                continue
            try:
                amount = quantity.parse(value)
            except quantity.QuantityError:
                errs.append(invalid(rpath, value, f"quantities {quantity.QUANTITY_HINT}"))
                continue
            if amount < 0:
                errs.append(invalid(rpath, value, "must be greater than or equal to 0"))
            if is_extended_resource(name) and amount.denominator != 1:
                errs.append(invalid(rpath, value, "must be an integer"))
            parsed[section][name] = amount
    limits, requests = parsed["limits"], parsed["requests"]
    for name, amount in requests.items():
        rpath = f"{path}.requests[{name}]"
        value = res["requests"][name]
        if is_extended_resource(name):
            if name not in limits:
                errs.append(
                    required(f"{path}.limits", "Limit must be set for non overcommitable resources")
                )
            elif limits[name] != amount:
                errs.append(
                    invalid(rpath, value, f"must be equal to {name} limit of {res['limits'][name]}")
                )
        elif name in limits and amount > limits[name]:
            errs.append(
                invalid(
                    rpath,
                    value,
                    f"must be less than or equal to {name} limit of {res['limits'][name]}",
                )
            )
    return errs


def _env(env_list: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, env in enumerate(env_list):
        epath = f"{path}[{i}]"
        name = env.get("name", "")
        if not name:
            errs.append(required(f"{epath}.name"))
        elif "=" in name or not name.isprintable() or not name.isascii():
            errs.append(
                invalid(
                    f"{epath}.name",
                    name,
                    "a valid environment variable name must consist only of printable ASCII "
                    "characters other than '='",
                )
            )
        source = env.get("valueFrom")
        if source is None:
            continue
        if env.get("value"):
            errs.append(
                invalid(f"{epath}.valueFrom", "", "may not be specified when `value` is not empty")
            )
        kinds = [
            k
            for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
            if k in source
        ]
        if not kinds:
            errs.append(
                invalid(
                    f"{epath}.valueFrom",
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                    "`secretKeyRef`",
                )
            )
        elif len(kinds) > 1:
            errs.append(
                invalid(
                    f"{epath}.valueFrom", "", "may not have more than one field specified at a time"
                )
            )
        if "fieldRef" in source:
            fp = source["fieldRef"].get("fieldPath", "")
            label_ref = fp.startswith(
                ("metadata.labels['", "metadata.annotations['")
            ) and fp.endswith("']")
            if fp not in _FIELD_REF_PATHS and not label_ref:
                errs.append(
                    not_supported(
                        f"{epath}.valueFrom.fieldRef.fieldPath", fp, list(_FIELD_REF_PATHS)
                    )
                )
        if "resourceFieldRef" in source:
            res = source["resourceFieldRef"].get("resource", "")
            if res not in _RESOURCE_FIELD_REFS:
                errs.append(
                    not_supported(
                        f"{epath}.valueFrom.resourceFieldRef.resource",
                        res,
                        list(_RESOURCE_FIELD_REFS),
                    )
                )
        for ref in ("configMapKeyRef", "secretKeyRef"):
            if ref in source:
                key = source[ref].get("key", "")
                if not source[ref].get("name"):
                    errs.append(required(f"{epath}.valueFrom.{ref}.name"))
                errs += [
                    invalid(f"{epath}.valueFrom.{ref}.key", key, m) for m in config_key_errors(key)
                ]
    return errs


def _probe(probe: dict | None, path: str) -> list[FieldError]:
    if not isinstance(probe, dict):
        return []
    handlers = [h for h in _PROBE_HANDLERS if h in probe]
    if not handlers:
        return [required(path, "must specify a handler type")]
    if len(handlers) > 1:
        return [forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type")]
    return []


def _container(c: dict, path: str, volumes: set[str], init: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    if not c.get("image"):
        errs.append(required(f"{path}.image"))
    port_names: set[str] = set()
    for j, port in enumerate(c.get("ports") or []):
        ppath = f"{path}.ports[{j}]"
        errs += [
            invalid(f"{ppath}.containerPort", port.get("containerPort"), m)
            for m in port_number_errors(port.get("containerPort", 0))
        ]
        if "hostPort" in port and port["hostPort"] != 0:
            errs += [
                invalid(f"{ppath}.hostPort", port["hostPort"], m)
                for m in port_number_errors(port["hostPort"])
            ]
        if port.get("protocol") not in ("TCP", "UDP", "SCTP"):
            errs.append(
                not_supported(f"{ppath}.protocol", port.get("protocol"), ["SCTP", "TCP", "UDP"])
            )
        if "name" in port:
            errs += [
                invalid(f"{ppath}.name", port["name"], m) for m in port_name_errors(port["name"])
            ]
            if port["name"] in port_names:
                errs.append(duplicate(f"{ppath}.name", port["name"]))
            port_names.add(port["name"])
    errs += _env(c.get("env") or [], f"{path}.env")
    for j, src in enumerate(c.get("envFrom") or []):
        count = sum(1 for k in ("configMapRef", "secretRef") if k in src)
        if count != 1:
            errs.append(
                invalid(
                    f"{path}.envFrom[{j}]", "", "must specify one of: `configMapRef` or `secretRef`"
                )
            )
    mount_paths: set[str] = set()
    for j, mount in enumerate(c.get("volumeMounts") or []):
        mpath = f"{path}.volumeMounts[{j}]"
        if mount.get("name") not in volumes:
            errs.append(not_found(f"{mpath}.name", mount.get("name", "")))
        mount_path = mount.get("mountPath", "")
        if not mount_path:
            errs.append(required(f"{mpath}.mountPath"))
        elif mount_path in mount_paths:
            errs.append(invalid(f"{mpath}.mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
        sub = mount.get("subPath", "")
        if sub.startswith("/"):
            errs.append(invalid(f"{mpath}.subPath", sub, "must be a relative path"))
        elif ".." in sub.split("/"):
            errs.append(invalid(f"{mpath}.subPath", sub, "must not contain '..'"))
    errs += _resources(c.get("resources") or {}, f"{path}.resources")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if init and probe in c and c.get("restartPolicy") != "Always":
            errs.append(forbidden(f"{path}.{probe}", "may not be set for init containers"))
        errs += _probe(c.get(probe), f"{path}.{probe}")
    return errs


def _node_selector_requirement(expr: dict, path: str, fields: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    op, values = expr.get("operator"), expr.get("values") or []
    if fields:
        if expr.get("key") != "metadata.name":
            errs.append(not_supported(f"{path}.key", expr.get("key"), ["metadata.name"]))
        if op not in ("In", "NotIn"):
            errs.append(not_supported(f"{path}.operator", op, ["In", "NotIn"]))
        elif len(values) != 1:
            errs.append(
                required(
                    f"{path}.values",
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field "
                    "selector",
                )
            )
        return errs
    errs += [
        invalid(f"{path}.key", expr.get("key"), m) for m in label_key_errors(expr.get("key", ""))
    ]
    if op in ("In", "NotIn") and not values:
        errs.append(
            required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        )
    elif op in ("Exists", "DoesNotExist") and values:
        errs.append(
            forbidden(
                f"{path}.values",
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )
        )
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            errs.append(
                required(
                    f"{path}.values",
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                )
            )
        elif not values[0].lstrip("-").isdigit():
            errs.append(invalid(f"{path}.values[0]", values[0], "must be an integer"))
    elif op not in _SELECTOR_OPS:
        errs.append(not_supported(f"{path}.operator", op, list(_SELECTOR_OPS)))
    return errs


def _affinity(affinity: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    node_aff = affinity.get("nodeAffinity") or {}
    req = node_aff.get("requiredDuringSchedulingIgnoredDuringExecution")
    if isinstance(req, dict):
        rpath = (
            f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
        )
        terms = req.get("nodeSelectorTerms") or []
        if not terms:
            errs.append(required(rpath, "must have at least one node selector term"))
        for i, term in enumerate(terms):
            for j, expr in enumerate(term.get("matchExpressions") or []):
                errs += _node_selector_requirement(
                    expr, f"{rpath}[{i}].matchExpressions[{j}]", False
                )
            for j, expr in enumerate(term.get("matchFields") or []):
                errs += _node_selector_requirement(expr, f"{rpath}[{i}].matchFields[{j}]", True)
    return errs


def _tolerations(tolerations: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, tol in enumerate(tolerations):
        tpath = f"{path}[{i}]"
        op = tol.get("operator") or "Equal"
        if tol.get("key"):
            errs += [invalid(f"{tpath}.key", tol["key"], m) for m in label_key_errors(tol["key"])]
        elif op != "Exists":
            errs.append(
                invalid(
                    f"{tpath}.operator",
                    op,
                    "operator must be Exists when `key` is empty, which means "
                    '"match all values and all keys"',
                )
            )
        if op == "Exists" and tol.get("value"):
            errs.append(
                invalid(f"{tpath}.operator", op, "value must be empty when `operator` is 'Exists'")
            )
        elif op not in ("Exists", "Equal"):
            errs.append(not_supported(f"{tpath}.operator", op, ["Equal", "Exists"]))
        effect = tol.get("effect", "")
        if effect not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(
                not_supported(
                    f"{tpath}.effect", effect, ["NoExecute", "NoSchedule", "PreferNoSchedule"]
                )
            )
        if tol.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(
                invalid(
                    f"{tpath}.effect",
                    effect,
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
    return errs


def _volumes(volumes: list, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, vol in enumerate(volumes):
        vpath = f"{path}[{i}]"
        name = vol.get("name", "")
        errs += [invalid(f"{vpath}.name", name, m) for m in dns1123_label_errors(name)]
        if name in seen:
            errs.append(duplicate(f"{vpath}.name", name))
        seen.add(name)
        sources = [k for k in vol if k != "name"]
        if not sources:
            errs.append(required(vpath, "must specify a volume type"))
        elif len(sources) > 1:
            errs.append(
                forbidden(f"{vpath}.{sources[1]}", "may not specify more than 1 volume type")
            )
        if "persistentVolumeClaim" in vol and not vol["persistentVolumeClaim"].get("claimName"):
            errs.append(required(f"{vpath}.persistentVolumeClaim.claimName"))
        if "secret" in vol and not vol["secret"].get("secretName"):
            errs.append(required(f"{vpath}.secret.secretName"))
        if "configMap" in vol and not vol["configMap"].get("name"):
            errs.append(required(f"{vpath}.configMap.name"))
        if "hostPath" in vol and not vol["hostPath"].get("path"):
            errs.append(required(f"{vpath}.hostPath.path"))
    return errs


def validate_pod_spec(spec: dict, path: str = "spec") -> list[FieldError]:
    """ValidatePodSpec (the checks a client is likely to trip over)."""
    errs: list[FieldError] = []
    volumes = spec.get("volumes") or []
    errs += _volumes(volumes, f"{path}.volumes")
    volume_names = {v.get("name") for v in volumes}
    containers = spec.get("containers") or []
    if not containers:
        errs.append(required(f"{path}.containers"))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            cpath = f"{path}.{key}[{i}]"
            name = c.get("name", "")
            errs += [invalid(f"{cpath}.name", name, m) for m in dns1123_label_errors(name)]
            if name in names:
                errs.append(duplicate(f"{cpath}.name", name))
            names.add(name)
            errs += _container(c, cpath, volume_names, key == "initContainers")
    policy = spec.get("restartPolicy")
    if policy not in ("Always", "OnFailure", "Never"):
        errs.append(
            not_supported(f"{path}.restartPolicy", policy, ["Always", "OnFailure", "Never"])
        )
    dns = spec.get("dnsPolicy")
    dns_ok = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
    if dns not in dns_ok:
        errs.append(not_supported(f"{path}.dnsPolicy", dns, list(dns_ok)))
    errs += label_map_errors(spec.get("nodeSelector"), f"{path}.nodeSelector")
    if isinstance(spec.get("affinity"), dict):
        errs += _affinity(spec["affinity"], f"{path}.affinity")
    errs += _tolerations(spec.get("tolerations") or [], f"{path}.tolerations")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= 2147483647:
        errs.append(
            invalid(
                f"{path}.activeDeadlineSeconds",
                deadline,
                "must be between 1 and 2147483647, inclusive",
            )
        )
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            errs += [
                invalid(f"{path}.{key}", spec[key], m) for m in dns1123_label_errors(spec[key])
            ]
    if spec.get("serviceAccountName"):
        sa = spec["serviceAccountName"]
        errs += [invalid(f"{path}.serviceAccountName", sa, m) for m in dns1123_subdomain_errors(sa)]
    return errs


def validate_pod_update(new_spec: dict, old_spec: dict) -> list[FieldError]:
    """ValidatePodUpdate: only images, activeDeadlineSeconds and added tolerations may change."""
    errs: list[FieldError] = []
    mutated = deep_copy(new_spec)
    for key in ("containers", "initContainers"):
        old_list, new_list = old_spec.get(key) or [], mutated.get(key) or []
        if len(old_list) == len(new_list):
            for old_c, new_c in zip(old_list, new_list, strict=True):
                if "image" in old_c:
                    new_c["image"] = old_c["image"]
    old_deadline, new_deadline = (
        old_spec.get("activeDeadlineSeconds"),
        new_spec.get("activeDeadlineSeconds"),
    )
    if new_deadline != old_deadline and (
        new_deadline is None or (old_deadline is not None and new_deadline > old_deadline)
    ):
        errs.append(
            invalid(
                "spec.activeDeadlineSeconds",
                new_deadline,
                "must be less than or equal to previous value",
            )
        )
    mutated.pop("activeDeadlineSeconds", None)
    if old_deadline is not None:
        mutated["activeDeadlineSeconds"] = old_deadline
    old_tol, new_tol = old_spec.get("tolerations") or [], new_spec.get("tolerations") or []
    if all(t in new_tol for t in old_tol):
        if "tolerations" in old_spec:
            mutated["tolerations"] = deep_copy(old_spec["tolerations"])
        else:
            mutated.pop("tolerations", None)
    if "schedulingGates" in old_spec and not new_spec.get("schedulingGates"):
        mutated["schedulingGates"] = deep_copy(old_spec["schedulingGates"])
    if mutated != old_spec:
        changed = sorted(
            k for k in set(mutated) | set(old_spec) if mutated.get(k) != old_spec.get(k)
        )
        errs.append(
            forbidden(
                "spec",
                f"{POD_UPDATE_FORBIDDEN}\n(changed: {', '.join('spec.' + k for k in changed)})",
            )
        )
    return errs

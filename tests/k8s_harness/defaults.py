"""Defaults the API server (scheme defaulting plus default admission plugins) fills in."""

from __future__ import annotations

import base64

from . import quantity
from .common import get_path

_BASIC_RESOURCES = ("cpu", "memory")


def image_tag(image: str) -> str | None:
    """The tag of an image reference (``None`` when untagged or pinned by digest)."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def _default_probe(probe: dict | None) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _canonical_resources(resources: dict) -> None:
    for section in ("limits", "requests"):
        values = resources.get(section)
        if isinstance(values, dict):
            for name, value in list(values.items()):
                if quantity.is_valid(value):
                    values[name] = quantity.canonical(value)


def default_container(container: dict, host_network: bool) -> None:
    """SetDefaults_Container and friends."""
    image = container.get("image")
    if isinstance(image, str) and "imagePullPolicy" not in container:
        tag = image_tag(image)
        pinned = "@" in image
        container["imagePullPolicy"] = (
            "Always" if not pinned and (tag is None or tag == "latest") else "IfNotPresent"
        )
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    resources = container.setdefault("resources", {})
    if isinstance(resources, dict):
        _canonical_resources(resources)
        limits = resources.get("limits") or {}
        if limits:
            requests = resources.setdefault("requests", {})
            for name, value in limits.items():
                requests.setdefault(name, value)
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if host_network and "containerPort" in port:
            port.setdefault("hostPort", port["containerPort"])
    for env in container.get("env") or []:
        field_ref = get_path(env, "valueFrom", "fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(container.get(probe_name))


def default_pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec plus the defaults of the ServiceAccount, Priority and
    DefaultTolerationSeconds admission plugins."""
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = sa
    host_network = bool(spec.get("hostNetwork"))
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                default_container(container, host_network)
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap", "projected", "downwardAPI"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)
        if isinstance(volume.get("hostPath"), dict):
            volume["hostPath"].setdefault("type", "")
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(
            t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tolerations
        ):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )


def qos_class(spec: dict) -> str:
    """The pod QoS class (Guaranteed, Burstable or BestEffort) from cpu/memory settings."""
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for name in _BASIC_RESOURCES:
            if name in limits or name in requests:
                any_set = True
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def default_job(job: dict) -> None:
    """SetDefaults_Job (the template gets pod-spec defaults too)."""
    spec = job.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault(
        "podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    )
    template_spec = get_path(spec, "template", "spec")
    if isinstance(template_spec, dict):
        default_pod_spec(template_spec)


def default_service(svc: dict) -> None:
    """SetDefaults_Service (cluster IPs are allocated by the registry)."""
    spec = svc.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        if "targetPort" not in port and "port" in port:
            port["targetPort"] = port["port"]


def default_pvc(pvc: dict) -> None:
    """SetDefaults_PersistentVolumeClaim plus the DefaultStorageClass admission plugin."""
    spec = pvc.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    spec.setdefault("storageClassName", "standard")
    requests = get_path(spec, "resources", "requests")
    if isinstance(requests, dict):
        for name, value in list(requests.items()):
            if quantity.is_valid(value):
                requests[name] = quantity.canonical(value)


def default_secret(secret: dict) -> None:
    """Secrets: type Opaque; ``stringData`` is folded into base64 ``data``."""
    secret.setdefault("type", "Opaque")
    string_data = secret.pop("stringData", None)
    if isinstance(string_data, dict):
        data = secret.setdefault("data", {})
        for key, value in string_data.items():
            if isinstance(value, str):
                data[key] = base64.b64encode(value.encode()).decode()


def default_namespace(ns: dict) -> None:
    """Namespaces get the metadata.name label and the ``kubernetes`` finalizer."""
    md = ns["metadata"]
    md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md["name"]
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])

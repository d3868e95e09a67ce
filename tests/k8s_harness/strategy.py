"""Per-kind create/update preparation (the registry "strategies" of the real API server)."""

from __future__ import annotations

import ipaddress
import random

from . import defaults
from .common import deep_copy, get_path
from .errors import ApiError, invalid, invalid_error
from .resources import ResourceType

# Service cluster IPs come from loopback too, so no non-loopback address appears anywhere.
_SERVICE_CIDR = ipaddress.ip_network("127.96.0.0/16")
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class Strategies:
    """Defaults, status resets and allocations applied before validation."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._cluster_ips: set[str] = set()
        self._node_ports: set[int] = set()

    # --- allocation ----------------------------------------------------------------------------

    def _allocate_cluster_ip(self) -> str:
        for _ in range(1000):
            host = self._rng.randrange(2, _SERVICE_CIDR.num_addresses - 1)
            ip = str(_SERVICE_CIDR.network_address + host)
            if ip not in self._cluster_ips:
                self._cluster_ips.add(ip)
                return ip
        raise ApiError(500, "InternalError", "failed to allocate a serviceIP: range is full")

    def _allocate_node_port(self) -> int:
        for _ in range(1000):
            port = self._rng.randrange(30000, 32768)
            if port not in self._node_ports:
                self._node_ports.add(port)
                return port
        raise ApiError(500, "InternalError", "failed to allocate a nodePort: range is full")

    def release(self, rt: ResourceType, obj: dict) -> None:
        """Return allocations of a removed object."""
        if rt.kind == "Service":
            self._cluster_ips.discard(get_path(obj, "spec", "clusterIP", default=""))
            for port in get_path(obj, "spec", "ports", default=[]) or []:
                self._node_ports.discard(port.get("nodePort"))

    # --- create --------------------------------------------------------------------------------

    def prepare_for_create(self, rt: ResourceType, obj: dict) -> None:
        """Fill defaults and server-owned fields of a new object."""
        kind = rt.kind
        if kind == "Pod":
            spec = obj.setdefault("spec", {})
            defaults.default_pod_spec(spec)
            obj["status"] = {"phase": "Pending", "qosClass": defaults.qos_class(spec)}
        elif kind == "Job":
            self._prepare_job(obj)
        elif kind == "Service":
            defaults.default_service(obj)
            self._allocate_service(obj["spec"])
            obj["status"] = {"loadBalancer": {}}
        elif kind == "PersistentVolumeClaim":
            defaults.default_pvc(obj)
            fins = obj["metadata"].setdefault("finalizers", [])
            if "kubernetes.io/pvc-protection" not in fins:
                fins.append("kubernetes.io/pvc-protection")
            obj["status"] = {"phase": "Pending"}
        elif kind == "Secret":
            defaults.default_secret(obj)
        elif kind == "Namespace":
            defaults.default_namespace(obj)
            obj["status"] = {"phase": "Active"}

    def _prepare_job(self, job: dict) -> None:
        md = job["metadata"]
        md["generation"] = 1
        defaults.default_job(job)
        spec = job["spec"]
        uid, name = md["uid"], md["name"]
        if not spec.get("manualSelector"):
            if spec.get("selector") is not None:
                raise invalid_error(
                    "Job",
                    "batch",
                    name,
                    [
                        invalid(
                            "spec.selector", spec["selector"], "`selector` will be auto-generated"
                        )
                    ],
                )
            spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}
            labels = spec.setdefault("template", {}).setdefault("metadata", {})
            labels = labels.setdefault("labels", {})
            labels.update(
                {JOB_UID_LABEL: uid, JOB_NAME_LABEL: name, "controller-uid": uid, "job-name": name}
            )
        job["status"] = {}

    def _allocate_service(self, spec: dict) -> None:
        if spec.get("type") == "ExternalName":
            return
        if not spec.get("clusterIP"):
            spec["clusterIP"] = self._allocate_cluster_ip()
        elif spec["clusterIP"] != "None":
            self._cluster_ips.add(spec["clusterIP"])
        spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                if not port.get("nodePort"):
                    port["nodePort"] = self._allocate_node_port()

    # --- update --------------------------------------------------------------------------------

    def prepare_for_update(
        self, rt: ResourceType, new: dict, old: dict, subresource: str | None
    ) -> dict:
        """Merge server-owned state into an update; returns the object to validate and store."""
        if subresource == "status":
            # Status writes change nothing but status (ResetObjectMetaForStatus).
            result = deep_copy(old)
            result["status"] = new.get("status", {})
            result["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion")
            return result
        nmd, omd = new["metadata"], old["metadata"]
        for key in ("uid", "creationTimestamp", "generation"):
            if key in omd and key not in nmd:
                nmd[key] = omd[key]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in omd:
                nmd[key] = omd[key]
            else:
                nmd.pop(key, None)
        if rt.has_status:
            if "status" in old:
                new["status"] = deep_copy(old["status"])
            else:
                new.pop("status", None)
        kind = rt.kind
        if kind == "Pod":
            defaults.default_pod_spec(new.setdefault("spec", {}))
        elif kind == "Job":
            defaults.default_job(new)
            if new.get("spec") != old.get("spec"):
                nmd["generation"] = omd.get("generation", 1) + 1
        elif kind == "Service":
            defaults.default_service(new)
            spec, ospec = new["spec"], old.get("spec") or {}
            for key in ("clusterIP", "clusterIPs"):
                if not spec.get(key) and ospec.get(key):
                    spec[key] = deep_copy(ospec[key])
            old_ports = {p.get("port"): p for p in ospec.get("ports") or []}
            for port in spec.get("ports") or []:
                prior = old_ports.get(port.get("port"), {})
                if not port.get("nodePort") and prior.get("nodePort"):
                    port["nodePort"] = prior["nodePort"]
            self._allocate_service(spec)
        elif kind == "PersistentVolumeClaim":
            defaults.default_pvc(new)
            ospec = old.get("spec") or {}
            if ospec.get("volumeName") and not new["spec"].get("volumeName"):
                new["spec"]["volumeName"] = ospec["volumeName"]
        elif kind == "Secret":
            defaults.default_secret(new)
        elif kind == "Namespace":
            new.setdefault("spec", {}).setdefault(
                "finalizers", deep_copy(get_path(old, "spec", "finalizers", default=[]))
            )
            new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = nmd["name"]
        return new

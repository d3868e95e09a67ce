"""Write ``helm/ai-console/values.schema.json``: the chart's values, with ``aiConsole`` checked
by the same JSON Schema the hub checks ``ai-console.yaml`` with (``hub_config.schema``), so
``helm lint`` and ``helm install`` refuse a bad admin file before anything is deployed.

Run ``python helm/values_schema.py`` after changing either; a test fails while the file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub_config.schema import SCHEMA

TARGET = Path(__file__).resolve().parent / "ai-console" / "values.schema.json"


def _object(description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A mapping that refuses keys it does not know (a typo is an error, not ignored)."""
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
        **extra,
    }


def _text(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _image(description: str) -> dict[str, Any]:
    return _object(
        description,
        {
            "repository": _text("Image repository.", minLength=1),
            "tag": _text("Image tag.", minLength=1),
            "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        },
        required=["repository", "tag"],
    )


def _pvc(description: str) -> dict[str, Any]:
    return _object(
        description,
        {
            "size": _text("Size of the volume, like 1Gi.", pattern=r"^[0-9]+(\.[0-9]+)?[KMGT]i$"),
            "storageClassName": _text("StorageClass; empty: the cluster's default."),
        },
    )


_FREE = {"type": "object", "description": "As in the Kubernetes pod spec."}
_LIST = {"type": "array", "description": "As in the Kubernetes pod spec."}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}


def values_schema() -> dict[str, Any]:
    admin_file = {k: v for k, v in SCHEMA.items() if k not in ("$schema", "$id")}
    admin_file["description"] = (
        "The admin's ai-console.yaml (empty: the example in the hub image). "
        + SCHEMA["description"]
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ai-console chart values",
        **_object(
            "Values of the ai-console Helm chart.",
            {
                "aiConsole": {"anyOf": [{"type": "object", "maxProperties": 0}, admin_file]},
                "hub": _object(
                    "The hub (one replica, Recreate).",
                    {
                        "image": _image("The hub image (AI Console and JupyterHub)."),
                        "config": {
                            "type": "object",
                            "description": "Traitlets configuration as z2jh's hub.config "
                            "(Class: {trait: value}); kept in the chart's Secret.",
                            "propertyNames": {"pattern": "^[A-Z][A-Za-z0-9_]*$"},
                            "additionalProperties": {"type": "object"},
                        },
                        "extraConfig": _text("Python appended to jupyterhub_config.py."),
                        "db": _object("The hub's volume.", {"pvc": _pvc("Its claim.")}),
                        "resources": _FREE,
                        "nodeSelector": _FREE,
                        "tolerations": _LIST,
                    },
                ),
                "proxy": _object(
                    "configurable-http-proxy.",
                    {
                        "image": _image("The proxy image."),
                        "service": _object(
                            "The public Service.",
                            {
                                "type": {"enum": ["LoadBalancer", "NodePort", "ClusterIP"]},
                                "port": _PORT,
                            },
                        ),
                        "resources": _FREE,
                    },
                ),
                "singleuser": _object(
                    "The user servers' and jobs' image and storage.",
                    {
                        "image": _image("Its image."),
                        "storage": _object(
                            "Each user's files: a claim of their own (dynamic) or none.",
                            {
                                "type": {"enum": ["dynamic", "none"]},
                                "capacity": _text(
                                    "Size of each claim, like 10Gi.",
                                    pattern=r"^[0-9]+(\.[0-9]+)?[KMGT]i$",
                                ),
                                "storageClassName": _text(
                                    "StorageClass; empty: the cluster's default."
                                ),
                                "accessModes": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "enum": [
                                            "ReadWriteOnce",
                                            "ReadWriteMany",
                                            "ReadWriteOncePod",
                                        ]
                                    },
                                },
                                "homeMountPath": _text("Where the claim is mounted.", pattern="^/"),
                                "pvcNameTemplate": _text(
                                    "The claim's name; {username} is the user's.",
                                    pattern="{username}",
                                ),
                            },
                        ),
                    },
                ),
                "jobs": _object(
                    "The Run-as-job service.",
                    {
                        "enabled": {"type": "boolean"},
                        "image": _image("The jobs service's image (the hub image)."),
                        "db": _object(
                            "The job records.",
                            {
                                "url": _text(
                                    "External database URL without password, or empty.",
                                    pattern=r"^(|postgresql(\+[a-z0-9]+)?://\S+)$",
                                ),
                                "existingSecret": _text("A Secret whose key url holds the URL."),
                                "pvc": _pvc("SQLite's claim (no external database)."),
                            },
                        ),
                        "ttlSecondsAfterFinished": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "Seconds a finished Job is kept.",
                        },
                        "resources": _FREE,
                    },
                ),
                "agent": _object(
                    "The node agent DaemonSet.",
                    {
                        "enabled": {"type": "boolean"},
                        "image": _image("The agent image."),
                        "port": {**_PORT, "not": {"const": 9400}},
                        "policy": {"enum": ["report", "sigterm", "sigkill"]},
                        "nodeSelector": _FREE,
                        "tolerations": _LIST,
                        "resources": _FREE,
                    },
                ),
                "mps": _object(
                    "The MPS control daemon DaemonSet.",
                    {
                        "enabled": {"type": "boolean"},
                        "image": _image("A CUDA image with nvidia-cuda-mps-control."),
                        "pipeDirectory": _text("Host pipe directory.", pattern="^/"),
                        "shmDirectory": _text("Host shm directory.", pattern="^/"),
                        "nodeSelector": _FREE,
                    },
                ),
                "networkPolicy": _object("NetworkPolicies.", {"enabled": {"type": "boolean"}}),
                "metrics": _object(
                    "Prometheus.",
                    {
                        "annotations": {"type": "boolean"},
                        "serviceMonitor": _object(
                            "A ServiceMonitor (Prometheus operator).",
                            {"enabled": {"type": "boolean"}},
                        ),
                    },
                ),
            },
        ),
    }


def rendered() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    TARGET.write_text(rendered())
    print(TARGET)

"""A notebook job as a batch/v1 Job: a pure function of the record, no I/O.

Names and labels are derived from the job id and sanitised, never taken raw from users; the
pod gets no service-account token; a GPU slice is written as the hub built it for this job
(environment, volumes, ledger annotations, node), the same builders the spawner uses.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from gpu_fraction.enforcement import RESTRICTED_CONTAINER

from ..store import JobRecord

PREFIX = "ai-console/"
LABEL_JOB_ID = PREFIX + "job-id"
LABEL_OWNER = PREFIX + "owner"
LABEL_PROJECT = PREFIX + "project"
LABEL_SLICE = PREFIX + "slice"
ANNOTATION_OWNER = PREFIX + "job-owner"
MANAGED_BY = {"app.kubernetes.io/managed-by": "ai-console-jobs"}
HOSTNAME_LABEL = "kubernetes.io/hostname"
#: The runner's exit code for a job that cannot run at all (bad spec): retrying cannot help.
EXIT_UNUSABLE = 2


@dataclass(frozen=True)
class JobSettings:
    """Cluster-wide choices for job pods (the backend's traits)."""

    namespace: str
    runner_command: tuple[str, ...]
    storage_claim: str  # with {username}
    storage_mount_path: str
    default_image: str
    ttl_seconds_after_finished: int = 3600
    runtime_class_name: str | None = "nvidia"
    gpu_tolerations: tuple[dict[str, Any], ...] = ()
    extra_labels: dict[str, str] = field(default_factory=dict)


def label_value(text: str) -> str:
    """A valid label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return value.strip("-_.") or "x"


def job_name(job: JobRecord) -> str:
    return f"job-{job.job_id}"  # 36 characters: a DNS-1123 label


def claim_name(template: str, owner: str) -> str:
    """The user's storage claim, with the user name escaped as KubeSpawner does for pods."""
    safe = re.sub(r"[^a-z0-9-]", lambda m: f"-{ord(m.group()):02x}", owner.lower())
    return template.format(username=safe)[:253]


def build_job(
    job: JobRecord,
    settings: JobSettings,
    pod: dict[str, Any] | None,
    runner_environment: dict[str, str] | None = None,
) -> dict:
    """The Job for ``job``; ``pod`` is the hub's slice for it (``None`` for CPU only);
    ``runner_environment`` what the service tells the runner (where to send its outputs)."""
    labels = {
        **settings.extra_labels,
        **MANAGED_BY,
        LABEL_JOB_ID: job.job_id,
        LABEL_OWNER: label_value(job.owner),
        LABEL_PROJECT: label_value(job.project or "none"),
    }
    job_dir = f"{settings.storage_mount_path.rstrip('/')}/{job.snapshot_path.rsplit('/', 1)[0]}"
    env = [{"name": k, "value": v} for k, v in sorted(job.environment.items())]
    env.append({"name": "AI_CONSOLE_JOB_ID", "value": job.job_id})
    env += [{"name": k, "value": v} for k, v in sorted((runner_environment or {}).items())]
    resources: dict[str, Any] = {}
    if job.cpu:
        resources = {
            "requests": {"cpu": str(job.cpu), "memory": _memory(job.memory)},
            "limits": {"cpu": str(job.cpu), "memory": _memory(job.memory)},
        }
    container: dict[str, Any] = {
        "name": "runner",
        "image": job.image_ref or settings.default_image,
        "command": [*settings.runner_command, job_dir],
        "workingDir": settings.storage_mount_path,
        "env": env,
        "resources": resources,
        "volumeMounts": [{"name": "home", "mountPath": settings.storage_mount_path}],
        "securityContext": copy.deepcopy(RESTRICTED_CONTAINER),
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # User code never holds cluster credentials.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [
            {
                "name": "home",
                "persistentVolumeClaim": {
                    "claimName": claim_name(settings.storage_claim, job.owner)
                },
            }
        ],
    }
    pod_meta: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": {ANNOTATION_OWNER: job.owner},
    }
    if job.node:
        # Its user's ReadWriteOnce storage is attached there (a GPU slice is placed there too).
        _pin_to_node(spec, job.node)
    if pod:
        _apply_slice(spec, container, pod_meta, pod, settings)
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(job),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {ANNOTATION_OWNER: job.owner},
        },
        "spec": {
            "backoffLimit": job.max_retries,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            # A failing notebook is retried; a pod evicted or preempted does not burn a retry,
            # and a job the runner cannot run at all fails at once.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "runner",
                            "operator": "In",
                            "values": [EXIT_UNUSABLE],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {"metadata": pod_meta, "spec": spec},
        },
    }
    if job.timeout_seconds:
        body["spec"]["activeDeadlineSeconds"] = job.timeout_seconds
    return body


def _apply_slice(spec: dict, container: dict, meta: dict, pod: dict, settings: JobSettings) -> None:
    """Write the hub's slice into the pod, last, so nothing the user set can undo it."""
    names = set(pod["environment"])
    container["env"] = [e for e in container["env"] if e["name"] not in names] + [
        {"name": k, "value": v} for k, v in pod["environment"].items()
    ]
    spec["volumes"] += pod.get("volumes") or []
    container["volumeMounts"] += pod.get("volume_mounts") or []
    meta["annotations"].update(pod.get("annotations") or {})
    # The ledger lists slice pods by this label, so a restarted hub finds job slices too.
    meta["labels"][LABEL_SLICE] = "true"
    _pin_to_node(spec, pod["node"])
    if settings.runtime_class_name and not pod.get("simulated") and not pod.get("cpu_only"):
        spec["runtimeClassName"] = settings.runtime_class_name
    if settings.gpu_tolerations:
        spec["tolerations"] = [copy.deepcopy(t) for t in settings.gpu_tolerations]


def _pin_to_node(spec: dict, node: str) -> None:
    requirement = {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
    spec["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [requirement]}]
            }
        }
    }


def _memory(value: str | None) -> str:
    """KubeSpawner spelling (``16G`` = 16 GiB) to the Kubernetes one (``16Gi``)."""
    if not value:
        return "0"
    return value + "i" if value[-1] in "KMGT" else value

"""The cluster backend: each job is a batch/v1 Job in the jobs' namespace.

The Job controller runs the pod (retries, deadline, TTL); this backend creates the Job, reads
its state and its pods' (Pending reasons within a poll), and cancels with foreground deletion.
It holds the jobs service's own credentials (in-cluster, or KUBECONFIG), bound to the Role in
``hub_config/kubernetes/jobs-rbac.yaml``; the pods it creates get none.
"""

from __future__ import annotations

import json
import os
from typing import Any

from traitlets import Dict, Integer, List, Unicode, default

from gpu_fraction.enforcement import GPU_TAINT_TOLERATION

from ..model import JOB_FILES, Status
from ..store import JobRecord
from .base import Backend, Launch, Observation, Storage
from .job_manifest import JobSettings, build_job, claim_name, job_name

#: Container waiting reasons that mean the pod will not start by itself.
_STUCK = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"}


class KubernetesBackend(Backend):
    """Runs the notebook runner in a Kubernetes Job per notebook job."""

    logs_outlive_jobs = False  # pod logs go with the pod (TTL, node loss)

    namespace = Unicode(
        config=True,
        help="""Namespace of the Jobs (the hub's, so that the slice ledger sees their pods).
        Defaults to POD_NAMESPACE, else "default".""",
    )
    runner_command = List(
        ["python", "-m", "server_extension.runner"],
        config=True,
        help="""Command that runs a job in its pod; the job folder is appended. The image must
        have this package installed (the single-user image does).""",
    )
    storage_claim_template = Unicode(
        "claim-{username}",
        config=True,
        help="""PersistentVolumeClaim of the user's storage, as the user's notebook pod mounts
        it (z2jh's default is claim-{username}). With ReadWriteMany storage the Job mounts it
        on any node.""",
    )
    storage_mount_path = Unicode(
        "/home/jovyan",
        config=True,
        help="""Where the user's storage is mounted in their server (their Jupyter root), and
        so in the job's pod: job folders are relative to it.""",
    )
    default_image = Unicode(
        "quay.io/jupyter/scipy-notebook:latest",
        config=True,
        help="""Image of a job whose request named none (usually the user's server image).""",
    )
    ttl_seconds_after_finished = Integer(
        3600,
        config=True,
        help="""Seconds a finished Job and its pods are kept before Kubernetes deletes them.
        The log and outputs stay in the user's storage either way.""",
    )
    runtime_class_name = Unicode(
        "nvidia",
        config=True,
        help="""runtimeClassName of pods with a GPU slice; empty: leave it unset.""",
    )
    gpu_tolerations = List(
        Dict(),
        default_value=[GPU_TAINT_TOLERATION],
        config=True,
        help="""Tolerations of job pods with a GPU slice (GPU node pools are often tainted
        nvidia.com/gpu:NoSchedule); [] where GPU nodes are not tainted.""",
    )
    extra_labels = Dict(
        config=True,
        help="""More labels for every Job and its pods (e.g. for NetworkPolicies).""",
    )

    @default("namespace")
    def _namespace_default(self) -> str:
        return os.environ.get("POD_NAMESPACE", "default")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api_client: Any = None

    @property
    def settings(self) -> JobSettings:
        return JobSettings(
            namespace=self.namespace,
            runner_command=tuple(self.runner_command),
            storage_claim=self.storage_claim_template,
            storage_mount_path=self.storage_mount_path,
            default_image=self.default_image,
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            runtime_class_name=self.runtime_class_name or None,
            gpu_tolerations=tuple(self.gpu_tolerations),
            extra_labels=dict(self.extra_labels),
        )

    async def _client(self) -> Any:
        if self._api_client is None:
            from kubernetes_asyncio import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                await config.load_kube_config()
            self._api_client = client.ApiClient()
        return self._api_client

    async def _batch(self) -> Any:
        from kubernetes_asyncio import client

        return client.BatchV1Api(await self._client())

    async def _core(self) -> Any:
        from kubernetes_asyncio import client

        return client.CoreV1Api(await self._client())

    async def start(self, job: JobRecord, launch: Launch) -> str:
        from kubernetes_asyncio.client.exceptions import ApiException

        body = build_job(job, self.settings, launch.pod, launch.runner_environment)
        try:
            await (await self._batch()).create_namespaced_job(self.namespace, body)
        except ApiException as err:
            if err.status != 409:  # already there: a restart between create and record
                raise
        return job_name(job)

    async def _read(self, job: JobRecord) -> dict | None:
        from kubernetes_asyncio.client.exceptions import ApiException

        batch = await self._batch()
        try:
            found = await batch.read_namespaced_job(job_name(job), self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return batch.api_client.sanitize_for_serialization(found)

    async def _pods(self, job: JobRecord) -> list[dict]:
        core = await self._core()
        pods = await core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={job_name(job)}"
        )
        return [core.api_client.sanitize_for_serialization(p) for p in pods.items]

    async def storage(self, owner: str) -> Storage:
        """ReadWriteMany storage mounts anywhere; a ReadWriteOnce claim held by a running pod
        (the user's server) mounts only on that pod's node, so the job is placed there; a
        ReadWriteOncePod claim in use cannot be mounted by a second pod at all."""
        from kubernetes_asyncio.client.exceptions import ApiException

        claim = claim_name(self.storage_claim_template, owner)
        core = await self._core()
        try:
            pvc = await core.read_namespaced_persistent_volume_claim(claim, self.namespace)
        except ApiException as err:
            if err.status == 404:
                return Storage()  # the Job's pod will say what is missing
            raise
        modes = set(pvc.spec.access_modes or []) | set(
            (pvc.status.access_modes if pvc.status else None) or []
        )
        if "ReadWriteMany" in modes or not modes & {"ReadWriteOnce", "ReadWriteOncePod"}:
            return Storage()
        holders = await self._claim_holders(claim)
        if not holders:
            return Storage(shared=False)
        name, node = holders[0]
        if "ReadWriteOncePod" in modes:
            return Storage(
                shared=False,
                node=node,
                blocked=f"your storage ({claim}) can be mounted by one pod at a time and "
                f"{name} has it: stop your server, then run the job",
            )
        return Storage(shared=False, node=node)

    async def _claim_holders(self, claim: str) -> list[tuple[str, str]]:
        """(pod, node) of the running pods that mount ``claim``.

        Asked on every submit and dialog: the list is served from the API server's cache
        (resourceVersion 0) and read as plain JSON, since building client models for every
        pod of a busy namespace costs far more than the answer is worth.
        """
        core = await self._core()
        response = await core.list_namespaced_pod(
            self.namespace,
            field_selector="status.phase=Running",
            resource_version="0",
            _preload_content=False,
        )
        pods = json.loads(await response.read())
        return [
            (pod["metadata"]["name"], pod["spec"]["nodeName"])
            for pod in pods.get("items") or []
            if pod["spec"].get("nodeName")
            and any(
                (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim
                for volume in pod["spec"].get("volumes") or []
            )
        ]

    async def status_of(self, job: JobRecord) -> Observation:
        found = await self._read(job)
        if found is None:
            if job.state is Status.STOPPING:
                return Observation(Status.STOPPED, "cancelled")
            return Observation(Status.FAILED, "the Job was deleted before it finished")
        status = found.get("status") or {}
        attempts = (status.get("failed") or 0) + (status.get("succeeded") or 0)
        attempts += status.get("active") or 0
        conditions = {
            c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"
        }
        if "Complete" in conditions:
            return Observation(Status.COMPLETED, "completed", attempts=attempts)
        if "Failed" in conditions:
            reason = conditions["Failed"].get("reason")
            if reason == "DeadlineExceeded":
                message = "stopped: the job ran past its timeout"
            else:
                message = f"failed ({reason}): {conditions['Failed'].get('message', '')}"
            return Observation(Status.FAILED, message.strip(), attempts=attempts)
        if job.state is Status.STOPPING:
            return Observation(Status.STOPPING, attempts=attempts)
        pods = await self._pods(job)
        running = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
        reason = None if running else _pending_reason(pods)
        state = Status.IN_PROGRESS if running else Status.QUEUED
        return Observation(state, pending_reason=reason, attempts=attempts)

    async def cancel(self, job: JobRecord) -> None:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            await (await self._batch()).delete_namespaced_job(
                job_name(job),
                self.namespace,
                body=client.V1DeleteOptions(propagation_policy="Foreground"),
            )
        except ApiException as err:
            if err.status != 404:
                raise

    async def read_file(self, job: JobRecord, relative: str) -> bytes | None:
        """The log from the newest pod (outputs live only in the owner's storage)."""
        if relative != JOB_FILES["log"]:
            return None
        from kubernetes_asyncio.client.exceptions import ApiException

        pods = await self._pods(job)
        if not pods:
            return None
        newest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        try:
            text = await (await self._core()).read_namespaced_pod_log(
                newest["metadata"]["name"], self.namespace, container="runner"
            )
        except ApiException:
            return None
        return text.encode()

    async def close(self) -> None:
        if self._api_client is not None:
            await self._api_client.close()
            self._api_client = None


def _pending_reason(pods: list[dict]) -> str | None:
    """Why the newest pod does not run: the scheduler's or the kubelet's words."""
    if not pods:
        return "waiting for the Job controller to create the pod"
    newest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    status = newest.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason')}: {condition.get('message', '')}".strip()
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK:
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return status.get("phase")

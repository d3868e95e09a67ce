"""A minimal batch/v1 Job controller: pods from the template, status counters, conditions,
backoffLimit, activeDeadlineSeconds, suspend and ttlSecondsAfterFinished."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from .common import deep_copy, get_condition, get_path, parse_time, rfc3339, set_condition, utcnow
from .errors import ApiError
from .events import EventRecorder
from .registry import DeleteOptions, Registry
from .resources import resolve
from .store import Store

log = logging.getLogger(__name__)
_JOBS, _PODS = resolve("jobs"), resolve("pods")
_TICK_SECONDS = 0.2
_COMPONENT = "job-controller"
_TERMINAL = ("Succeeded", "Failed")


def _true(job: dict, type_: str) -> bool:
    cond = get_condition(job, type_)
    return bool(cond and cond.get("status") == "True")


def owner_job_uid(pod: dict) -> str | None:
    """The uid of the Job controlling a pod, if any."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("controller"):
            return ref.get("uid")
    return None


class JobController:
    """Reconciles every Job on Job/pod changes and on a short tick (deadlines, TTLs)."""

    def __init__(self, registry: Registry, store: Store, events: EventRecorder) -> None:
        self.registry = registry
        self.store = store
        self.events = events
        # Per job uid: pod uid -> "succeeded" | "failed" (pods are counted once, even after
        # they are deleted; the real controller uses a finalizer for the same purpose).
        self._counted: dict[str, dict[str, str]] = {}
        self._seen_active: dict[str, set[str]] = {}

    async def run(self) -> None:
        """Reconcile until cancelled."""
        subs = [self.store.subscribe("jobs"), self.store.subscribe("pods")]
        try:
            while True:
                self.reconcile_all()
                getters = [asyncio.ensure_future(s.queue.get()) for s in subs]
                try:
                    await asyncio.wait(
                        getters, timeout=_TICK_SECONDS, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for g in getters:
                        g.cancel()
                for s in subs:
                    while not s.queue.empty():
                        s.queue.get_nowait()
        finally:
            for s in subs:
                s.close()

    def reconcile_all(self) -> None:
        """Reconcile every job once."""
        for job in self.store.list("jobs"):
            try:
                self.reconcile(job)
            except ApiError as exc:
                log.warning("job %s: %s", job["metadata"]["name"], exc)
            except Exception:
                log.exception("reconciling job %s failed", job["metadata"]["name"])

    def reconcile(self, job: dict) -> None:
        """Bring one job's pods and status in line with its spec."""
        md, spec = job["metadata"], job["spec"]
        if md.get("deletionTimestamp"):
            return
        now = utcnow()
        if _true(job, "Complete") or _true(job, "Failed"):
            self._expire(job, now)
            return
        uid, ns = md["uid"], md["namespace"]
        pods = [p for p in self.store.list("pods", ns) if owner_job_uid(p) == uid]
        counted = self._counted.setdefault(uid, {})
        seen = self._seen_active.setdefault(uid, set())
        present = set()
        for pod in pods:
            puid = pod["metadata"]["uid"]
            present.add(puid)
            phase = get_path(pod, "status", "phase")
            if phase in _TERMINAL:
                counted.setdefault(puid, "succeeded" if phase == "Succeeded" else "failed")
            else:
                seen.add(puid)
        for puid in seen - present:
            counted.setdefault(puid, "failed")  # deleted before it finished
        active = [
            p
            for p in pods
            if get_path(p, "status", "phase") not in _TERMINAL
            and not p["metadata"].get("deletionTimestamp")
        ]
        terminating = [
            p
            for p in pods
            if get_path(p, "status", "phase") not in _TERMINAL
            and p["metadata"].get("deletionTimestamp")
        ]
        succeeded = sum(1 for v in counted.values() if v == "succeeded")
        failed = sum(1 for v in counted.values() if v == "failed")
        restarts = 0
        if get_path(spec, "template", "spec", "restartPolicy") == "OnFailure":
            restarts = sum(
                c.get("restartCount", 0)
                for p in pods
                for c in get_path(p, "status", "containerStatuses", default=[]) or []
            )
        status = deep_copy(job.get("status") or {})
        updates: dict = {}
        started = status.get("startTime")
        if not started and not spec.get("suspend"):
            started = updates["startTime"] = rfc3339(now)
        completions = spec.get("completions")
        failure = None
        deadline = spec.get("activeDeadlineSeconds")
        if failed + restarts > spec.get("backoffLimit", 6):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline and started and (now - parse_time(started)).total_seconds() >= deadline:
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        success = (completions is not None and succeeded >= completions) or (
            completions is None and succeeded > 0 and not active
        )
        conditions: list[tuple] = []
        target = get_condition(job, "FailureTarget")
        if failure or (target and target.get("status") == "True"):
            reason, message = failure or (target["reason"], target["message"])
            conditions.append(("FailureTarget", reason, message))
            self._delete_pods(job, active)
            if not active and not terminating:
                conditions.append(("Failed", reason, message))
                self.events.record(job, "Warning", reason, message, _COMPONENT)
            active = []
        elif success:
            message = "Reached expected number of succeeded pods"
            conditions.append(("SuccessCriteriaMet", "CompletionsReached", message))
            self._delete_pods(job, active)
            if not active and not terminating:
                conditions.append(("Complete", "CompletionsReached", message))
                updates["completionTime"] = rfc3339(now)
                self.events.record(job, "Normal", "Completed", "Job completed", _COMPONENT)
            active = []
        elif spec.get("suspend"):
            self._delete_pods(job, active)
            active = []
            conditions.append(("Suspended", "JobSuspended", "Job suspended"))
        else:
            if _true(job, "Suspended"):
                conditions.append(("Suspended", "JobResumed", "Job resumed", "False"))
            parallelism = spec.get("parallelism", 1)
            remaining = completions - succeeded if completions is not None else parallelism
            for _ in range(min(parallelism, remaining) - len(active)):
                pod = self._create_pod(job)
                if pod is not None:
                    active.append(pod)
        ready = sum(
            1 for p in active if get_path(get_condition(p, "Ready") or {}, "status") == "True"
        )
        self._write_status(
            job, updates, conditions, len(active), ready, len(terminating), succeeded, failed
        )

    def _write_status(
        self,
        job: dict,
        updates: dict,
        conditions: list[tuple],
        active: int,
        ready: int,
        terminating: int,
        succeeded: int,
        failed: int,
    ) -> None:
        def apply(j: dict) -> None:
            status = j.setdefault("status", {})
            status.update(updates)
            for key, value in (("active", active), ("succeeded", succeeded), ("failed", failed)):
                if value:
                    status[key] = value
                else:
                    status.pop(key, None)
            status["ready"] = ready
            status["terminating"] = terminating
            status["uncountedTerminatedPods"] = {}
            for cond in conditions:
                set_condition(
                    j,
                    cond[0],
                    cond[3] if len(cond) > 3 else "True",
                    cond[1],
                    cond[2],
                    probe_time=True,
                )

        md = job["metadata"]
        self.registry.mutate(_JOBS, md["namespace"], md["name"], apply, uid=md["uid"])

    def _create_pod(self, job: dict) -> dict | None:
        md, template = job["metadata"], job["spec"]["template"]
        tmeta = template.get("metadata") or {}
        pod_md: dict = {
            "generateName": f"{md['name']}-",
            "labels": deep_copy(tmeta.get("labels") or {}),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": md["name"],
                    "uid": md["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        if tmeta.get("annotations"):
            pod_md["annotations"] = deep_copy(tmeta["annotations"])
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": pod_md,
            "spec": deep_copy(template["spec"]),
        }
        try:
            created = self.registry.create(_PODS, md["namespace"], pod)
        except ApiError as exc:
            self.events.record(
                job, "Warning", "FailedCreate", f"Error creating: {exc.message}", _COMPONENT
            )
            return None
        self.events.record(
            job,
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {created['metadata']['name']}",
            _COMPONENT,
        )
        return created

    def _delete_pods(self, job: dict, pods: list[dict]) -> None:
        for pod in pods:
            pmd = pod["metadata"]
            with contextlib.suppress(ApiError):
                self.registry.delete(_PODS, pmd["namespace"], pmd["name"], DeleteOptions())
                self.events.record(
                    job, "Normal", "SuccessfulDelete", f"Deleted pod: {pmd['name']}", _COMPONENT
                )

    def _expire(self, job: dict, now: dt.datetime) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        finished = (
            get_condition(job, "Complete")
            if _true(job, "Complete")
            else get_condition(job, "Failed")
        )
        when = (finished or {}).get("lastTransitionTime")
        if when and (now - parse_time(when)).total_seconds() >= ttl:
            md = job["metadata"]
            with contextlib.suppress(ApiError):
                self.registry.delete(
                    _JOBS,
                    md["namespace"],
                    md["name"],
                    DeleteOptions(propagation_policy="Background"),
                )
                self._counted.pop(md["uid"], None)
                self._seen_active.pop(md["uid"], None)

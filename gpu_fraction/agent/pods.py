"""The slices of the pods on this node, read from the annotations the hub wrote on them.

On Kubernetes the agent takes a process's limit and owner from its pod, never from the
process's environment: a user can start a process with any environment they like, but cannot
change their pod's annotations (user pods hold no Kubernetes credentials), nor move a process
out of its pod's cgroup. The pods are listed from the API server's cache with a field selector
for this node; the list is refreshed when a process names a pod not seen yet (at most every
``min_interval_seconds``) and at least every ``max_age_seconds``.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..annotations import AnnotationError, from_annotations, has_allocation
from .kube_api import KubeAPI, KubeAPIError
from .procmap import ProcessOwner

logger = logging.getLogger(__name__)


def owner_from_pod(pod: Mapping[str, Any]) -> ProcessOwner:
    """The owner a pod's annotations tell; a pod without a (readable) slice has no limit."""
    metadata = pod.get("metadata") or {}
    uid = str(metadata.get("uid") or "").lower() or None
    annotations = metadata.get("annotations") or {}
    if not has_allocation(annotations):
        return ProcessOwner(pod_uid=uid)
    try:
        allocation = from_annotations(annotations)
    except AnnotationError as err:
        logger.warning(
            "pod %s/%s has a slice the agent cannot read (%s); its processes are not enforced",
            metadata.get("namespace"),
            metadata.get("name"),
            err,
        )
        return ProcessOwner(pod_uid=uid)
    if allocation.is_cpu_only:
        return ProcessOwner(pod_uid=uid)  # placed without a GPU: no slice to enforce
    return ProcessOwner(
        pod_uid=uid,
        allocation_id=allocation.id,
        memory_limit_mib=allocation.memory_mib,
        user=allocation.owner.user or None,
        kind=allocation.owner.kind or None,
        project=allocation.owner.project or None,
        name=allocation.owner.name or None,
        gpu_uuids=allocation.gpu_uuids,
    )


class PodSlices:
    """Owners of this node's pods by pod UID, listed through the Kubernetes API."""

    def __init__(
        self,
        api: KubeAPI,
        node_name: str,
        *,
        max_age_seconds: float = 60.0,
        min_interval_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.node_name = node_name
        self.max_age_seconds = max_age_seconds
        self.min_interval_seconds = min_interval_seconds
        self._clock = clock
        self._owners: dict[str, ProcessOwner] = {}
        self._listed_at: float | None = None
        self._tried_at: float | None = None

    def owners(self, pod_uids: Iterable[str]) -> dict[str, ProcessOwner]:
        """The owner of each pod asked for; a pod not on this node's list has no limit."""
        wanted = set(pod_uids)
        now = self._clock()
        stale = self._listed_at is None or now - self._listed_at >= self.max_age_seconds
        unknown = bool(wanted - set(self._owners))
        recently_tried = (
            self._tried_at is not None and now - self._tried_at < self.min_interval_seconds
        )
        if (stale or unknown) and not recently_tried:
            self._refresh(now)
        return {uid: self._owners.get(uid, ProcessOwner(pod_uid=uid)) for uid in wanted}

    def _refresh(self, now: float) -> None:
        self._tried_at = now
        selector = urllib.parse.quote(f"spec.nodeName={self.node_name}")
        # resourceVersion=0: served from the API server's cache, not a quorum read of etcd.
        path = f"/api/v1/pods?fieldSelector={selector}&resourceVersion=0"
        try:
            answer = self.api.request("GET", path)
        except KubeAPIError as err:
            # The previous list stays: a slice known a minute ago is still the best answer.
            logger.error("cannot list the pods of node %s: %s", self.node_name, err)
            return
        owners: dict[str, ProcessOwner] = {}
        for pod in (answer or {}).get("items") or []:
            owner = owner_from_pod(pod)
            if owner.pod_uid:
                owners[owner.pod_uid] = owner
        self._owners = owners
        self._listed_at = now

"""Dynamic volumes for the test cluster: the default StorageClass ``standard`` and its
provisioner, as a managed cluster has one (kind's local-path, a cloud disk).

A claim of that class (a claim with no class gets it from the DefaultStorageClass admission
plugin) is given a ``hostPath`` PersistentVolume of its own, ``pvc-<claim uid>``, bound through
``claimRef``; the real PV controller binds them. When the claim is deleted its volume is
deleted too (reclaim policy ``Delete``). The process kubelet keeps a claim's files under
``<kubelet root>/pvc/<namespace>/<claim>``. Claims with ``storageClassName: ""`` are left to
static volumes, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .api import ApiError
from .node_api import NodeApi

log = logging.getLogger(__name__)

CLASS = "standard"
PROVISIONER = "test.ai-console/hostpath"
STORAGE_CLASSES = "/apis/storage.k8s.io/v1/storageclasses"


def _class_of(claim: dict) -> str | None:
    return claim.get("spec", {}).get("storageClassName")


class HostPathProvisioner:
    """Provisions and deletes the volumes of the ``standard`` class."""

    def __init__(self, api: NodeApi) -> None:
        self.api = api
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        with contextlib.suppress(ApiError):  # made once per cluster
            await self.api.request("POST", STORAGE_CLASSES, storage_class)
        self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.api.close()

    async def _watch(self) -> None:
        await self.api.list_and_watch(
            "persistentvolumeclaims", self._listed, self._changed, "volume provisioner"
        )

    async def _listed(self, claims: list[dict]) -> None:
        for claim in claims:
            await self._provision(claim)

    async def _changed(self, kind: str, claim: dict) -> None:
        if kind in ("ADDED", "MODIFIED"):
            await self._provision(claim)
        elif kind == "DELETED" and _class_of(claim) == CLASS:
            await self._delete_volume(claim)

    async def _provision(self, claim: dict) -> None:
        md, spec = claim["metadata"], claim.get("spec") or {}
        if (
            _class_of(claim) != CLASS
            or spec.get("volumeName")
            or md.get("deletionTimestamp")
            or claim.get("status", {}).get("phase") == "Bound"
        ):
            return
        name = f"pvc-{md['uid']}"
        volume = {
            "metadata": {
                "name": name,
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": CLASS,
                "hostPath": {"path": f"/volumes/{name}"},
                "claimRef": {
                    "namespace": md["namespace"],
                    "name": md["name"],
                    "uid": md["uid"],
                },
            },
        }
        try:
            await self.api.request("POST", "/api/v1/persistentvolumes", volume)
        except ApiError as err:
            if err.code != 409:  # made already, on an earlier event
                raise

    async def _delete_volume(self, claim: dict) -> None:
        name = f"pvc-{claim['metadata']['uid']}"
        with contextlib.suppress(ApiError):
            await self.api.delete("persistentvolumes", name, None, {})

"""Job slices in the one ledger: a Job's pod carries the slice, a restarted hub finds it, and a
slice whose job pod is gone for good is released by the reconcile loop (after a grace, since a
Job's pod appears after the Job and again between retries)."""

from __future__ import annotations

import asyncio
from fractions import Fraction

from gpu_fraction.annotations import to_annotations
from gpu_fraction.model import Owner, SliceRequest
from spawner.manager import SLICE_LABEL, GPUSliceManager

from .kube_setup import add_gpu_node, spawner_config


def job_pod(name: str, annotations: dict[str, str]) -> dict:
    return {
        "metadata": {"name": name, "labels": {SLICE_LABEL: "true"}, "annotations": annotations},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "runner", "image": "x", "command": ["sleep", "60"]}],
        },
    }


async def test_a_job_slice_is_kept_while_its_pod_may_come_and_released_when_it_is_gone(kube):
    add_gpu_node(kube, "gpu-01", gpus=1)
    config = spawner_config(kube.namespace, GPUSliceManager__job_slice_grace=2.0)
    manager = GPUSliceManager.instance(config=config)
    held = await manager.reserve(
        SliceRequest(gpu_type="RTX3090", fraction=Fraction(1, 4)),
        Owner("job", "alice", "cs101", "train"),
    )
    manager.commit(held.id)
    assert await manager.reconcile() == []  # no pod yet: the Job controller has not made it
    pod = job_pod("job-abc", to_annotations(held))
    kube.admin.create("pods", pod, kube.namespace)
    await asyncio.sleep(2.5)
    assert await manager.reconcile() == []  # its pod is there, past the grace: kept
    # A hub restart rebuilds the job slice from its pod, like a notebook's.
    GPUSliceManager.clear_instance()
    restarted = GPUSliceManager.instance(config=config)
    await restarted.ready()
    [rebuilt] = restarted.allocations()
    assert (rebuilt.id, rebuilt.owner.kind, rebuilt.owner.user) == (held.id, "job", "alice")
    kube.delete("pods", "job-abc", grace=0)
    kube.wait_for_deletion("pods", "job-abc")
    assert await restarted.reconcile() == []  # gone, but within the grace
    await asyncio.sleep(2.5)
    [released] = await restarted.reconcile()
    assert released.id == held.id and restarted.allocations() == []

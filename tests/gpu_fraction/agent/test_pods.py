"""A pod's owner as the agent reads it from the pod's annotations."""

from __future__ import annotations

from gpu_fraction.agent.pods import owner_from_pod
from gpu_fraction.annotations import to_annotations
from gpu_fraction.model import Allocation, Owner


def test_a_cpu_only_pod_has_no_slice_to_enforce():
    allocation = Allocation.cpu_only("c1", Owner("notebook", "ann"), "gpu-00", 2000, 4096)
    pod = {"metadata": {"uid": "UID-1", "annotations": to_annotations(allocation)}}
    owner = owner_from_pod(pod)
    assert owner.pod_uid == "uid-1"
    assert owner.allocation_id is None and owner.memory_limit_mib is None

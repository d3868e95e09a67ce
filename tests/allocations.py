"""An Allocation as the allocator would hand it out, for tests of what consumes one."""

from __future__ import annotations

from fractions import Fraction

from gpu_fraction.model import Allocation, Owner


def allocation(
    allocation_id: str,
    user: str,
    project: str,
    fraction: str,
    kind: str = "notebook",
    gpu_uuid: str = "GPU-0",
    gpu_type: str = "RTX3090",
    gpu_memory_mib: int = 24576,
) -> Allocation:
    """A slice of ``fraction`` on one GPU (all of it for a whole number)."""
    share = Fraction(fraction)
    return Allocation(
        id=allocation_id,
        owner=Owner(kind, user, project, ""),
        node="gpu-01",
        gpu_type=gpu_type,
        gpu_uuids=(gpu_uuid,),
        gpu_indices=(0,),
        fraction=share,
        memory_mib=int(gpu_memory_mib * min(share, 1)),
        gpu_memory_mib=gpu_memory_mib,
        compute_min=int(100 * min(share, 1)),
        compute_max=100,
    )

"""An allocation as pod annotations, and back.

The cluster is the ledger: every allocation lives on its pod as a small set of ``ai-console/...``
annotations, so the allocator can be rebuilt from the pods that exist after a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction

from . import keys
from .errors import AnnotationError, InvalidRequestError
from .model import GPU, Allocation, Owner, format_fraction, parse_fraction


def to_annotations(allocation: Allocation) -> dict[str, str]:
    """The annotations that describe ``allocation`` on its pod (all values are strings)."""
    owner = allocation.owner
    return {
        keys.ANN_ALLOCATION: allocation.id,
        keys.ANN_NODE: allocation.node,
        keys.ANN_GPU_TYPE: allocation.gpu_type,
        keys.ANN_GPU_UUIDS: ",".join(allocation.gpu_uuids),
        keys.ANN_FRACTION: format_fraction(allocation.fraction),
        keys.ANN_MEMORY_MIB: str(allocation.memory_mib),
        keys.ANN_COMPUTE_MIN: str(allocation.compute_min),
        keys.ANN_COMPUTE_MAX: str(allocation.compute_max),
        keys.ANN_CPU_MILLIS: str(allocation.cpu_millis),
        keys.ANN_HOST_MEMORY_MIB: str(allocation.host_memory_mib),
        keys.ANN_OWNER_KIND: owner.kind,
        keys.ANN_OWNER_USER: owner.user,
        keys.ANN_OWNER_PROJECT: owner.project,
        keys.ANN_OWNER_NAME: owner.name,
    }


def has_allocation(annotations: Mapping[str, str] | None) -> bool:
    return bool(annotations) and keys.ANN_ALLOCATION in annotations


# Parsing a fraction is slow next to everything else here; pods share a handful of sizes.
_FRACTIONS: dict[str, Fraction] = {}


def from_annotations(
    annotations: Mapping[str, str], lookup: Callable[[str], GPU | None] | None = None
) -> Allocation:
    """Read an allocation back from its pod's annotations.

    ``lookup`` finds a GPU by UUID to fill in indices, GPU size and product; GPUs it does not
    know are left for the allocator to refuse. Raises :class:`AnnotationError` naming the
    annotation at fault.
    """

    def text(key: str, required: bool = True) -> str:
        value = annotations.get(key)
        if value is None or (required and value == ""):
            if required:
                raise AnnotationError(key, "missing")
            return ""
        if not isinstance(value, str):
            raise AnnotationError(key, f"must be a string, got {value!r}")
        return value

    def number(key: str, minimum: int, maximum: int | None = None) -> int:
        raw = text(key)
        try:
            value = int(raw)
        except ValueError:
            raise AnnotationError(key, f"must be a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise AnnotationError(key, f"must be {bound}, got {raw!r}")
        return value

    raw_fraction = text(keys.ANN_FRACTION)
    fraction = _FRACTIONS.get(raw_fraction)
    if fraction is None:
        try:
            fraction = parse_fraction(raw_fraction, keys.ANN_FRACTION)
        except InvalidRequestError as err:
            raise AnnotationError(keys.ANN_FRACTION, err.message) from None
        _FRACTIONS[raw_fraction] = fraction
    uuids = tuple(u for u in text(keys.ANN_GPU_UUIDS).split(",") if u)
    if not uuids:
        raise AnnotationError(keys.ANN_GPU_UUIDS, "names no GPU")
    if fraction >= 1 and len(uuids) != int(fraction):
        raise AnnotationError(
            keys.ANN_GPU_UUIDS, f"lists {len(uuids)} GPUs for a slice of {raw_fraction} GPUs"
        )
    if fraction < 1 and len(uuids) != 1:
        raise AnnotationError(keys.ANN_GPU_UUIDS, "a share of one GPU must name exactly one GPU")
    compute_min = number(keys.ANN_COMPUTE_MIN, 0, 100)
    compute_max = number(keys.ANN_COMPUTE_MAX, 1, 100)
    if compute_min > compute_max:
        raise AnnotationError(
            keys.ANN_COMPUTE_MIN, f"{compute_min} is above compute-max {compute_max}"
        )
    try:
        owner = Owner(
            kind=text(keys.ANN_OWNER_KIND),
            user=text(keys.ANN_OWNER_USER),
            project=text(keys.ANN_OWNER_PROJECT, required=False),
            name=text(keys.ANN_OWNER_NAME, required=False),
        )
    except InvalidRequestError as err:
        raise AnnotationError(keys.PREFIX + err.field.replace(".", "-"), err.message) from None
    memory = number(keys.ANN_MEMORY_MIB, 1)
    gpu = lookup(uuids[0]) if lookup else None
    indices: tuple[int, ...] = ()
    if lookup:
        found = [lookup(u) for u in uuids]
        if all(found):
            indices = tuple(g.index for g in found)  # type: ignore[union-attr]
    return Allocation(
        id=text(keys.ANN_ALLOCATION),
        owner=owner,
        node=text(keys.ANN_NODE),
        gpu_type=text(keys.ANN_GPU_TYPE),
        gpu_uuids=uuids,
        gpu_indices=indices,
        fraction=fraction,
        memory_mib=memory,
        gpu_memory_mib=gpu.memory_mib if gpu else memory,
        compute_min=compute_min,
        compute_max=compute_max,
        cpu_millis=number(keys.ANN_CPU_MILLIS, 0) if keys.ANN_CPU_MILLIS in annotations else 0,
        host_memory_mib=(
            number(keys.ANN_HOST_MEMORY_MIB, 0) if keys.ANN_HOST_MEMORY_MIB in annotations else 0
        ),
        product=gpu.product if gpu else "",
        simulated=gpu.simulated if gpu else False,
    )

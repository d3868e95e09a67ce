"""An allocation as pod annotations, and back.

The cluster is the ledger: every allocation lives on its pod as a small set of ``ai-console/...``
annotations, so the allocator can be rebuilt from the pods that exist after a restart.
Reading back is on the hub's start-up path (tens of thousands of pods), so it is written as one
straight pass with no per-call closures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction

from . import keys
from .errors import AnnotationError, InvalidRequestError
from .model import GPU, OWNER_KINDS, Allocation, Owner, format_fraction, parse_fraction


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


def _text(annotations: Mapping[str, str], key: str) -> str:
    value = annotations.get(key)
    if not value or not isinstance(value, str):
        raise AnnotationError(key, "missing" if not value else f"must be a string, got {value!r}")
    return value


def _number(annotations: Mapping[str, str], key: str, minimum: int, maximum: int = 1 << 62) -> int:
    raw = annotations.get(key)
    if raw is None:
        raise AnnotationError(key, "missing")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise AnnotationError(key, f"must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        bound = f"{minimum}..{maximum}" if maximum < 1 << 62 else f">= {minimum}"
        raise AnnotationError(key, f"must be {bound}, got {raw!r}")
    return value


def _fraction(raw: str) -> Fraction:
    fraction = _FRACTIONS.get(raw)
    if fraction is None:
        try:
            fraction = parse_fraction(raw, keys.ANN_FRACTION)
        except InvalidRequestError as err:
            raise AnnotationError(keys.ANN_FRACTION, err.message) from None
        _FRACTIONS[raw] = fraction
    return fraction


def from_annotations(
    annotations: Mapping[str, str], lookup: Callable[[str], GPU | None] | None = None
) -> Allocation:
    """Read an allocation back from its pod's annotations.

    ``lookup`` finds a GPU by UUID to fill in indices, GPU size and product; GPUs it does not
    know are left for the allocator to refuse. Raises :class:`AnnotationError` naming the
    annotation at fault.
    """
    raw_fraction = _text(annotations, keys.ANN_FRACTION)
    fraction = _fraction(raw_fraction)
    uuids = tuple(u for u in _text(annotations, keys.ANN_GPU_UUIDS).split(",") if u)
    whole = fraction >= 1
    if (whole and len(uuids) != int(fraction)) or (not whole and len(uuids) != 1):
        raise AnnotationError(
            keys.ANN_GPU_UUIDS, f"lists {len(uuids)} GPUs for a slice of {raw_fraction} GPU(s)"
        )
    compute_min = _number(annotations, keys.ANN_COMPUTE_MIN, 0, 100)
    compute_max = _number(annotations, keys.ANN_COMPUTE_MAX, 1, 100)
    if compute_min > compute_max:
        raise AnnotationError(
            keys.ANN_COMPUTE_MIN, f"{compute_min} is above compute-max {compute_max}"
        )
    kind = _text(annotations, keys.ANN_OWNER_KIND)
    if kind not in OWNER_KINDS:
        raise AnnotationError(
            keys.ANN_OWNER_KIND, f"must be one of {', '.join(OWNER_KINDS)}, got {kind!r}"
        )
    owner = Owner(
        kind,
        _text(annotations, keys.ANN_OWNER_USER),
        annotations.get(keys.ANN_OWNER_PROJECT) or "",
        annotations.get(keys.ANN_OWNER_NAME) or "",
    )
    memory = _number(annotations, keys.ANN_MEMORY_MIB, 1)
    cpu = _number(annotations, keys.ANN_CPU_MILLIS, 0) if keys.ANN_CPU_MILLIS in annotations else 0
    host_memory = (
        _number(annotations, keys.ANN_HOST_MEMORY_MIB, 0)
        if keys.ANN_HOST_MEMORY_MIB in annotations
        else 0
    )
    gpus = [lookup(u) for u in uuids] if lookup else []
    known = bool(gpus) and all(gpus)
    first = gpus[0] if known else None
    return Allocation(
        id=_text(annotations, keys.ANN_ALLOCATION),
        owner=owner,
        node=_text(annotations, keys.ANN_NODE),
        gpu_type=_text(annotations, keys.ANN_GPU_TYPE),
        gpu_uuids=uuids,
        gpu_indices=tuple(g.index for g in gpus) if known else (),  # type: ignore[union-attr]
        fraction=fraction,
        memory_mib=memory,
        gpu_memory_mib=first.memory_mib if first else memory,
        compute_min=compute_min,
        compute_max=compute_max,
        cpu_millis=cpu,
        host_memory_mib=host_memory,
        product=first.product if first else "",
        simulated=first.simulated if first else False,
    )

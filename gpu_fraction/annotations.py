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
from .model import (
    CPU_ONLY_TYPE,
    GPU,
    OWNER_KINDS,
    Allocation,
    Owner,
    format_fraction,
    parse_fraction,
)


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
#: raw annotation -> (the fraction, its GPU count: 0 for a share of one GPU)
_FRACTIONS: dict[str, tuple[Fraction, int]] = {}


def _text(annotations: Mapping[str, str], key: str) -> str:
    value = annotations.get(key)
    if not value or not isinstance(value, str):
        raise AnnotationError(key, "missing" if not value else f"must be a string, got {value!r}")
    return value


_MAX_NUMBER = 1 << 62


def _number(
    annotations: Mapping[str, str], key: str, minimum: int, maximum: int = _MAX_NUMBER
) -> int:
    raw = annotations.get(key)
    if raw is None:
        raise AnnotationError(key, "missing")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise AnnotationError(key, f"must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        bound = f"{minimum}..{maximum}" if maximum < _MAX_NUMBER else f">= {minimum}"
        raise AnnotationError(key, f"must be {bound}, got {raw!r}")
    return value


def _fraction(raw: str) -> tuple[Fraction, int]:
    known = _FRACTIONS.get(raw)
    if known is None:
        try:
            fraction = parse_fraction(raw, keys.ANN_FRACTION)
        except InvalidRequestError as err:
            raise AnnotationError(keys.ANN_FRACTION, err.message) from None
        known = _FRACTIONS[raw] = (fraction, int(fraction) if fraction >= 1 else 0)
    return known


def from_annotations(
    annotations: Mapping[str, str], lookup: Callable[[str], GPU | None] | None = None
) -> Allocation:
    """Read an allocation back from its pod's annotations.

    ``lookup`` finds a GPU by UUID to fill in indices, GPU size and product; GPUs it does not
    know are left for the allocator to refuse. Raises :class:`AnnotationError` naming the
    annotation at fault.
    """
    plain = _read_plain(annotations, lookup)
    return plain if plain is not None else _read_checked(annotations, lookup)


def _read_plain(
    annotations: Mapping[str, str], lookup: Callable[[str], GPU | None] | None
) -> Allocation | None:
    """:func:`from_annotations` for well-formed annotations, as one straight pass (a hub
    restart reads tens of thousands); None at the first doubt, and the checked reading then
    says what is wrong."""
    try:
        get = annotations.get
        known = _FRACTIONS.get(annotations[keys.ANN_FRACTION])  # type: ignore[arg-type]
        raw_uuids = annotations[keys.ANN_GPU_UUIDS]
        allocation_id = annotations[keys.ANN_ALLOCATION]
        node = annotations[keys.ANN_NODE]
        gpu_type = annotations[keys.ANN_GPU_TYPE]
        kind = annotations[keys.ANN_OWNER_KIND]
        user = annotations[keys.ANN_OWNER_USER]
        project = get(keys.ANN_OWNER_PROJECT) or ""
        name = get(keys.ANN_OWNER_NAME) or ""
        memory = int(annotations[keys.ANN_MEMORY_MIB])
        compute_min = int(annotations[keys.ANN_COMPUTE_MIN])
        compute_max = int(annotations[keys.ANN_COMPUTE_MAX])
        cpu = int(get(keys.ANN_CPU_MILLIS, 0))
        host_memory = int(get(keys.ANN_HOST_MEMORY_MIB, 0))
    except (KeyError, TypeError, ValueError):
        return None
    if (
        known is None
        or type(raw_uuids) is not str
        or "," in raw_uuids
        or not raw_uuids
        or known[1] > 1
        or not (type(allocation_id) is type(node) is type(gpu_type) is type(user) is str)
        or not (allocation_id and node and gpu_type and user)
        or kind not in OWNER_KINDS
        or not 0 <= compute_min <= compute_max <= 100
        or compute_max < 1
        or not 1 <= memory <= _MAX_NUMBER
        or not 0 <= cpu <= _MAX_NUMBER
        or not 0 <= host_memory <= _MAX_NUMBER
    ):
        return None  # several GPUs, or something to explain: the checked reading
    first = lookup(raw_uuids) if lookup is not None else None
    # A GPU the lookup does not know: the slice's memory stands for the GPU's, no index.
    indices = (first.index,) if first is not None else ()
    gpu_memory = first.memory_mib if first is not None else memory
    # Positional (the fields' order): quicker than by keyword, 50,000 times over.
    return Allocation(
        allocation_id,
        Owner(kind, user, project, name),
        node,
        gpu_type,
        (raw_uuids,),
        indices,
        known[0],
        memory,
        gpu_memory,
        compute_min,
        compute_max,
        cpu,
        host_memory,
        first.product if first is not None else "",
        first.simulated if first is not None else False,
    )


def _read_checked(
    annotations: Mapping[str, str], lookup: Callable[[str], GPU | None] | None
) -> Allocation:
    text, number = _text, _number
    raw_fraction = text(annotations, keys.ANN_FRACTION)
    if raw_fraction == format_fraction(Fraction(0)):
        return _read_cpu_only(annotations)
    fraction, count = _fraction(raw_fraction)
    parts = text(annotations, keys.ANN_GPU_UUIDS).split(",")
    uuids = tuple(parts) if "" not in parts else tuple(u for u in parts if u)
    if len(uuids) != (count or 1):
        raise AnnotationError(
            keys.ANN_GPU_UUIDS, f"lists {len(uuids)} GPUs for a slice of {raw_fraction} GPU(s)"
        )
    compute_min = number(annotations, keys.ANN_COMPUTE_MIN, 0, 100)
    compute_max = number(annotations, keys.ANN_COMPUTE_MAX, 1, 100)
    if compute_min > compute_max:
        raise AnnotationError(
            keys.ANN_COMPUTE_MIN, f"{compute_min} is above compute-max {compute_max}"
        )
    kind = text(annotations, keys.ANN_OWNER_KIND)
    if kind not in OWNER_KINDS:
        raise AnnotationError(
            keys.ANN_OWNER_KIND, f"must be one of {', '.join(OWNER_KINDS)}, got {kind!r}"
        )
    get = annotations.get
    owner = Owner(
        kind,
        text(annotations, keys.ANN_OWNER_USER),
        get(keys.ANN_OWNER_PROJECT) or "",
        get(keys.ANN_OWNER_NAME) or "",
    )
    memory = number(annotations, keys.ANN_MEMORY_MIB, 1)
    cpu = number(annotations, keys.ANN_CPU_MILLIS, 0) if keys.ANN_CPU_MILLIS in annotations else 0
    host_memory = (
        number(annotations, keys.ANN_HOST_MEMORY_MIB, 0)
        if keys.ANN_HOST_MEMORY_MIB in annotations
        else 0
    )
    first: GPU | None = None
    indices: tuple[int, ...] = ()
    if lookup is None:
        pass
    elif len(uuids) == 1:
        first = lookup(uuids[0])
        if first is not None:
            indices = (first.index,)
    else:
        gpus = [lookup(u) for u in uuids]
        if all(gpus):
            first = gpus[0]
            indices = tuple(g.index for g in gpus)  # type: ignore[union-attr]
    return Allocation(
        id=_text(annotations, keys.ANN_ALLOCATION),
        owner=owner,
        node=_text(annotations, keys.ANN_NODE),
        gpu_type=_text(annotations, keys.ANN_GPU_TYPE),
        gpu_uuids=uuids,
        gpu_indices=indices,
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


def _read_cpu_only(annotations: Mapping[str, str]) -> Allocation:
    """A pod placed on a managed node without a GPU (:meth:`Allocation.cpu_only`): fraction 0,
    GPU type ``none``, no GPUs, no GPU memory or compute; it holds its CPU and memory."""
    if annotations.get(keys.ANN_GPU_UUIDS):
        raise AnnotationError(
            keys.ANN_GPU_UUIDS,
            f"a CPU-only pod (fraction 0) holds no GPU, got {annotations[keys.ANN_GPU_UUIDS]!r}",
        )
    gpu_type = annotations.get(keys.ANN_GPU_TYPE)
    if gpu_type != CPU_ONLY_TYPE:
        raise AnnotationError(
            keys.ANN_GPU_TYPE,
            f"a CPU-only pod (fraction 0) has type {CPU_ONLY_TYPE!r}, got {gpu_type!r}",
        )
    for key in (keys.ANN_MEMORY_MIB, keys.ANN_COMPUTE_MIN, keys.ANN_COMPUTE_MAX):
        _number(annotations, key, 0, 0)
    get = annotations.get
    owner_kind = _text(annotations, keys.ANN_OWNER_KIND)
    if owner_kind not in OWNER_KINDS:
        raise AnnotationError(
            keys.ANN_OWNER_KIND, f"must be one of {', '.join(OWNER_KINDS)}, got {owner_kind!r}"
        )
    owner = Owner(
        owner_kind,
        _text(annotations, keys.ANN_OWNER_USER),
        get(keys.ANN_OWNER_PROJECT) or "",
        get(keys.ANN_OWNER_NAME) or "",
    )
    return Allocation.cpu_only(
        _text(annotations, keys.ANN_ALLOCATION),
        owner,
        _text(annotations, keys.ANN_NODE),
        _number(annotations, keys.ANN_CPU_MILLIS, 0),
        _number(annotations, keys.ANN_HOST_MEMORY_MIB, 0),
    )

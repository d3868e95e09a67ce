"""Which GPU types a slice that accepts several (or any) may use, given the inventory.

An admin writes ``types: [V100, A10]`` or ``type: any`` with ``min_memory: 16GiB`` ("any GPU with
16 GiB"); the allocator takes a set of types (:class:`~gpu_fraction.model.SliceRequest`
``gpu_types``). The memory bound is resolved here, against the GPUs the allocator knows when the
request is made, so the allocator's placement code stays as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .model import GPU

#: ``type: any`` in a gpu: block: every GPU type (narrowed by ``min_memory``).
ANY_TYPE = "any"


def memory_by_type(gpus: Iterable[GPU]) -> dict[str, int]:
    """GPU type -> MiB of memory of its smallest GPU (a type whose GPUs differ in size counts
    with the smallest, so a slice that needs more is never sent to one that is too small)."""
    sizes: dict[str, int] = {}
    for gpu in gpus:
        known = sizes.get(gpu.gpu_type)
        sizes[gpu.gpu_type] = gpu.memory_mib if known is None else min(known, gpu.memory_mib)
    return sizes


def accepted_types(
    named: Sequence[str] | None, min_memory_mib: int | None, memory: Mapping[str, int]
) -> list[str]:
    """The types of the inventory (``memory``, from :func:`memory_by_type`) a slice may use:
    those ``named`` (None: every type), whose GPUs have at least ``min_memory_mib`` (None: any
    size). In the named order, else by name."""
    candidates = list(named) if named is not None else sorted(memory)
    return [
        t
        for t in candidates
        if t in memory and (min_memory_mib is None or memory[t] >= min_memory_mib)
    ]


def request_types(types: Sequence[str] | None) -> dict[str, Any]:
    """The ``gpu_type`` / ``gpu_types`` arguments of a SliceRequest for these types (None: any)."""
    if types is None:
        return {"gpu_type": None}
    if len(types) == 1:
        return {"gpu_type": types[0]}
    return {"gpu_type": None, "gpu_types": frozenset(types)}


def memory_text(mib: int) -> str:
    """``16 GiB``, ``1.5 GiB``, ``512 MiB``: GPU memory as people say it."""
    if mib >= 1024:
        gib = mib / 1024
        return f"{gib:.0f} GiB" if mib % 1024 == 0 else f"{gib:.1f} GiB".replace(".0 ", " ")
    return f"{mib} MiB"

"""Refusal reasons: why a request cannot be placed now, in words a person can act on.

Built only on the slow path (a refusal). A request with no node or zone is explained from the
allocator's summaries (GPUs grouped by free state, nodes by free-GPU count), without a pass
over every GPU, so a refusal in a full cluster costs little more than a placement.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from .model import SliceRequest

if TYPE_CHECKING:
    from .allocator import Allocator, _TypePool


def share_text(free_mem: int, total: int) -> str:
    """A free share of a GPU as people say it: ``1/4``, ``3/8``, or ``23%`` if not neat."""
    if free_mem <= 0:
        return "0"
    share = Fraction(free_mem, total)
    if share.denominator <= 16:
        return str(share)
    return f"{int(100 * free_mem / total)}%"


def several_types_reason(
    allocator: Allocator, pools: list[_TypePool], request: SliceRequest
) -> str:
    """Explain a refusal over several acceptable types: one reason per type."""
    names = ", ".join(p.gpu_type for p in pools)
    reasons = "; ".join(
        f"{p.gpu_type}: {_strip_advice(refusal_reason(allocator, p, request))}" for p in pools
    )
    return (
        f"none of the acceptable GPU types ({names}) can take it now: {reasons}; "
        "try a smaller slice or fewer GPUs, or wait"
    )


def _strip_advice(reason: str) -> str:
    return reason.split("; ")[0]


def refusal_reason(allocator: Allocator, pool: _TypePool, request: SliceRequest) -> str:
    """Explain why ``request`` does not fit in ``pool`` now."""
    if request.node is None and request.zone is None:
        return _summary_reason(allocator, pool, request)
    return _scan_reason(allocator, pool, request)


def _scan_reason(allocator: Allocator, pool: _TypePool, request: SliceRequest) -> str:
    """The reason from a pass over the pool's GPUs (for a request narrowed to a node or zone)."""
    where = ""
    if request.node is not None:
        where = f" on node {request.node}"
    elif request.zone is not None:
        where = f" in zone {request.zone}"
    candidates = [
        g
        for gpus in pool.by_node.values()
        for g in gpus
        if (request.node is None or g.gpu.node == request.node)
        and (request.zone is None or g.zone == request.zone)
    ]
    gpu_type = pool.gpu_type
    if not candidates:
        return f"there is no {gpu_type} GPU{where}"
    in_use = sum(1 for g in candidates if not g.fully_free)
    if request.is_whole:
        return _whole_reason(allocator, pool, request, candidates, where)
    fitting = [g for g in candidates if allocator._fits(g.state, request)]
    if fitting:
        return (
            f"the {gpu_type} GPUs{where} with {request.fraction} free are on nodes without "
            f"{_pod_needs(request)} to spare; ask for less CPU or memory, or wait"
        )
    largest = max(candidates, key=lambda g: (g.free_mem, g.free_compute))
    reason = (
        f"no {gpu_type}{where} has {request.fraction} free: {in_use} of {len(candidates)} in use, "
        f"largest free slice {share_text(largest.free_mem, largest.gpu.memory_mib)}"
    )
    need_mem = [g for g in candidates if g.free_mem >= request.memory_on(g.gpu.memory_mib)]
    if need_mem:
        best_c = max(g.free_compute for g in need_mem)
        reason += (
            f" (GPUs with enough memory have {best_c}% compute free, "
            f"{request.guaranteed_compute()}% is needed)"
        )
    return reason + "; try a smaller slice or another GPU type, or wait for one to free up"


def _summary_reason(allocator: Allocator, pool: _TypePool, request: SliceRequest) -> str:
    """The same reasons as :func:`refusal_reason`, from the pool's index (no GPU scan)."""
    gpu_type = pool.gpu_type
    if not pool.size:
        return f"there is no {gpu_type} GPU"
    counts = [(c, len(nodes)) for c, nodes in enumerate(pool.nodes_by_free) if nodes]
    free_total = sum(c * n for c, n in counts)
    if request.is_whole:
        most = max((c for c, _ in counts), default=0)
        k = request.count
        if most >= k:
            return (
                f"the nodes with {k} free {gpu_type} GPUs lack {_pod_needs(request)} "
                f"to spare; ask for less CPU or memory, or wait"
            )
        noun = "GPU" if k == 1 else "GPUs"
        return (
            f"no node has {k} free {gpu_type} {noun}: the most free on one node is "
            f"{most} ({free_total} of {pool.size} free in all); try fewer GPUs or wait"
        )
    states = [s for s, members in pool.classes.items() if members]
    if any(allocator._fits(s, request) for s in states):
        return (
            f"the {gpu_type} GPUs with {request.fraction} free are on nodes without "
            f"{_pod_needs(request)} to spare; ask for less CPU or memory, or wait"
        )
    largest = max(states, key=lambda s: (s[1], s[2]))
    reason = (
        f"no {gpu_type} has {request.fraction} free: {pool.size - free_total} of {pool.size} "
        f"in use, largest free slice {share_text(largest[1], largest[0])}"
    )
    need_mem = [s for s in states if s[1] >= request.memory_on(s[0])]
    if need_mem:
        best_c = max(s[2] for s in need_mem)
        reason += (
            f" (GPUs with enough memory have {best_c}% compute free, "
            f"{request.guaranteed_compute()}% is needed)"
        )
    return reason + "; try a smaller slice or another GPU type, or wait"


def _whole_reason(
    allocator: Allocator,
    pool: _TypePool,
    request: SliceRequest,
    candidates: list,
    where: str,
) -> str:
    per_node: dict[str, int] = {}
    for g in candidates:
        per_node[g.gpu.node] = per_node.get(g.gpu.node, 0) + (1 if g.fully_free else 0)
    most = max(per_node.values())
    free_total = sum(per_node.values())
    k = request.count
    if most >= k:
        return (
            f"the nodes{where} with {k} free {pool.gpu_type} GPUs lack {_pod_needs(request)} "
            f"to spare; ask for less CPU or memory, or wait"
        )
    noun = "GPU" if k == 1 else "GPUs"
    return (
        f"no node{where} has {k} free {pool.gpu_type} {noun}: the most free on one node is "
        f"{most} ({free_total} of {len(candidates)} free in all); try fewer GPUs or wait"
    )


def _pod_needs(request: SliceRequest) -> str:
    parts = []
    if request.cpu_millis:
        parts.append(f"{request.cpu_millis / 1000:g} CPU")
    if request.host_memory_mib:
        parts.append(f"{request.host_memory_mib} MiB memory")
    return " and ".join(parts) or "room"

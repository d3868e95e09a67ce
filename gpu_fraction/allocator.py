"""The allocator: places GPU slices so GPUs are packed well and never oversubscribed.

One allocator serves the whole hub (notebooks and jobs alike). Its state is an index over the
GPUs' free capacity, not a database: the cluster's pod annotations are the ledger, and
:func:`gpu_fraction.ledger.rebuild` restores the allocator from them after a restart.

Life of a slice: :meth:`Allocator.reserve` -> :meth:`Allocator.commit` once the pod or process
exists -> :meth:`Allocator.release` (idempotent). A reservation never committed expires after its
time-to-live, so a spawn that died half-way does not keep a GPU slice.

Placement (binpack) follows "Beware of Fragmentation" (USENIX ATC'23) at the level of nodes:
a request goes to the node, of any GPU type it accepts, where the node's fragmentation (the
expected free GPU capacity the learnt task mix cannot use, the pods' CPU and memory included,
plus the free GPUs the node's CPU and memory could not serve at the mix's average need, and
for shares what their holes are expected to keep free for good; see
:mod:`gpu_fraction.node_fragmentation`) grows least.

Speed matters because every spawn and job start goes through here under one lock: GPUs are
grouped by their free state (total, free memory, free compute), states are ordered per request
shape once (cached), and only the few nodes holding the best states are scored. A node's
scores are cached until that node changes, so a reserve costs a few dictionary look-ups even
with 16,000 GPUs.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .errors import AllocationRefused, UnknownAllocationError, UnknownGPUTypeError
from .fragmentation import GpuState, Shape, TaskMix
from .model import GPU, STANDARD_SIZES, Allocation, NodeCapacity, Owner, SliceRequest
from .node_fragmentation import CompiledMix
from .refusal import refusal_reason, several_types_reason

if TYPE_CHECKING:
    from .inventory import Inventory

POLICIES = ("binpack", "spread")
#: Nodes scored per GPU type for a share, at most PER_STATE per GPU free state; for whole
#: GPUs, PER_FREE_COUNT per count of free GPUs on the node. Measured on benchmarks/packing.py
#: (full size, % allocated at 130%): shares packed no better with 8 or 64 candidates than 4;
#: whole GPUs did, base 93.98 -> 95.77 -> 96.41 with 2 -> 8 -> 32 per count.
CANDIDATE_NODES = 4
PER_STATE = 2
#: Where free GPUs go short of CPU or memory (CompiledMix.stranded) on a candidate or on any
#: node of the type: WIDE_CANDIDATES nodes, WIDE_PER_STATE per state (the best node for the
#: CPU is not the best GPU fit). Measured the same way, seed 42, sharing: 86.17 with 4
#: candidates always, 87.54 widened so, 87.53 with 32 always (which costs the allocator
#: benchmark its speed; widening also where a node merely lacks CPU for the largest task:
#: 86.79, and 2-4% of that benchmark's reserves widened).
WIDE_CANDIDATES = 32
WIDE_PER_STATE = 8
PER_FREE_COUNT = 32
WHOLE_CANDIDATES = 32


_UNACCOUNTED: tuple[None, None] = (None, None)


def _first(pair: tuple) -> Any:
    return pair[0]


def _by_index(entry: _Gpu) -> int:
    return entry.gpu.index


class _Gpu:
    """Mutable free capacity of one GPU (internal)."""

    __slots__ = ("free_compute", "free_mem", "gpu", "slices", "state", "zone")

    def __init__(self, gpu: GPU, zone: str | None) -> None:
        self.gpu = gpu
        self.zone = zone
        self.free_mem = gpu.memory_mib
        self.free_compute = 100
        self.slices = 0
        #: (total, free MiB, free compute %): kept as a tuple, placement reads it constantly
        self.state: GpuState = (gpu.memory_mib, gpu.memory_mib, 100)

    @property
    def fully_free(self) -> bool:
        return self.slices == 0


@dataclass(slots=True)
class _Record:
    allocation: Allocation
    committed: bool
    deadline: float | None


class _TypePool:
    """Every GPU of one type, indexed by free state and, for whole-GPU requests, by node."""

    __slots__ = (
        "bound",
        "by_node",
        "changed",
        "classes",
        "compiled",
        "frag",
        "free_by_node",
        "gpu_type",
        "mix",
        "mix_version",
        "node_free_mib",
        "node_gpu_mib",
        "node_share",
        "nodes_by_free",
        "order_cache",
        "size",
    )

    def __init__(self, gpu_type: str, mix: TaskMix) -> None:
        self.gpu_type = gpu_type
        self.mix = mix
        self.compiled = CompiledMix(mix.weights)
        #: node -> [its fragmentation now, {request shape: (growth, GPU state to use)}];
        #: dropped when the node changes (GPU or CPU/memory), so scores are never stale
        self.frag: dict[str, list] = {}
        self.size = 0
        #: free state -> GPUs in that state (a dict used as an ordered set, keyed by UUID)
        self.classes: dict[GpuState, dict[str, _Gpu]] = {}
        #: (request shape, policy) -> states that fit the request, best first
        self.order_cache: dict[tuple, list[GpuState]] = {}
        self.mix_version = -1
        self.by_node: dict[str, list[_Gpu]] = {}
        #: node -> its fully free GPUs of this type
        self.free_by_node: dict[str, dict[str, _Gpu]] = {}
        #: count c -> nodes with exactly c fully free GPUs of this type (c >= 1)
        self.nodes_by_free: list[dict[str, None]] = [{}]
        #: node -> free capacity of its GPUs of this type, in GPUs (free memory shares)
        self.node_share: dict[str, float] = {}
        #: node -> free MiB of its GPUs of this type, and their size (0: not all the same)
        self.node_free_mib: dict[str, int] = {}
        self.node_gpu_mib: dict[str, int] = {}
        #: nodes whose CPU or memory cannot serve their free GPUs (CompiledMix.stranded > 0),
        #: brought up to date from ``changed`` (nodes changed since) when placement asks
        self.bound: set[str] = set()
        self.changed: set[str] = set()


class _AllMixes:
    """``record`` into every type's mix (a request that names no type could use any)."""

    def __init__(self, pools: dict[str, _TypePool]) -> None:
        self._pools = pools

    def record(self, shape: Shape | tuple[int, int]) -> None:
        for pool in self._pools.values():
            pool.mix.record(shape)


class Allocator:
    """Places slice requests on GPUs; thread-safe and usable from asyncio (calls never block).

    ``policy`` is ``"binpack"`` (default: fill the GPU where the request leaves the least
    fragmentation, then the fullest, which keeps whole GPUs and whole nodes free for training
    jobs) or ``"spread"`` (least loaded first, for inference). ``reservation_ttl`` is how long a
    reservation lives without :meth:`commit`. ``task_mix`` makes the learnt mix of one GPU type.
    """

    def __init__(
        self,
        gpus: Iterable[GPU] = (),
        nodes: Mapping[str, NodeCapacity] | None = None,
        *,
        policy: str = "binpack",
        reservation_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        task_mix: Callable[[], TaskMix] = TaskMix,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
        if reservation_ttl <= 0:
            raise ValueError(f"reservation_ttl: must be positive, got {reservation_ttl!r}")
        self.policy = policy
        self.reservation_ttl = reservation_ttl
        self._clock = clock
        self._new_mix = task_mix
        self._lock = threading.RLock()
        self._gpus: dict[str, _Gpu] = {}
        self._pools: dict[str, _TypePool] = {}
        self._mix = _AllMixes(self._pools)
        self._nodes: dict[str, NodeCapacity] = dict(nodes or {})
        #: node -> the type pools with GPUs on it (their cached scores depend on its CPU)
        self._node_pools: dict[str, list[_TypePool]] = {}
        self._node_used: dict[str, list[int]] = {}
        #: node -> (free CPU, free memory), None where not accounted; kept with _node_used
        #: because placement asks for it for every candidate node
        self._free: dict[str, tuple[int | None, int | None]] = {
            name: (c.cpu_millis, c.memory_mib) for name, c in self._nodes.items()
        }
        self._records: dict[str, _Record] = {}
        self._ids: list[str] = []
        #: pods not placed here whose CPU/memory is counted: UID -> (node, CPU, memory)
        self._observed: dict[str, tuple[str, int, int]] = {}
        self._expiry: list[tuple[float, str]] = []
        self.add_gpus(gpus)

    @classmethod
    def from_inventory(cls, inventory: Inventory, **settings: Any) -> Allocator:
        """An allocator over an :class:`~gpu_fraction.inventory.Inventory` (nodes and GPUs)."""
        return cls(inventory.gpus, inventory.nodes, **settings)

    # --- inventory ---------------------------------------------------------------------------

    def add_gpus(self, gpus: Iterable[GPU]) -> None:
        """Put GPUs under management (all free). A UUID already known is left as it is."""
        with self._lock:
            for gpu in gpus:
                if gpu.uuid in self._gpus:
                    continue
                node = self._nodes.get(gpu.node)
                entry = _Gpu(gpu, node.zone if node else None)
                self._gpus[gpu.uuid] = entry
                pool = self._pools.get(gpu.gpu_type)
                if pool is None:
                    pool = _TypePool(gpu.gpu_type, self._new_mix())
                    self._pools[gpu.gpu_type] = pool
                on_node = self._node_pools.setdefault(gpu.node, [])
                if pool not in on_node:
                    on_node.append(pool)
                pool.frag.pop(gpu.node, None)
                pool.size += 1
                pool.node_share[gpu.node] = pool.node_share.get(gpu.node, 0.0) + 1.0
                pool.node_free_mib[gpu.node] = pool.node_free_mib.get(gpu.node, 0) + gpu.memory_mib
                size = pool.node_gpu_mib.get(gpu.node, gpu.memory_mib)
                pool.node_gpu_mib[gpu.node] = size if size == gpu.memory_mib else 0
                pool.by_node.setdefault(gpu.node, []).append(entry)
                pool.by_node[gpu.node].sort(key=lambda g: g.gpu.index)
                self._index(pool, entry)
                self._mark_free(pool, entry, True)

    def gpu_types(self) -> list[str]:
        return sorted(self._pools)

    def gpus(self) -> list[GPU]:
        return [g.gpu for g in self._gpus.values()]

    def gpu_by_uuid(self, uuid: str) -> GPU | None:
        entry = self._gpus.get(uuid)
        return entry.gpu if entry else None

    # --- the life of a slice -----------------------------------------------------------------

    def reserve(
        self,
        request: SliceRequest,
        owner: Owner,
        *,
        ttl: float | None = None,
        policy: str | None = None,
    ) -> Allocation:
        """Place ``request`` and hold it until :meth:`commit` or the reservation expires.

        A request may accept several GPU types (or any): binpack then places it where the node
        fragmentation grows least over all of them; spread tries them in name order.
        Raises :class:`UnknownGPUTypeError` for a type no GPU has and
        :class:`AllocationRefused` (with a reason to show the user) when nothing fits now.
        """
        policy = policy or self.policy
        if policy not in POLICIES:
            raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
        with self._lock:
            now = self._clock()
            expiry = self._expiry
            if expiry and expiry[0][0] <= now:
                self._expire_locked(now)
            pool = self._pools.get(request.gpu_type) if request.gpu_type is not None else None
            pools = [pool] if pool is not None else self._pools_for(request)
            shape = request.shape
            # Refused requests count too: they are the demand the cluster should make room for.
            for pool in pools:
                pool.mix.record(shape)
            placed = None
            if policy == "binpack":
                placed = self._place_least_fragmenting(pools, request)
            else:
                for pool in pools:
                    if request.is_whole:
                        chosen = self._place_whole(pool, request, policy)
                    else:
                        single = self._place_fraction(pool, request, policy)
                        chosen = [single] if single is not None else None
                    if chosen is not None:
                        placed = pool, chosen
                        break
            if placed is None:
                if len(pools) == 1:
                    raise AllocationRefused(refusal_reason(self, pools[0], request))
                raise AllocationRefused(several_types_reason(self, pools, request))
            pool, chosen = placed
            # Unguessable: whoever may release "an allocation" must first be shown its id.
            ids = self._ids
            allocation_id = ids.pop() if ids else self._new_id()
            deadline = now + (self.reservation_ttl if ttl is None else ttl)
            allocation = self._take(pool, chosen, request, owner, allocation_id)
            self._records[allocation_id] = _Record(allocation, False, deadline)
            heapq.heappush(expiry, (deadline, allocation_id))
            return allocation

    def reserve_pod(
        self,
        cpu_millis: int,
        host_memory_mib: int,
        owner: Owner,
        *,
        nodes: frozenset[str] | None = None,
        ttl: float | None = None,
    ) -> Allocation:
        """Place a pod that needs no GPU, only CPU and memory, and hold it like a slice.

        It goes to the node (of ``nodes``, default any node with a known capacity) where it
        makes the least GPU capacity unusable: a node whose remaining CPU and memory still fit
        every task of the mix, preferring nodes with fewer free GPUs, then the tightest fit.
        The allocation has no GPUs; commit and release it as any other. Raises
        :class:`AllocationRefused` when no node has the room.
        """
        with self._lock:
            now = self._clock()
            self._expire_locked(now)
            best: tuple | None = None
            for node, capacity in self._nodes.items():
                if nodes is not None and node not in nodes:
                    continue
                cpu, mem = self._node_free(node)
                if (cpu is not None and cpu < cpu_millis) or (
                    mem is not None and mem < host_memory_mib
                ):
                    continue
                growth = 0.0
                whole_free = 0
                for pool in self._node_pools.get(node, ()):
                    growth += self._pod_growth(pool, node, cpu, mem, cpu_millis, host_memory_mib)
                    whole_free += len(pool.free_by_node.get(node, ()))
                left = 0.0 if cpu is None else (cpu - cpu_millis) / max(1, capacity.cpu_millis or 1)
                # Equal growth: keep whole GPUs' nodes for GPU pods, then the tightest fit.
                # (Measured: without the whole-GPU count, sharing packs 70.6% not 86.2%.)
                key = (round(growth, 9), whole_free, left)
                if best is None or key < best[0]:
                    best = (key, node)
            if best is None:
                raise AllocationRefused(
                    f"no node has {cpu_millis / 1000:g} CPU and {host_memory_mib} MiB memory "
                    "to spare; ask for less or wait"
                )
            node = best[1]
            self._charge_node(node, cpu_millis, host_memory_mib)
            allocation = Allocation.cpu_only(
                self._new_id(), owner, node, cpu_millis, host_memory_mib
            )
            deadline = now + (self.reservation_ttl if ttl is None else ttl)
            self._records[allocation.id] = _Record(allocation, False, deadline)
            heapq.heappush(self._expiry, (deadline, allocation.id))
            return allocation

    def _pod_growth(
        self,
        pool: _TypePool,
        node: str,
        cpu: int | None,
        mem: int | None,
        cpu_millis: int,
        memory_mib: int,
    ) -> float:
        """Growth of the node's fragmentation in ``pool`` if a GPU-less pod takes CPU/memory."""
        mix = self._compiled(pool)
        left_cpu = None if cpu is None else cpu - cpu_millis
        left_mem = None if mem is None else mem - memory_mib
        every = mix.all_bits
        free = pool.node_share[node]
        more = mix.stranded(free, left_cpu, left_mem) - mix.stranded(free, cpu, mem)
        if mix.pod_fits(cpu, mem) & every == mix.pod_fits(left_cpu, left_mem) & every:
            return more  # the same tasks fit after: no GPU becomes unusable to a task
        known, gpu = mix.known, mix.gpu
        items = [known(g.state) or gpu(g.state) for g in pool.by_node[node]]
        return mix.node_of(items, left_cpu, left_mem) - mix.node_of(items, cpu, mem) + more

    def commit(self, allocation_id: str) -> Allocation:
        """Make a reservation permanent (the pod or process now exists)."""
        with self._lock:
            now = self._clock()
            self._expire_locked(now)
            record = self._records.get(allocation_id)
            if record is None:
                raise UnknownAllocationError(allocation_id)
            record.committed = True
            record.deadline = None
            return record.allocation

    def renew(self, allocation_id: str, ttl: float | None = None) -> bool:
        """Give a reservation its full time-to-live again (its pod is about to be created);
        False when it is not held any more. A committed slice has no deadline to renew."""
        with self._lock:
            now = self._clock()
            self._expire_locked(now)
            record = self._records.get(allocation_id)
            if record is None:
                return False
            if not record.committed:
                record.deadline = now + (self.reservation_ttl if ttl is None else ttl)
                heapq.heappush(self._expiry, (record.deadline, allocation_id))
            return True

    def release(self, allocation_id: str) -> bool:
        """Give a slice back. Idempotent: returns False if it was not held (any more)."""
        with self._lock:
            record = self._records.pop(allocation_id, None)
            if record is None:
                return False
            self._give_back(record.allocation)
            return True

    def expire(self, now: float | None = None) -> list[Allocation]:
        """Release reservations whose time-to-live has passed; returns what was released."""
        with self._lock:
            return self._expire_locked(self._clock() if now is None else now)

    def adopt(self, allocation: Allocation, committed: bool = True) -> Allocation:
        """Take over an allocation made earlier (read back from a pod by the ledger).

        Raises :class:`AllocationRefused` naming the reason when it cannot be held: unknown GPU
        or node, wrong node, already held, or over capacity together with what is already held.
        A CPU-only allocation (:meth:`Allocation.cpu_only`) holds CPU and memory of its node.
        """
        with self._lock:
            if allocation.id in self._records:
                raise AllocationRefused(f"allocation {allocation.id} is already held")
            self._hold(allocation, self._adoptable(allocation))
            deadline = None if committed else self._clock() + self.reservation_ttl
            self._records[allocation.id] = _Record(allocation, committed, deadline)
            if deadline is not None:
                heapq.heappush(self._expiry, (deadline, allocation.id))
            return allocation

    def adopt_many(
        self, allocations: Sequence[Allocation], committed: bool = True
    ) -> list[str | None]:
        """:meth:`adopt` each allocation in turn, with the same outcome: for each, None when it
        is held, else why it was refused (an earlier one wins a GPU or node both ask for).

        Made for :func:`gpu_fraction.ledger.rebuild` (tens of thousands at a hub's start):
        allocations only compete with those on their own node, so a node whose allocations
        all fit together takes them at once, each GPU moved to its final free state in one
        step; only a node where something is refused is taken one allocation at a time.
        """
        with self._lock:
            records = self._records
            results: list[str | None] = [None] * len(allocations)
            ids = {a.id for a in allocations}
            if len(ids) < len(allocations) or (records and not ids.isdisjoint(records)):
                # The same id twice: which one is held depends on all that came before.
                for i, allocation in enumerate(allocations):
                    try:
                        self.adopt(allocation, committed)
                    except AllocationRefused as err:
                        results[i] = err.reason
                return results
            by_node: dict[str, list[Allocation]] = {}
            for allocation in allocations:
                members = by_node.get(allocation.node)
                if members is None:
                    by_node[allocation.node] = [allocation]
                else:
                    members.append(allocation)
            refused: dict[str, str] = {}
            for node, members in by_node.items():
                if not self._hold_together(node, members):
                    for allocation in members:
                        try:
                            self._hold(allocation, self._adoptable(allocation))
                        except AllocationRefused as err:
                            refused[allocation.id] = err.reason
            deadline = None if committed else self._clock() + self.reservation_ttl
            for i, allocation in enumerate(allocations):
                reason = refused.get(allocation.id) if refused else None
                if reason is not None:
                    results[i] = reason
                    continue
                records[allocation.id] = _Record(allocation, committed, deadline)
                if deadline is not None:
                    heapq.heappush(self._expiry, (deadline, allocation.id))
            return results

    def _hold_together(self, node: str, allocations: list[Allocation]) -> bool:
        """Take every allocation of one node at once if they all fit together (and nothing
        about them would be refused); False, with nothing taken, otherwise."""
        gpus = self._gpus
        use: dict[str, list[int]] = {}  # GPU UUID -> [MiB, compute %, slices]
        cpu = memory = 0
        for allocation in allocations:
            cpu += allocation.cpu_millis
            memory += allocation.host_memory_mib
            uuids = allocation.gpu_uuids
            if not uuids:
                if node not in self._nodes and node not in self._node_pools:
                    return False
                continue
            mib, compute = allocation.memory_mib, allocation.compute_min
            if mib < 1 or compute < 0 or (len(uuids) > 1 and len(set(uuids)) < len(uuids)):
                return False
            for uuid in uuids:
                used = use.get(uuid)
                if used is None:
                    use[uuid] = [mib, compute, 1]
                else:
                    used[0] += mib
                    used[1] += compute
                    used[2] += 1
        if cpu < 0 or memory < 0:
            return False
        if (cpu or memory) and not self._node_has_room(node, cpu, memory):
            return False
        entries = []
        for uuid, (mib, compute, _) in use.items():
            entry = gpus.get(uuid)
            if (
                entry is None
                or entry.gpu.node != node
                or entry.free_mem < mib
                or entry.free_compute < compute
            ):
                return False
            entries.append(entry)
        pools, consume = self._pools, self._consume
        for entry, (mib, compute, count) in zip(entries, use.values(), strict=True):
            consume(pools[entry.gpu.gpu_type], entry, mib, compute, count)
        self._charge_node(node, cpu, memory)
        return True

    def _adoptable(self, allocation: Allocation) -> list[_Gpu]:
        """The GPU entries an allocation read back from a pod would take; raises
        :class:`AllocationRefused` when it cannot be held together with what is held now."""
        entries = []
        gpus = self._gpus
        uuids = allocation.gpu_uuids
        if len(uuids) > 1 and len(set(uuids)) < len(uuids):
            raise AllocationRefused(f"allocation {allocation.id} names one GPU twice")
        node = allocation.node
        if not uuids and node not in self._nodes and node not in self._node_pools:
            raise AllocationRefused(
                f"node {allocation.node} is not one of the nodes the allocator manages"
            )
        for uuid in uuids:
            entry = gpus.get(uuid)
            if entry is None:
                raise AllocationRefused(f"GPU {uuid} is not in the inventory")
            if entry.gpu.node != allocation.node:
                raise AllocationRefused(
                    f"GPU {uuid} is on node {entry.gpu.node}, not {allocation.node}"
                )
            if entry.free_mem < allocation.memory_mib:
                raise AllocationRefused(
                    f"GPU {uuid} has {entry.free_mem} MiB free, the slice needs "
                    f"{allocation.memory_mib} MiB"
                )
            if entry.free_compute < allocation.compute_min:
                raise AllocationRefused(
                    f"GPU {uuid} has {entry.free_compute}% compute free, the slice "
                    f"needs {allocation.compute_min}%"
                )
            entries.append(entry)
        cpu, memory = allocation.cpu_millis, allocation.host_memory_mib
        if (cpu or memory) and not self._node_has_room(allocation.node, cpu, memory):
            raise AllocationRefused(
                f"node {allocation.node} lacks CPU or memory for this pod's requests"
            )
        return entries

    def _hold(self, allocation: Allocation, entries: list[_Gpu]) -> None:
        """Take what :meth:`_adoptable` found (no record made)."""
        pools, consume = self._pools, self._consume
        for entry in entries:
            consume(pools[entry.gpu.gpu_type], entry, allocation.memory_mib, allocation.compute_min)
        self._charge_node(allocation.node, allocation.cpu_millis, allocation.host_memory_mib)

    def observe_pod(self, node: str, pod_uid: str, cpu_millis: int, memory_mib: int) -> bool:
        """Count the CPU and memory requests of a pod the allocator did not place (a pod
        without an allocation, seen on a managed node), so placement leaves them alone.

        Kept apart from the slices: nothing to commit or release, no annotation, and a pod
        is counted once however often it is seen; seeing it again with other requests (or on
        another node) replaces what was counted. Returns whether anything changed. A node may
        end up over its capacity this way (the pod exists): nothing more is placed there until
        enough is freed.
        """
        if cpu_millis < 0 or memory_mib < 0:
            raise ValueError(f"pod {pod_uid}: CPU and memory requests cannot be negative")
        with self._lock:
            known = self._observed.get(pod_uid)
            if known == (node, cpu_millis, memory_mib):
                return False
            if known is not None:
                self._charge_node(known[0], -known[1], -known[2])
            self._observed[pod_uid] = (node, cpu_millis, memory_mib)
            self._charge_node(node, cpu_millis, memory_mib)
            return True

    def forget_pod(self, pod_uid: str) -> bool:
        """Stop counting a pod given to :meth:`observe_pod` (it ended or left the node).
        Idempotent: False when it was not counted."""
        with self._lock:
            known = self._observed.pop(pod_uid, None)
            if known is None:
                return False
            self._charge_node(known[0], -known[1], -known[2])
            return True

    def observed_pods(self) -> dict[str, tuple[str, int, int]]:
        """Pod UID -> (node, CPU millicores, memory MiB) of the pods counted by observe_pod."""
        with self._lock:
            return dict(self._observed)

    # --- queries -----------------------------------------------------------------------------

    def get(self, allocation_id: str) -> Allocation | None:
        record = self._records.get(allocation_id)
        return record.allocation if record else None

    def is_committed(self, allocation_id: str) -> bool:
        record = self._records.get(allocation_id)
        return bool(record and record.committed)

    def allocations(self) -> list[Allocation]:
        with self._lock:
            return [r.allocation for r in self._records.values()]

    def capacity(
        self, sizes: Iterable[Fraction] = STANDARD_SIZES
    ) -> dict[str, dict[Fraction, int]]:
        """Per GPU type, how many slices of each size could start now (each size alone).

        Node CPU/memory limits are not considered here; the spawn form uses this as a guide
        and the reservation itself is the final word.
        """
        sizes = tuple(sizes)
        with self._lock:
            result: dict[str, dict[Fraction, int]] = {}
            for gpu_type, pool in self._pools.items():
                counts: dict[Fraction, int] = {}
                for size in sizes:
                    if size >= 1:
                        k = int(size)
                        counts[size] = sum(
                            (c // k) * len(nodes) for c, nodes in enumerate(pool.nodes_by_free)
                        )
                        continue
                    request = SliceRequest(gpu_type=gpu_type, fraction=size)
                    need_c = request.guaranteed_compute()
                    total_slices = 0
                    for (total, free_mem, free_c), members in pool.classes.items():
                        if members:
                            per_gpu = min(free_mem // request.memory_on(total), free_c // need_c)
                            total_slices += per_gpu * len(members)
                    counts[size] = total_slices
                result[gpu_type] = counts
            return result

    def usage(self) -> list[dict]:
        """Every GPU with its free capacity and the slices on it (for the admin's map)."""
        with self._lock:
            by_gpu: dict[str, list[Allocation]] = {}
            for record in self._records.values():
                for uuid in record.allocation.gpu_uuids:
                    by_gpu.setdefault(uuid, []).append(record.allocation)
            return [
                {
                    "gpu": entry.gpu,
                    "free_memory_mib": entry.free_mem,
                    "free_compute": entry.free_compute,
                    "allocations": by_gpu.get(uuid, []),
                    "committed": {
                        a.id: self._records[a.id].committed for a in by_gpu.get(uuid, [])
                    },
                }
                for uuid, entry in self._gpus.items()
            ]

    def free_state(self) -> dict[str, tuple[int, int]]:
        """GPU UUID -> (free MiB, free compute %); equal before and after a balanced run."""
        with self._lock:
            return {u: (e.free_mem, e.free_compute) for u, e in self._gpus.items()}

    def node_usage(self) -> dict[str, tuple[int, int]]:
        """Node -> (CPU millicores, memory MiB) requested by the pods placed there and those
        counted by :meth:`observe_pod`."""
        with self._lock:
            return {node: (used[0], used[1]) for node, used in self._node_used.items()}

    def audit(self) -> list[str]:
        """Recompute every GPU's use from the live allocations and list any problem.

        An empty list means: no GPU over its memory or compute, and the index agrees with
        the allocations. Tests and benchmarks call this; it costs a pass over everything.
        """
        with self._lock:
            mem: dict[str, int] = {}
            comp: dict[str, int] = {}
            for record in self._records.values():
                a = record.allocation
                for uuid in a.gpu_uuids:
                    mem[uuid] = mem.get(uuid, 0) + a.memory_mib
                    comp[uuid] = comp.get(uuid, 0) + a.compute_min
            problems = []
            for uuid, entry in self._gpus.items():
                used_mem, used_c = mem.get(uuid, 0), comp.get(uuid, 0)
                if used_mem > entry.gpu.memory_mib or used_c > 100:
                    problems.append(
                        f"{uuid}: oversubscribed ({used_mem}/{entry.gpu.memory_mib} MiB, "
                        f"{used_c}% compute)"
                    )
                if entry.free_mem != entry.gpu.memory_mib - used_mem or (
                    entry.free_compute != 100 - used_c
                ):
                    problems.append(f"{uuid}: index disagrees with allocations")
                if entry not in self._pools[entry.gpu.gpu_type].classes[entry.state].values():
                    problems.append(f"{uuid}: not indexed under its free state")
            for pool in self._pools.values():
                for node, gpus in pool.by_node.items():
                    share = sum(g.free_mem / g.gpu.memory_mib for g in gpus)
                    if abs(pool.node_share[node] - share) > 1e-9:
                        problems.append(f"{node}: free {pool.gpu_type} share out of date")
            return problems

    def oversubscribed(self) -> int:
        """Number of GPUs whose guaranteed memory or compute is over capacity."""
        return sum(1 for p in self.audit() if "oversubscribed" in p)

    # --- placement ---------------------------------------------------------------------------

    def _pools_for(self, request: SliceRequest) -> list[_TypePool]:
        """The pools of the types the request accepts, in name order (unknown ones skipped)."""
        types = request._types
        if request.gpu_type is not None:
            pool = self._pools.get(request.gpu_type)
            if pool is not None:
                return [pool]
            raise UnknownGPUTypeError(request.gpu_type, list(self._pools))
        if types is None:
            pools = [self._pools[t] for t in sorted(self._pools)]
        elif len(types) == 1:
            pool = self._pools.get(request.gpu_type or next(iter(types)))
            pools = [pool] if pool is not None else []
        else:
            pools = [self._pools[t] for t in sorted(types) if t in self._pools]
        if not pools:
            asked = request.gpu_type or ", ".join(sorted(types or ())) or "any"
            raise UnknownGPUTypeError(asked, list(self._pools))
        return pools

    def _compiled(self, pool: _TypePool) -> CompiledMix:
        """The pool's mix as bit masks; a new mix version drops every score made with the old."""
        if pool.mix_version != pool.mix.version:
            pool.compiled = CompiledMix(pool.mix.weights)
            pool.mix_version = pool.mix.version
            pool.order_cache.clear()
            pool.frag.clear()
            pool.changed.update(pool.by_node)
        return pool.compiled

    def _place_least_fragmenting(
        self, pools: list[_TypePool], request: SliceRequest
    ) -> tuple[_TypePool, list[_Gpu]] | None:
        """Score a few candidate nodes of each pool; take the least growth of fragmentation.

        Candidates come in GPU order (least GPU fragmentation, then best fit), which also
        breaks ties: among equal growths the earlier, tighter fit wins.
        """
        best_growth = float("inf")
        best: tuple | None = None
        shape = request.shape
        for pool in pools:
            mix = self._compiled(pool)
            if request.is_whole:
                nodes = self._whole_candidates(pool, request)
            else:
                nodes, bound = self._share_candidates(pool, request, mix)
                if bound or self._any_bound(pool, mix):
                    # CPU or memory binds on some node: where it binds least is not where
                    # the GPU fits best, so look further down the GPU order.
                    nodes, _ = self._share_candidates(
                        pool, request, mix, WIDE_CANDIDATES, WIDE_PER_STATE
                    )
            frag = pool.frag
            for node, hint, quick in nodes:
                if quick is not None:
                    growth = quick
                    state = hint  # the GPU itself
                else:
                    # The cache look-up inline: most candidates have not changed since last time.
                    cached = frag.get(node)
                    hit = cached[1].get(shape) if cached is not None else None
                    if hit is None:
                        hit = self._node_growth(pool, mix, node, request)
                    growth, state = hit
                # Strictly less: among equal growths the earlier candidate wins.
                if growth < best_growth or best is None:
                    best_growth = growth
                    best = (pool, node, state)
        if best is None or best_growth == float("inf"):
            return None
        pool, node, state = best
        if request.is_whole:
            free = sorted(pool.free_by_node[node].values(), key=_by_index)
            return pool, free[: request.count]
        if type(state) is _Gpu:
            return pool, [state]
        for entry in pool.by_node[node]:
            if entry.state == state:
                return pool, [entry]
        return None  # pragma: no cover - the state came from this node

    def _any_bound(self, pool: _TypePool, mix: CompiledMix) -> bool:
        """Whether some node of the pool has free GPUs its CPU or memory cannot serve."""
        if pool.changed:
            free_of, share, bound = self._free.get, pool.node_share, pool.bound
            cpu_per_gpu, mem_per_gpu = mix.cpu_per_gpu, mix.mem_per_gpu
            for node in pool.changed:
                cpu, mem = free_of(node, _UNACCOUNTED)
                free = share[node]
                if (cpu is None or cpu >= free * cpu_per_gpu) and (
                    mem is None or mem >= free * mem_per_gpu
                ):
                    bound.discard(node)  # CompiledMix.stranded is 0
                elif mix.stranded(free, cpu, mem) > 0:
                    bound.add(node)
                else:
                    bound.discard(node)
            pool.changed.clear()
        return bool(pool.bound)

    def _share_candidates(
        self,
        pool: _TypePool,
        request: SliceRequest,
        mix: CompiledMix,
        limit: int | None = None,
        per_state: int | None = None,
    ) -> tuple[list[tuple[str, _Gpu | None, float | None]], bool]:
        """Nodes with a GPU that can take the share, from the GPU states that suit it best:
        ``(node, GPU it was found by and growth, or None and None: score the node)``.

        The growth comes with the candidate when the node's fragmentation grows exactly as
        its GPU's does: a partly used GPU on a node that keeps the CPU and memory of every
        task of the mix after the pod (no task's fit on the node changes but through that
        GPU). Then the node is not scored GPU by GPU, and a reserve costs a few look-ups.
        Also returns whether free GPUs go short of CPU or memory on any candidate (then it is
        worth looking at more of them).
        """
        if request.node is not None:
            gpus = pool.by_node.get(request.node, ())
            ok = [g for g in gpus if self._fits(g.state, request) and self._allowed(g, request)]
            return ([(request.node, None, None)] if ok else []), False
        limit = limit or CANDIDATE_NODES
        per_state = per_state or PER_STATE
        order = self._order(pool, request, "binpack")
        found: list[tuple[str, _Gpu | None, float | None]] = []
        seen: set[str] = set()
        # Without zone or node set only the node's CPU and memory are checked, inline: this
        # loop runs for every reserve.
        plain = request.zone is None and request.nodes is None
        need_cpu, need_mem = request.cpu_millis, request.host_memory_mib
        keep_cpu, keep_mem = need_cpu + mix.max_cpu, need_mem + mix.max_memory
        free_of = self._free.get
        allowed = self._allowed
        classes = pool.classes
        share_of = pool.node_share.__getitem__
        cpu_per_gpu, mem_per_gpu = mix.cpu_per_gpu, mix.mem_per_gpu
        bound = False
        stranded = mix.stranded
        for state, growth in order:
            members = classes[state]
            if not members:
                continue
            if state[1] == state[0] and state[2] == 100:
                # Fully free GPUs: a few nodes of each free-GPU count, so the measure can
                # choose between breaking into a nearly full node and keeping others whole.
                for c in range(1, len(pool.nodes_by_free)):
                    self._take_nodes(pool, pool.nodes_by_free[c], request, found, seen, per_state)
                    if len(found) >= limit:
                        break
            else:
                taken = 0
                asked = request.memory_on(state[0]) / state[0]  # GPUs the share takes
                for entry in members.values():
                    node = entry.gpu.node
                    if node in seen:
                        continue
                    seen.add(node)
                    cpu, mem = free_of(node, _UNACCOUNTED)
                    if plain:
                        ok = (cpu is None or need_cpu <= cpu) and (mem is None or need_mem <= mem)
                    else:
                        ok = allowed(entry, request)
                    if ok:
                        if (cpu is None or cpu >= keep_cpu) and (mem is None or mem >= keep_mem):
                            free = share_of(node)
                            if (cpu is None or cpu - need_cpu >= free * cpu_per_gpu) and (
                                mem is None or mem - need_mem >= free * mem_per_gpu
                            ):
                                # The CPU and memory left serve the free GPUs, before and after.
                                found.append((node, entry, growth))
                            else:
                                bound = True
                                more = stranded(
                                    free - asked,
                                    cpu if cpu is None else cpu - need_cpu,
                                    mem if mem is None else mem - need_mem,
                                ) - stranded(free, cpu, mem)
                                found.append((node, entry, growth + more))
                        else:
                            found.append((node, None, None))
                        taken += 1
                        if taken >= per_state or len(found) >= limit:
                            break
            if len(found) >= limit:
                break
        return found, bound

    def _whole_candidates(
        self, pool: _TypePool, request: SliceRequest
    ) -> list[tuple[str, None, None]]:
        """Nodes with enough fully free GPUs: a few of each free-GPU count."""
        found: list[tuple[str, None, None]] = []
        if request.node is not None:
            free = pool.free_by_node.get(request.node, {})
            if len(free) >= request.count and self._allowed(next(iter(free.values())), request):
                found.append((request.node, None, None))
            return found
        plain = request.zone is None and request.nodes is None
        need_cpu, need_mem = request.cpu_millis, request.host_memory_mib
        free_of = self._free.get
        free_by_node = pool.free_by_node
        allowed = self._allowed
        nodes_by_free = pool.nodes_by_free
        # Each node is under exactly one count, so no node comes twice.
        for c in range(request.count, len(nodes_by_free)):
            taken = 0
            for node in nodes_by_free[c]:
                if plain:
                    cpu, mem = free_of(node, _UNACCOUNTED)
                    ok = (cpu is None or need_cpu <= cpu) and (mem is None or need_mem <= mem)
                else:
                    ok = allowed(next(iter(free_by_node[node].values())), request)
                if ok:
                    found.append((node, None, None))
                    taken += 1
                    if taken >= PER_FREE_COUNT:
                        break
            if len(found) >= WHOLE_CANDIDATES:
                break
        return found

    def _take_nodes(
        self,
        pool: _TypePool,
        nodes: dict[str, None],
        request: SliceRequest,
        found: list[tuple[str, _Gpu | None, float | None]],
        seen: set[str],
        per_state: int,
    ) -> None:
        taken = 0
        for node in nodes:
            if node in seen:
                continue
            seen.add(node)
            if self._allowed(next(iter(pool.free_by_node[node].values())), request):
                found.append((node, None, None))
                taken += 1
                if taken >= per_state:
                    return

    def _node_growth(
        self,
        pool: _TypePool,
        mix: CompiledMix,
        node: str,
        request: SliceRequest,
    ) -> tuple[float, GpuState | None]:
        """How much the node's fragmentation grows if the request goes there, and on which
        GPU state (a share), its GPUs and CPU/memory scored as a whole; cached until the node
        changes."""
        cached = pool.frag.get(node)
        if cached is not None:
            hit = cached[1].get(request.shape)
            if hit is not None:
                return hit
        cpu, mem = self._node_free(node)
        states = [g.state for g in pool.by_node[node]]
        gpu = mix.gpu
        known = mix.known
        items = [known(s) or gpu(s) for s in states]
        free = pool.node_share[node]
        if cached is None:
            fits = mix.fits(items, cpu, mem)
            now = mix._node(items, fits) + mix.stranded(free, cpu, mem)
            cached = pool.frag[node] = [now, {}, fits]
        now, fits = cached[0], cached[2]
        stranded_now = mix.stranded(free, cpu, mem)
        now -= stranded_now  # growth() compares the fragmentation part alone
        if cpu is not None:
            cpu -= request.cpu_millis
        if mem is not None:
            mem -= request.host_memory_mib
        if request.is_whole:
            moved = []
            for i, (total, free_mem, free_c) in enumerate(states):
                if len(moved) < request.count and free_mem == total and free_c == 100:
                    moved.append((i, gpu((total, 0, 0))))
            more = mix.stranded(free - request.count, cpu, mem) - stranded_now
            hit = (round(mix.growth(items, now, fits, moved, cpu, mem) + more, 9), None)
        else:
            compute = request.guaranteed_compute()
            best: tuple | None = None
            tried: set[GpuState] = set()
            for i, state in enumerate(states):
                if state in tried or not self._fits(state, request):
                    continue
                tried.add(state)
                total, free_mem, free_c = state
                left_mem = free_mem - request.memory_on(total)
                moved = [(i, gpu((total, left_mem, free_c - compute)))]
                more = mix.stranded(free - (free_mem - left_mem) / total, cpu, mem) - stranded_now
                # Equal growth: the GPU left with least free (best fit).
                growth = mix.growth(items, now, fits, moved, cpu, mem) + more
                key = (round(growth, 9), left_mem / total)
                if best is None or key < best[0]:
                    best = (key, state)
            hit = (float("inf"), None) if best is None else (best[0][0], best[1])
        cached[1][request.shape] = hit
        return hit

    def _order(
        self, pool: _TypePool, request: SliceRequest, policy: str
    ) -> list[tuple[GpuState, float | None]]:
        """Free states that fit the request, best first, each with its GPU's growth of
        fragmentation under binpack (cached per request shape)."""
        shape = (request.size_key, request.memory_mib, request._compute, policy)
        order = pool.order_cache.get(shape)
        if order is None:
            scored = [
                (self._score(pool, s, request, policy), s)
                for s in pool.classes
                if self._fits(s, request)
            ]
            scored.sort(key=_first)  # stable: equal scores keep the index's order
            binpack = policy == "binpack"
            order = [(s, key[0] if binpack else None) for key, s in scored]
            pool.order_cache[shape] = order
        return order

    def _place_fraction(self, pool: _TypePool, request: SliceRequest, policy: str) -> _Gpu | None:
        self._compiled(pool)
        if request.node is not None:
            # Few GPUs on one node: score each directly.
            scored = [
                (self._score(pool, g.state, request, policy), g.gpu.index, g)
                for g in pool.by_node.get(request.node, ())
                if self._fits(g.state, request) and self._allowed(g, request)
            ]
            return min(scored, key=lambda t: (t[0], t[1]))[2] if scored else None
        for state, _ in self._order(pool, request, policy):
            members = pool.classes[state]
            if not members:
                continue
            for entry in self._preferred(pool, state, members, policy):
                if self._allowed(entry, request):
                    return entry
        return None

    def _place_whole(
        self, pool: _TypePool, request: SliceRequest, policy: str
    ) -> list[_Gpu] | None:
        k = request.count
        counts = range(k, len(pool.nodes_by_free))
        if policy == "spread":
            counts = reversed(counts)
        for c in counts:
            for node in pool.nodes_by_free[c]:
                if request.node is not None and node != request.node:
                    continue
                free = sorted(pool.free_by_node[node].values(), key=lambda g: g.gpu.index)
                if self._allowed(free[0], request):
                    return free[:k]
        return None

    def _preferred(
        self, pool: _TypePool, state: GpuState, members: dict[str, _Gpu], policy: str
    ) -> Iterator[_Gpu]:
        """GPUs of one free state in order of preference.

        For a fully free GPU the node matters: binpack breaks into the node with the fewest
        free GPUs (keeping empty nodes whole for multi-GPU jobs), spread into the emptiest.
        """
        total, free_mem, free_c = state
        if free_mem != total or free_c != 100:
            yield from members.values()
            return
        counts = range(1, len(pool.nodes_by_free))
        if policy == "spread":
            counts = reversed(counts)
        for c in counts:
            for node in pool.nodes_by_free[c]:
                for entry in pool.free_by_node[node].values():
                    if entry.state == state:
                        yield entry

    @staticmethod
    def _fits(state: GpuState, request: SliceRequest) -> bool:
        total, free_mem, free_c = state
        return free_mem >= request.memory_on(total) and free_c >= request.guaranteed_compute()

    def _allowed(self, entry: _Gpu, request: SliceRequest) -> bool:
        """Node, zone and node-set constraints, and room for the pod's CPU/memory on the node."""
        if request.node is not None and entry.gpu.node != request.node:
            return False
        if request.zone is not None and entry.zone != request.zone:
            return False
        if request.nodes is not None and entry.gpu.node not in request.nodes:
            return False
        return self._node_has_room(entry.gpu.node, request.cpu_millis, request.host_memory_mib)

    def _score(self, pool: _TypePool, state: GpuState, request: SliceRequest, policy: str) -> tuple:
        total, free_mem, free_c = state
        left_mem = free_mem - request.memory_on(total)
        left_c = free_c - request.guaranteed_compute()
        if policy == "spread":
            return (-left_mem / total, -left_c)
        mix = pool.compiled
        growth = mix.gpu_only((total, left_mem, left_c)) - mix.gpu_only(state)
        return (round(growth, 9), left_mem / total, left_c)

    # --- bookkeeping -------------------------------------------------------------------------

    def _new_id(self) -> str:
        """A fresh allocation id: 80 random bits (drawn 512 at a time: one system call)."""
        ids = self._ids
        if not ids:
            raw = os.urandom(10 * 512).hex()
            ids.extend(raw[i : i + 20] for i in range(0, len(raw), 20))
        return ids.pop()

    def _node_free(self, node: str) -> tuple[int | None, int | None]:
        """Free CPU millicores and memory MiB of a node (None: not accounted)."""
        return self._free.get(node, _UNACCOUNTED)

    def _node_has_room(self, node: str, cpu_millis: int, memory_mib: int) -> bool:
        if not cpu_millis and not memory_mib:
            return True
        cpu, mem = self._free.get(node, _UNACCOUNTED)
        return (cpu is None or cpu_millis <= cpu) and (mem is None or memory_mib <= mem)

    def _charge_node(
        self, node: str, cpu_millis: int, memory_mib: int, touched: _TypePool | None = None
    ) -> None:
        """Count CPU and memory on a node (negative: give back); the scores of the node's
        pools are dropped, but ``touched``'s, which the caller has just dropped."""
        if cpu_millis or memory_mib:
            used = self._node_used.get(node)
            if used is None:
                used = self._node_used[node] = [0, 0]
            used[0] += cpu_millis
            used[1] += memory_mib
            free = self._free.get(node)
            if free is not None:
                cpu, mem = free
                self._free[node] = (
                    None if cpu is None else cpu - cpu_millis,
                    None if mem is None else mem - memory_mib,
                )
            for pool in self._node_pools.get(node, ()):
                if pool is touched:
                    continue
                pool.changed.add(node)
                if pool.frag:  # empty while ledger.rebuild adopts: nothing scored yet
                    pool.frag.pop(node, None)

    def _take(
        self,
        pool: _TypePool,
        entries: list[_Gpu],
        request: SliceRequest,
        owner: Owner,
        allocation_id: str,
    ) -> Allocation:
        first = entries[0].gpu
        compute = request._compute
        if request.is_whole:
            memory = first.memory_mib
            compute_max = 100
        else:
            memory = request.memory_mib or max(
                1, request.size_key[0] * first.memory_mib // request.size_key[1]
            )  # request.memory_on, inline: this runs for every reserve
            compute_max = request.compute_max
        consume = self._consume
        for entry in entries:
            consume(pool, entry, memory, compute)
        cpu, host_memory = request.cpu_millis, request.host_memory_mib
        if cpu or host_memory:
            self._charge_node(first.node, cpu, host_memory, pool)
        if len(entries) == 1:
            uuids, indices = (first.uuid,), (first.index,)
        else:
            uuids = tuple(e.gpu.uuid for e in entries)
            indices = tuple(e.gpu.index for e in entries)
        # Positional (the fields' order), quicker than by keyword on this path.
        return Allocation(
            allocation_id,
            owner,
            first.node,
            first.gpu_type,
            uuids,
            indices,
            request.fraction,
            memory,
            first.memory_mib,
            compute,
            compute_max,
            cpu,
            host_memory,
            first.product,
            first.simulated,
        )

    def _give_back(self, allocation: Allocation) -> None:
        gpus = self._gpus
        pools = self._pools
        consume = self._consume
        memory, compute = -allocation.memory_mib, -allocation.compute_min
        pool = None
        for uuid in allocation.gpu_uuids:
            entry = gpus[uuid]
            pool = pools[entry.gpu.gpu_type]
            consume(pool, entry, memory, compute)
        cpu, host_memory = allocation.cpu_millis, allocation.host_memory_mib
        if cpu or host_memory:
            self._charge_node(allocation.node, -cpu, -host_memory, pool)

    def _consume(
        self, pool: _TypePool, entry: _Gpu, memory: int, compute: int, count: int = 1
    ) -> None:
        """Move a GPU to its new free state (negative amounts give capacity back) as ``count``
        slices take (or give back) ``memory`` and ``compute`` together."""
        gpu = entry.gpu
        node = gpu.node
        if pool.frag:
            pool.frag.pop(node, None)
        pool.changed.add(node)
        classes = pool.classes
        uuid = gpu.uuid
        old = entry.state
        del classes[old][uuid]
        free_mem = entry.free_mem = entry.free_mem - memory
        # From whole MiB, so no rounding drifts in over a long-running hub.
        node_free_mib = pool.node_free_mib
        free_mib = node_free_mib[node] = node_free_mib[node] - memory
        size = pool.node_gpu_mib[node]
        if size:
            pool.node_share[node] = free_mib / size
        else:  # GPUs of several sizes on the node: sum their shares
            pool.node_share[node] = sum(g.free_mem / g.gpu.memory_mib for g in pool.by_node[node])
        free_c = entry.free_compute = entry.free_compute - compute
        state = entry.state = (old[0], free_mem, free_c)
        members = classes.get(state)
        if members is None:
            classes[state] = {uuid: entry}
            pool.order_cache.clear()  # a state never seen before may be the best fit
        else:
            members[uuid] = entry
        slices = entry.slices
        after = entry.slices = slices + (count if memory >= 0 else -count)
        if not slices or not after:  # it was or is now fully free
            self._mark_free(pool, entry, not after)

    def _index(self, pool: _TypePool, entry: _Gpu) -> None:
        state = entry.state
        members = pool.classes.get(state)
        if members is None:
            members = pool.classes[state] = {}
            pool.order_cache.clear()  # a state never seen before may be the best fit
        members[entry.gpu.uuid] = entry

    def _mark_free(self, pool: _TypePool, entry: _Gpu, free: bool) -> None:
        node = entry.gpu.node
        node_free = pool.free_by_node.setdefault(node, {})
        before = len(node_free)
        if free:
            node_free[entry.gpu.uuid] = entry
        else:
            del node_free[entry.gpu.uuid]
        after = len(node_free)
        while len(pool.nodes_by_free) <= after:
            pool.nodes_by_free.append({})
        if before:
            del pool.nodes_by_free[before][node]
        if after:
            pool.nodes_by_free[after][node] = None

    def _expire_locked(self, now: float) -> list[Allocation]:
        expired = []
        while self._expiry and self._expiry[0][0] <= now:
            deadline, allocation_id = heapq.heappop(self._expiry)
            record = self._records.get(allocation_id)
            if record is None or record.committed or record.deadline != deadline:
                continue  # released or committed since; the heap entry is stale
            del self._records[allocation_id]
            self._give_back(record.allocation)
            expired.append(record.allocation)
        return expired

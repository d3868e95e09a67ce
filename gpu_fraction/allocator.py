"""The allocator: places GPU slices so GPUs are packed well and never oversubscribed.

One allocator serves the whole hub (notebooks and jobs alike). Its state is an index over the
GPUs' free capacity, not a database: the cluster's pod annotations are the ledger, and
:func:`gpu_fraction.ledger.rebuild` restores the allocator from them after a restart.

Life of a slice: :meth:`Allocator.reserve` -> :meth:`Allocator.commit` once the pod or process
exists -> :meth:`Allocator.release` (idempotent). A reservation never committed expires after its
time-to-live, so a spawn that died half-way does not keep a GPU slice.

Speed matters because every spawn and job start goes through here under one lock: GPUs are
grouped by their free state (total, free memory, free compute), and a request scores each
*state* once (cached), not each GPU, so a reserve costs a few dictionary look-ups even with
16,000 GPUs.
"""

from __future__ import annotations

import heapq
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .errors import AllocationRefused, UnknownAllocationError, UnknownGPUTypeError
from .fragmentation import GpuState, TaskMix, fragmentation
from .model import GPU, STANDARD_SIZES, Allocation, NodeCapacity, Owner, SliceRequest
from .refusal import refusal_reason

if TYPE_CHECKING:
    from .inventory import Inventory

POLICIES = ("binpack", "spread")


class _Gpu:
    """Mutable free capacity of one GPU (internal)."""

    __slots__ = ("free_compute", "free_mem", "gpu", "slices", "zone")

    def __init__(self, gpu: GPU, zone: str | None) -> None:
        self.gpu = gpu
        self.zone = zone
        self.free_mem = gpu.memory_mib
        self.free_compute = 100
        self.slices = 0

    @property
    def state(self) -> GpuState:
        return (self.gpu.memory_mib, self.free_mem, self.free_compute)

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
        "by_node",
        "classes",
        "free_by_node",
        "gpu_type",
        "mix_version",
        "nodes_by_free",
        "order_cache",
        "size",
    )

    def __init__(self, gpu_type: str) -> None:
        self.gpu_type = gpu_type
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


class Allocator:
    """Places slice requests on GPUs; thread-safe and usable from asyncio (calls never block).

    ``policy`` is ``"binpack"`` (default: fill the GPU where the request leaves the least
    fragmentation, then the fullest, which keeps whole GPUs and whole nodes free for training
    jobs) or ``"spread"`` (least loaded first, for inference). ``reservation_ttl`` is how long a
    reservation lives without :meth:`commit`.
    """

    def __init__(
        self,
        gpus: Iterable[GPU] = (),
        nodes: Mapping[str, NodeCapacity] | None = None,
        *,
        policy: str = "binpack",
        reservation_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        task_mix: TaskMix | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
        if reservation_ttl <= 0:
            raise ValueError(f"reservation_ttl: must be positive, got {reservation_ttl!r}")
        self.policy = policy
        self.reservation_ttl = reservation_ttl
        self._clock = clock
        self._mix = task_mix or TaskMix()
        self._lock = threading.RLock()
        self._gpus: dict[str, _Gpu] = {}
        self._pools: dict[str, _TypePool] = {}
        self._nodes: dict[str, NodeCapacity] = dict(nodes or {})
        self._node_used: dict[str, list[int]] = {}
        self._records: dict[str, _Record] = {}
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
                    pool = self._pools[gpu.gpu_type] = _TypePool(gpu.gpu_type)
                pool.size += 1
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

        Raises :class:`UnknownGPUTypeError` for a type no GPU has and
        :class:`AllocationRefused` (with a reason to show the user) when nothing fits now.
        """
        policy = policy or self.policy
        if policy not in POLICIES:
            raise ValueError(f"policy: must be one of {', '.join(POLICIES)}, got {policy!r}")
        with self._lock:
            now = self._clock()
            self._expire_locked(now)
            pool = self._pools.get(request.gpu_type)
            if pool is None:
                raise UnknownGPUTypeError(request.gpu_type, list(self._pools))
            if request.is_whole:
                chosen = self._place_whole(pool, request, policy)
            else:
                single = self._place_fraction(pool, request, policy)
                chosen = [single] if single is not None else None
            if chosen is None:
                raise AllocationRefused(refusal_reason(self, pool, request))
            self._mix.record(request.size_key)
            # Unguessable: whoever may release "an allocation" must first be shown its id.
            allocation_id = secrets.token_hex(10)
            deadline = now + (self.reservation_ttl if ttl is None else ttl)
            allocation = self._take(pool, chosen, request, owner, allocation_id)
            self._records[allocation_id] = _Record(allocation, False, deadline)
            heapq.heappush(self._expiry, (deadline, allocation_id))
            return allocation

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

        Raises :class:`AllocationRefused` naming the reason when it cannot be held: unknown GPU,
        wrong node, already held, or over capacity together with what is already held.
        """
        with self._lock:
            if allocation.id in self._records:
                raise AllocationRefused(f"allocation {allocation.id} is already held")
            entries = []
            for uuid in allocation.gpu_uuids:
                entry = self._gpus.get(uuid)
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
            if not self._node_has_room(
                allocation.node, allocation.cpu_millis, allocation.host_memory_mib
            ):
                raise AllocationRefused(
                    f"node {allocation.node} lacks CPU or memory for this pod's requests"
                )
            for entry in entries:
                pool = self._pools[entry.gpu.gpu_type]
                self._consume(pool, entry, allocation.memory_mib, allocation.compute_min)
            self._charge_node(allocation.node, allocation.cpu_millis, allocation.host_memory_mib)
            deadline = None if committed else self._clock() + self.reservation_ttl
            self._records[allocation.id] = _Record(allocation, committed, deadline)
            if deadline is not None:
                heapq.heappush(self._expiry, (deadline, allocation.id))
            return allocation

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
        """Node -> (CPU millicores, memory MiB) requested by the pods placed there."""
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
            return problems

    def oversubscribed(self) -> int:
        """Number of GPUs whose guaranteed memory or compute is over capacity."""
        return sum(1 for p in self.audit() if "oversubscribed" in p)

    # --- placement ---------------------------------------------------------------------------

    def _place_fraction(self, pool: _TypePool, request: SliceRequest, policy: str) -> _Gpu | None:
        if pool.mix_version != self._mix.version:
            pool.order_cache.clear()
            pool.mix_version = self._mix.version
        if request.node is not None:
            # Few GPUs on one node: score each directly.
            scored = [
                (self._score(g.state, request, policy), g.gpu.index, g)
                for g in pool.by_node.get(request.node, ())
                if self._fits(g.state, request) and self._allowed(g, request)
            ]
            return min(scored, key=lambda t: (t[0], t[1]))[2] if scored else None
        shape = (request.size_key, request.memory_mib, request._compute, policy)
        order = pool.order_cache.get(shape)
        if order is None:
            fitting = [s for s in pool.classes if self._fits(s, request)]
            fitting.sort(key=lambda s: self._score(s, request, policy))
            order = pool.order_cache[shape] = fitting
        for state in order:
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

    def _score(self, state: GpuState, request: SliceRequest, policy: str) -> tuple:
        total, free_mem, free_c = state
        left_mem = free_mem - request.memory_on(total)
        left_c = free_c - request.guaranteed_compute()
        if policy == "spread":
            return (-left_mem / total, -left_c)
        mix = self._mix.weights
        growth = fragmentation((total, left_mem, left_c), mix) - fragmentation(state, mix)
        return (round(growth, 9), left_mem / total, left_c)

    # --- bookkeeping -------------------------------------------------------------------------

    def _node_has_room(self, node: str, cpu_millis: int, memory_mib: int) -> bool:
        if not cpu_millis and not memory_mib:
            return True
        capacity = self._nodes.get(node)
        if capacity is None:
            return True
        used = self._node_used.get(node, (0, 0))
        if capacity.cpu_millis is not None and used[0] + cpu_millis > capacity.cpu_millis:
            return False
        return capacity.memory_mib is None or used[1] + memory_mib <= capacity.memory_mib

    def _charge_node(self, node: str, cpu_millis: int, memory_mib: int) -> None:
        if cpu_millis or memory_mib:
            used = self._node_used.setdefault(node, [0, 0])
            used[0] += cpu_millis
            used[1] += memory_mib

    def _take(
        self,
        pool: _TypePool,
        entries: list[_Gpu],
        request: SliceRequest,
        owner: Owner,
        allocation_id: str,
    ) -> Allocation:
        first = entries[0].gpu
        memory = request.memory_on(first.memory_mib)
        compute = request.guaranteed_compute()
        for entry in entries:
            self._consume(pool, entry, memory, compute)
        self._charge_node(first.node, request.cpu_millis, request.host_memory_mib)
        return Allocation(
            id=allocation_id,
            owner=owner,
            node=first.node,
            gpu_type=first.gpu_type,
            gpu_uuids=tuple(e.gpu.uuid for e in entries),
            gpu_indices=tuple(e.gpu.index for e in entries),
            fraction=request.fraction,
            memory_mib=memory,
            gpu_memory_mib=first.memory_mib,
            compute_min=compute,
            compute_max=request.burst_compute(),
            cpu_millis=request.cpu_millis,
            host_memory_mib=request.host_memory_mib,
            product=first.product,
            simulated=first.simulated,
        )

    def _give_back(self, allocation: Allocation) -> None:
        for uuid in allocation.gpu_uuids:
            entry = self._gpus[uuid]
            pool = self._pools[entry.gpu.gpu_type]
            self._consume(pool, entry, -allocation.memory_mib, -allocation.compute_min)
        self._charge_node(allocation.node, -allocation.cpu_millis, -allocation.host_memory_mib)

    def _consume(self, pool: _TypePool, entry: _Gpu, memory: int, compute: int) -> None:
        """Move a GPU to its new free state (negative amounts give capacity back)."""
        was_free = entry.fully_free
        del pool.classes[entry.state][entry.gpu.uuid]
        entry.free_mem -= memory
        entry.free_compute -= compute
        entry.slices += 1 if memory >= 0 else -1
        self._index(pool, entry)
        if was_free != entry.fully_free:
            self._mark_free(pool, entry, entry.fully_free)

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

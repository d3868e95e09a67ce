"""Node fragmentation: how much of a node's free GPU capacity the task mix cannot use.

As in "Beware of Fragmentation" (USENIX ATC'23), for one task of the mix the free capacity of a
node is fragmented

- all of it, when the task does not fit on the node at all: too little CPU or memory left for
  the pod, or too few GPUs with room for it;
- otherwise the free capacity of the GPUs too small for the task's per-GPU share (for a
  whole-GPU task: every GPU not fully free).

A node's fragmentation is the expectation over the mix, in GPUs (free memory share of each
GPU). Placement puts a request where that grows least, so free capacity stays where future
requests, CPU and memory included, can use it.

The paper's measure asks only whether *one* more task fits: a node with 8 free GPUs and CPU
for one pod looks unfragmented. :meth:`CompiledMix.stranded` adds what a stream of the mix's
pods would leave: the free GPUs beyond what the node's free CPU and memory serve at the mix's
average CPU and memory per GPU. Measured on ``benchmarks/packing.py`` (% allocated at 130%,
seed 42, ours without -> with it): base 96.38 -> 97.57, multigpu 98.29 -> 98.54, constrained
96.38 -> 97.74, sharing 86.19 -> 86.16 (87.54 with the wider candidate search it enables, see
:data:`gpu_fraction.allocator.WIDE_CANDIDATES`). A per-task version (each task's own CPU
per GPU, capped by the GPUs that task fits) lifted a numpy FGD to 88.7 on sharing but made
ours worse (84.95) with its candidate search, and costs a pass over the mix per node.

Both ask what fits *now*, and most of what the mix asks is whole GPUs, so every partly used
GPU looks about equally lost and a share fills any hole rather than open a GPU. What a hole
costs in the end is what stays free once the shares that fit it have come:
:meth:`CompiledMix.terminal` adds that (see :func:`_hole_left`), and decides among shares'
placements where the mix asks for whole GPUs. On ``multigpu`` at the end of the replay (seed
42, ``benchmarks/packing_waste.py``) the free capacity was all next to shares (no GPU fully
free): 947 GPUs held shares with 89 GPUs free among them, where best-fit decreasing packs
the same share pods offline into 930; 191 GPUs held one 0.81 share (0.19 free, which only
the rare 0.16/0.11/0.05 tasks fit), 62 a 0.47 and a 0.32 (0.21 free). With the hole term
938 GPUs hold shares (71 free; best-fit decreasing offline: 940), none a 0.47 with a 0.32,
211 two 0.47s; multigpu 98.53 / 98.45 / 98.54 -> 98.83 / 98.87 / 98.85 (seeds 42 / 7 /
2026), base 97.56 / 97.58 / 97.69 -> 97.75 / 98.05 / 98.11, constrained 97.75 / 97.64 /
97.70 -> 98.12 / 97.92 / 98.04, sharing unchanged (the term is off there, see
:data:`TERMINAL_WEIGHT`).

For speed the mix is compiled into bit masks: one bit per task shape, a GPU state maps to the
tasks that fit on it, a node's CPU and memory to the tasks whose pod fits, so scoring a node is a
few integer operations per GPU.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from .fragmentation import GpuState, Shape
from .model import MAX_WHOLE_GPUS


class CompiledMix:
    """One GPU type's task mix as bit masks (internal to placement; cached per mix version)."""

    __slots__ = (
        "_cpu_masks",
        "_cpu_needs",
        "_cpu_per_gpu",
        "_gpu",
        "_hole_memo",
        "_mem_masks",
        "_mem_needs",
        "_mem_per_gpu",
        "_share_needs",
        "_sum",
        "_terminal",
        "_terminal_weight",
        "_whole_chance",
        "all_bits",
        "cpu_per_gpu",
        "known",
        "max_cpu",
        "max_memory",
        "mem_per_gpu",
        "share_bits",
        "shares",
        "total_weight",
        "weights",
        "whole_by_free",
    )

    def __init__(self, weights: Sequence[tuple[Shape, float]]) -> None:
        self.weights = tuple(w for _, w in weights)
        self.total_weight = sum(self.weights)
        self.all_bits = (1 << len(self.weights)) - 1
        #: (bit, explicit memory or 0, share numerator, denominator, compute) of share tasks
        self.shares: list[tuple[int, int, int, int, int]] = []
        self.share_bits = 0
        whole_need = [0] * (MAX_WHOLE_GPUS + 1)
        for i, ((num, den, memory, compute, _, _), _) in enumerate(weights):
            bit = 1 << i
            if num >= den:
                for c in range(min(num // den, MAX_WHOLE_GPUS), MAX_WHOLE_GPUS + 1):
                    whole_need[c] |= bit
            else:
                self.shares.append((bit, memory, num, den, compute))
                self.share_bits |= bit
        #: free whole GPUs on a node -> whole-GPU tasks with that many or fewer GPUs
        self.whole_by_free = whole_need
        self._cpu_needs, self._cpu_masks = _prefix_masks([s[4] for s, _ in weights])
        self._mem_needs, self._mem_masks = _prefix_masks([s[5] for s, _ in weights])
        #: A node with this much CPU and memory free fits every task's pod.
        self.max_cpu = max(self._cpu_needs, default=0)
        self.max_memory = max(self._mem_needs, default=0)
        # CPU and memory the mix asks per GPU it asks, on average (None: none asked).
        asked = sum(w * num / den for (num, den, *_), w in weights)
        cpu = sum(w * shape[4] for shape, w in weights)
        mem = sum(w * shape[5] for shape, w in weights)
        self._cpu_per_gpu = cpu / asked if cpu and asked else None
        self._mem_per_gpu = mem / asked if mem and asked else None
        #: the same, 0 for none (for quick checks: ``cpu >= free * cpu_per_gpu``)
        self.cpu_per_gpu = self._cpu_per_gpu or 0.0
        self.mem_per_gpu = self._mem_per_gpu or 0.0
        self._gpu: dict[GpuState, tuple[int, float]] = {}
        #: :meth:`gpu` for a state seen before (a bound dict.get: no Python frame)
        self.known = self._gpu.get
        self._sum: dict[int, float] = {}
        # The hole term (terminal): each share size with the chance a hole gets it, smallest
        # first (a size asked FILL_SHARE of the share tasks' weight or more: surely). Sizes
        # under 1/100 are left out: they fill next to nothing, and _hole_left recurses once
        # per size it takes.
        by_need: dict[float, float] = {}
        for (num, den, *_), w in weights:
            if num < den and w > 0 and 100 * num >= den:
                by_need[num / den] = by_need.get(num / den, 0.0) + w
        share_weight = sum(by_need.values())
        self._share_needs = tuple(
            (need, min(1.0, w / (FILL_SHARE * share_weight))) for need, w in sorted(by_need.items())
        )
        self._hole_memo: dict[float, float] = {}
        self._terminal: dict[float, float] = {0.0: 0.0}
        total = self.total_weight or 1.0
        whole = sum(w for (num, den, *_), w in weights if num >= den) / total
        self._whole_chance = min(1.0, whole / FILL_SHARE)
        # Only where the mix asks for whole GPUs (see TERMINAL_WEIGHT): off below 10% of the
        # weight, full from 30%.
        ramp = min(1.0, max(0.0, (whole - 0.1) / 0.2))
        self._terminal_weight = TERMINAL_WEIGHT * ramp * self.total_weight

    def gpu(self, state: GpuState) -> tuple[int, float]:
        """(tasks whose per-GPU share fits this GPU, its free share of a GPU)."""
        hit = self._gpu.get(state)
        if hit is not None:
            return hit
        total, free_mem, free_c = state
        mask = 0
        if free_mem == total and free_c == 100:
            mask = ~self.share_bits & self.all_bits
        for bit, memory, num, den, compute in self.shares:
            need = memory or max(1, num * total // den)
            if free_mem >= need and free_c >= compute:
                mask |= bit
        hit = self._gpu[state] = (mask, free_mem / total)
        return hit

    def terminal(self, share: float) -> float:
        """The free capacity (in GPUs, weighted like a fragmentation) that a GPU with
        ``share`` free is expected to keep for good, see :func:`_hole_left`. A fully free
        GPU keeps none where the mix asks for whole GPUs (they take it)."""
        hit = self._terminal.get(share)
        if hit is None:
            left = _hole_left(share, self._share_needs, self._hole_memo)
            if share == 1.0:
                left *= 1.0 - self._whole_chance
            hit = self._terminal[share] = self._terminal_weight * left
        return hit

    def weight(self, mask: int) -> float:
        """Total weight of the tasks in ``mask``."""
        hit = self._sum.get(mask)
        if hit is None:
            hit = 0.0
            i = 0
            rest = mask
            while rest:
                if rest & 1:
                    hit += self.weights[i]
                rest >>= 1
                i += 1
            self._sum[mask] = hit
        return hit

    def pod_fits(self, cpu: int | None, memory: int | None) -> int:
        """Tasks whose pod fits in this much free CPU and memory (None: not accounted)."""
        mask = -1
        if cpu is not None:
            mask = self._cpu_masks[bisect_right(self._cpu_needs, cpu)]
        if memory is not None:
            mask &= self._mem_masks[bisect_right(self._mem_needs, memory)]
        return mask

    def node(self, states: Sequence[GpuState], cpu: int | None, memory: int | None) -> float:
        """Expected unusable free GPU capacity of a node with these GPUs and free CPU/memory."""
        gpu = self.gpu
        return self.node_of([gpu(s) for s in states], cpu, memory)

    def node_of(
        self, items: Sequence[tuple[int, float]], cpu: int | None, memory: int | None
    ) -> float:
        """:meth:`node` from the GPUs' :meth:`gpu` entries (callers reuse them across moves)."""
        return self._node(items, self.fits(items, cpu, memory))

    def fits(self, items: Sequence[tuple[int, float]], cpu: int | None, memory: int | None) -> int:
        """Tasks that fit on the node at all: pod, GPU count and per-GPU share."""
        on_gpus = 0
        full = 0
        share_bits = self.share_bits
        for mask, share in items:
            on_gpus |= mask
            if share == 1.0 and mask & ~share_bits:
                full += 1
        return (on_gpus & share_bits | self.whole_by_free[min(full, MAX_WHOLE_GPUS)]) & (
            self.pod_fits(cpu, memory)
        )

    def growth(
        self,
        items: Sequence[tuple[int, float]],
        before: float,
        fits_before: int,
        moved: Sequence[tuple[int, tuple[int, float]]],
        cpu: int | None,
        memory: int | None,
    ) -> float:
        """Fragmentation after replacing ``items[i]`` by each ``(i, item)`` of ``moved`` (and
        leaving ``cpu``/``memory`` free), minus ``before``.

        When the tasks that fit on the node stay the same, only the moved GPUs' terms change,
        so those are all that is recomputed: the common case costs two look-ups per GPU moved.
        """
        after = list(items)
        for i, item in moved:
            after[i] = item
        fits = self.fits(after, cpu, memory)
        if fits != fits_before:
            return self._node(after, fits) - before
        weight = self.weight
        total = self.total_weight
        change = 0.0
        for i, (mask, share) in moved:
            old_mask, old_share = items[i]
            change += total * (share - old_share) + (
                old_share * weight(old_mask & fits) - share * weight(mask & fits)
            )
        if self._terminal_weight:
            terminal = self.terminal
            for i, (_, share) in moved:
                change += terminal(share) - terminal(items[i][1])
        return change

    def _node(self, items: Sequence[tuple[int, float]], fits: int) -> float:
        free = 0.0
        usable = 0.0
        weight = self.weight
        for mask, share in items:
            if share:
                free += share
                usable += share * weight(mask & fits)
        if self._terminal_weight:
            known, terminal = self._terminal.get, self.terminal
            for _, share in items:
                hit = known(share)
                usable -= terminal(share) if hit is None else hit
        return self.total_weight * free - usable

    def stranded(self, free: float, cpu: int | None, memory: int | None) -> float:
        """Free GPUs (``free``, in GPUs) beyond what the node's free CPU and memory can serve
        at the mix's average CPU and memory per GPU, weighted like a fragmentation: capacity
        that the mix's pods, arriving one after another, would leave without CPU."""
        room = free
        if cpu is not None and self._cpu_per_gpu is not None:
            room = min(room, cpu / self._cpu_per_gpu)
        if memory is not None and self._mem_per_gpu is not None:
            room = min(room, memory / self._mem_per_gpu)
        # (A hair under: float sums of free shares are not exact.)
        if room < free - 1e-9:
            return STRANDED_WEIGHT * self.total_weight * (free - room)
        return 0.0

    def gpu_only(self, state: GpuState) -> float:
        """A GPU's own fragmentation, ignoring its node (orders GPUs before nodes are scored)."""
        mask, share = self.gpu(state)
        own = share * (self.total_weight - self.weight(mask))
        return own + self.terminal(share) if self._terminal_weight else own


#: Weight of :meth:`CompiledMix.stranded` next to the fragmentation. On benchmarks/packing.py
#: (seed 42, at 130%, base / sharing / multigpu, before the wider search): 0.5 gave 97.53 /
#: 85.94 / 98.53, 1.0 97.57 / 86.16 / 98.54, 2.0 97.61 / 86.08 / 98.56: flat, so the plain sum.
STRANDED_WEIGHT = 1.0


#: Weight of :meth:`CompiledMix.terminal` next to the fragmentation (x the mix's weight, as the
#: fragmentation is). So large that for a share the hole it leaves decides and the paper's
#: fragmentation and the stranded-CPU term break ties: the paper's measure counts a hole as
#: lost to every task it cannot take *now*, mostly whole-GPU tasks, so it fills any hole
#: rather than open a GPU (a 0.32 share into a GPU holding 0.47, leaving 0.21 that only
#: rare tasks fit) where waiting for a second 0.47 there, and opening a GPU for the 0.32
#: that a 0.65 later joins, leaves 0.06 and 0.03. Off where the mix asks for few whole GPUs
#: (below 10% of its weight; full from 30%): there opening a GPU is no worse than filling a
#: hole, and the sharing variant packs worse with it (TERMINAL_WEIGHT 1: 86.67 against 87.54).
#: Measured on benchmarks/packing.py (% allocated at 130%, multigpu, seeds 42 / 7 / 2026):
#: without 98.53 / 98.45 / 98.54; FILL_SHARE 0.1 and weight 1, 50, 100: 98.55, 98.71,
#: 98.71 (seed 42); FILL_SHARE 0.07 / 0.075 / 0.08 with weight 300: 98.79 / 98.81 / 98.83,
#: 98.80 / 98.86 / 98.81, 98.80 / 98.87 / 98.78; 0.05 and 0.2 (weight 100): 98.64, 98.55;
#: 0.07 with 1000: 98.80 / 98.81 / 98.83, and 98.83 / 98.87 / 98.85 with holes rounded to
#: 1e-4 (not 1e-6; to 1e-3: 98.78 / 98.82 / 98.83), which is chosen: these figures move by
#: a few hundredths with any detail. Averaging over the sizes that fit instead of taking
#: the best: 98.58-98.60. Counting every hole as lost where no share task fits the node's
#: CPU any more: 98.78 / 98.77 / 98.82. Checked on seeds 11 and 123, which nothing was tuned
#: on: 98.98 / 98.86 against FGD's 98.52 / 98.40 (+0.46 both).
TERMINAL_WEIGHT = 1000.0
FILL_SHARE = 0.07


def _hole_left(share: float, needs: Sequence[tuple[float, float]], memo: dict) -> float:
    """Expected part of a GPU's ``share`` free that stays free for good: the best of leaving
    it, or of each share size ``need`` that fits, which comes with its ``chance`` (``needs``,
    smallest first) and leaves ``share - need`` to be filled the same way.

    A 0.19 hole next to a 0.81 share waits for a 0.16 that comes rarely; a 0.53 one next to
    a 0.47 is soon joined by another 0.47 and keeps 0.06. ``memo`` keeps what was computed
    (per compiled mix), by the hole rounded to a tenth of a milli-GPU."""
    share = round(share, 4)  # a tenth of a milli-GPU: at most 10,001 holes per mix
    hit = memo.get(share)
    if hit is not None:
        return hit
    best = share
    for need, chance in needs:
        if need > share + 1e-9:
            break
        left = _hole_left(share - need, needs, memo)
        best = min(best, (1.0 - chance) * share + chance * left)
    memo[share] = best
    return best


def _prefix_masks(needs: list[int]) -> tuple[list[int], list[int]]:
    """Sorted needs and, for ``bisect_right(needs, free)``, the mask of tasks needing <= free."""
    order = sorted(range(len(needs)), key=lambda i: needs[i])
    sorted_needs = [needs[i] for i in order]
    masks = [0]
    for i in order:
        masks.append(masks[-1] | (1 << i))
    return sorted_needs, masks

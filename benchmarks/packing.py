"""Packing benchmark: how much of a production-shaped GPU cluster each policy allocates.

Ours against the FGD paper's policy, best-fit and first-fit, replayed the paper's way
("Beware of Fragmentation", Weng et al., USENIX ATC'23). About 2 minutes on one core.

Run: ``python benchmarks/packing.py --json``. The last line printed is one JSON object:
``{"variants": {variant: {policy: {...}}}, "reserve_p99_ms", "refuse_p99_ms", "nodes", "gpus",
"seed", ...}``. Per variant and policy: ``alloc_at_100`` .. ``alloc_at_130`` (% of the cluster's
GPU capacity allocated when 100/110/120/130% of it has been asked for), ``failed_gpu_pods``,
``failed_cpu_mem_bound`` (failed GPU pods for which some node of an allowed model had the GPU
room, so CPU or memory was what lacked), ``stranded_gpu_pct`` (% of GPU capacity idle at the end
on nodes whose CPU or memory no GPU task type of the workload fits in) and ``audit_problems``
(must be 0). ``reserve_p99_ms``/``refuse_p99_ms``: ours' successful and refused ``reserve`` calls.

The cluster (generated from ``--seed``, nothing downloaded). Node shapes and their proportions
follow Alibaba's ``openb_node_list_gpu_node.csv`` (cluster-trace-gpu-v2023, the paper's trace:
1,213 GPU nodes, 6,212 GPUs; counts here read off the file, rounded): 1,233 nodes, 6,177 GPUs.
What matters is CPU and memory per GPU differ by model: G2 has 12 cores per GPU, P100 8, T4 52,
so CPU-hungry pods run G2 and P100 nodes out of CPU while GPUs are still free. G1-G3 are
undisclosed models; their GPU memory sizes here are guesses (ours only derives a share's memory
from them). ``--nodes`` scales the cluster keeping the shapes' proportions.

The workload. Task types (CPU milli, memory MiB, GPUs, milli-GPU per GPU) are shapes that occur
often in ``openb_pod_list_default.csv`` (8,152 pods), weighted roughly as they occur in rows read
from it: about 13% CPU-only pods, 37% GPU-sharing pods (23 types, 15 share sizes from 50 to
810 milli-GPU), 48% one-GPU pods, 2% 2/4/8-GPU pods. The variants follow the trace's derived
files: ``base`` (default), ``sharing`` (gpushare100: every GPU pod shares a GPU, same CPU-only
share), ``multigpu`` (multigpu50: multi-GPU pods carry half of the GPU demand), ``constrained``
(gpuspec33: a third of GPU pods may only use some GPU models, e.g. ``V100M16|V100M32``; a
constraint set is drawn in proportion to its GPUs, among sets with a node that can hold the pod).

The replay (the paper's "workload tuning" to 1.3): pods are drawn i.i.d. from the variant's task
types and arrive, never leaving, until 130% of the cluster's GPU capacity has been asked for. A
pod that fits nowhere fails and is skipped; arrivals go on. Every policy replays the same pods.

The policies, over one node model (free CPU, free memory, free milli-GPU per GPU):

- ``ours``: the real :class:`gpu_fraction.allocator.Allocator` (default settings: binpack, its
  learnt task mix) through its public API: GPUs and :class:`NodeCapacity` (CPU, memory) per
  node, ``reserve`` + ``commit`` per GPU pod, :class:`AllocationRefused` a refusal. A pod that
  may use several models sends them all in one request (``gpu_types``; none set: any model) and
  the allocator chooses among them. ``--type-loop`` instead names one type per request and
  tries them in the allocator's ``gpu_types()`` order, first success wins (the fallback for a
  caller that must name one type; kept to measure what choosing costs). CPU-only pods go
  through ``reserve_pod`` (the allocator picks the node where they strand least GPU capacity);
  ``--cpu-only-best-fit`` instead places them with the best-fit rule below and hands each to
  ``adopt`` as an allocation without GPUs, so ours' own CPU/memory checks see the CPU they
  take (the way a pod the allocator did not place is accounted). ``--cpu-only-tainted`` keeps
  CPU-only pods off the GPU nodes altogether (a taint sends them to CPU nodes, not modelled), to
  measure what sharing GPU nodes' CPU with them costs. ``--cpu-only-scheduler`` leaves them to
  kube-scheduler's default scoring (:func:`scheduler_node`: it spreads them) and counts them
  with ``observe_pod``, as the hub counts pods it did not place.
- ``fgd``: the paper's method, written here from the paper and its simulator
  (hkust-adsl/kubernetes-scheduler-simulator, ``frag.go``, ``fgd_score.go``). A node's
  fragmentation for a task is the free GPU capacity the task cannot use: all of it when the
  task does not fit on the node at all (CPU, memory, GPU model, or too few GPUs with room), or
  is CPU-only; otherwise what is free on GPUs with less free than the task's per-GPU share. A
  node's fragmentation is its expectation over the target workload's typical tasks (the most
  popular types covering 95% of pods, CPU-only included, as the simulator's defaults). Each pod
  goes where that grows least (for a share, on the GPU of the node where it grows least); ties
  go to the lowest node index and, within a node, to the GPU with least free. Unlike the
  simulator, memory is checked (its openb runs ignore memory) and scores are not quantised.
- ``best_fit``: the simulator's BestFit: the node with the least ``0.5 * CPU + 0.5 * GPU`` left
  (each over the largest node's), the GPU with least free for a share.
- ``first_fit``: the first node (in the shuffled node order) that fits, its first GPU that fits.

Measured (2-core build machine, shared; % allocated at 100 / 110 / 120 / 130%, seed 42):

- base: ours 97.59 / 97.64 / 97.69 / 97.75, fgd 95.59 / 95.63 / 95.67 / 95.74, best_fit
  93.93 / 93.97 / 94.01 / 94.08, first_fit 95.22 / 95.26 / 95.30 / 95.37;
- sharing: ours 87.05 / 87.31 / 87.46 / 87.54, fgd 85.31 / 85.57 / 85.83 / 86.08, best_fit
  82.76 / 82.83 / 82.88 / 82.96, first_fit 84.88 / 84.95 / 85.01 / 85.10;
- multigpu: ours 98.65 / 98.77 / 98.81 / 98.83, fgd 98.19 / 98.24 / 98.28 / 98.30, best_fit
  96.54 / 96.59 / 96.63 / 96.65, first_fit 97.22 / 97.28 / 97.31 / 97.33;
- constrained: ours 95.87 / 98.00 / 98.06 / 98.12, fgd 94.78 / 95.03 / 95.09 / 95.14,
  best_fit 93.33 / 93.38 / 93.42 / 93.46, first_fit 94.98 / 95.02 / 95.08 / 95.13.

At 130% with seeds 7 and 2026: base 98.05 / 98.11 (fgd 95.32 / 95.48), sharing 88.19 / 88.44
(85.68 / 86.23), multigpu 98.87 / 98.85 (98.29 / 98.34), constrained 97.92 / 98.04 (94.70 /
95.11). Ours is FGD + 0.5 or more at 130% on every variant and seed (multigpu +0.53 / +0.58 /
+0.51, by what a share's hole keeps free for good: see :mod:`gpu_fraction.node_fragmentation`),
and above every other policy at every checkpoint of the three seeds but one: constrained, seed
7, at 100%, 95.11 against first_fit's 95.18 (it was 95.18 before the hole term; 97.92 against
95.40 at 130%). On seeds 11 and 123, which nothing was tuned on: base 98.06 / 98.05 (fgd 95.35 /
95.91), sharing 87.32 / 87.17 (85.36 / 85.09), multigpu 98.98 / 98.86 (98.52 / 98.40: +0.46
both, just short of +0.5), constrained 98.20 / 98.07 (94.39 / 94.45), ahead of every other
policy at every checkpoint. On multigpu what is left free is nearly all next to shares, and ours
packs its share pods into as few GPUs as best-fit decreasing does offline
(``benchmarks/packing_waste.py``: 938 / 917 / 901 GPUs against 940 / 924 / 905; no packing of
them needs fewer than 901 / 886 / 867). ``--cpu-only-tainted`` (seed 42, at 130%, before the
hole term): base 97.58, sharing 88.12, multigpu 98.57, constrained 97.72;
``--cpu-only-scheduler`` (seed 42, at 130%, before the hole term): base 90.54, sharing 72.36,
multigpu 98.02, constrained 89.75: spread CPU-only pods leave GPUs without CPU (stranded 2.65% /
14.39% / 0.56% / 3.28% of the GPUs). Ours' reserve p99: 2.2-2.8 ms (refusals' 0.9-1.4 ms),
5.5-6.5 ms (1.9-4.6 ms) in runs while the machine was busier; before the hole term 1.6-3.3 ms
run alone, 8.8-10.3 ms with four runs at once (nodes where CPU binds are scored whole, and then
32 of them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_fraction.allocator import Allocator
from gpu_fraction.errors import AllocationRefused
from gpu_fraction.model import GPU, Allocation, NodeCapacity, Owner, SliceRequest

MILLI = 1000
CHECKPOINTS = (100, 110, 120, 130)
POLICIES = ("ours", "fgd", "best_fit", "first_fit")
VARIANTS = ("base", "sharing", "multigpu", "constrained")
#: The simulator's typical-pod popularity threshold (generate_config_and_run.py default).
TYPICAL_SHARE = 0.95
CONSTRAINED_SHARE = 1 / 3  # gpuspec33
MULTIGPU_DEMAND = 0.5  # multigpu50

# (model, GPUs, CPU milli, memory MiB, nodes): shapes of openb_node_list_gpu_node.csv.
NODE_SHAPES = (
    ("G2", 8, 96_000, 393_216, 540),
    ("T4", 2, 104_000, 524_288, 420),
    ("P100", 2, 16_000, 122_880, 105),
    ("G3", 8, 128_000, 786_432, 38),
    ("V100M16", 4, 32_000, 131_072, 28),
    ("P100", 2, 64_000, 262_144, 22),
    ("V100M32", 8, 96_000, 786_432, 20),
    ("V100M16", 1, 8_000, 32_768, 20),
    ("T4", 4, 96_000, 393_216, 16),
    ("V100M32", 4, 48_000, 376_832, 10),
    ("V100M16", 8, 64_000, 262_144, 7),
    ("P100", 1, 8_000, 61_440, 5),
    ("A10", 1, 128_000, 1_048_576, 2),
)
GPU_MEMORY_MIB = {
    "A10": 24_576,
    "G2": 32_768,
    "G3": 49_152,
    "P100": 16_384,
    "T4": 16_384,
    "V100M16": 16_384,
    "V100M32": 32_768,
}

# (CPU milli, memory MiB, GPUs, milli-GPU per GPU, weight): frequent openb_pod_list_default rows.
CPU_ONLY = (
    (8_000, 30_517, 0, 0, 5.0),
    (32_000, 49_152, 0, 0, 4.0),
    (12_500, 57_344, 0, 0, 1.5),
    (16_000, 31_250, 0, 0, 0.8),
    (20_000, 65_536, 0, 0, 0.5),
    (32_000, 65_536, 0, 0, 0.5),
    (8_000, 15_625, 0, 0, 0.4),
    (32_000, 62_500, 0, 0, 0.3),
)
SHARING = (
    (3_152, 5_600, 1, 810, 6.0),
    (8_000, 30_517, 1, 470, 6.0),
    (11_908, 47_104, 1, 470, 4.0),
    (11_908, 47_104, 1, 650, 3.0),
    (4_000, 15_258, 1, 220, 2.5),
    (6_000, 12_288, 1, 460, 2.5),
    (4_000, 15_258, 1, 320, 2.0),
    (4_000, 22_888, 1, 320, 2.0),
    (8_000, 30_517, 1, 320, 1.5),
    (4_000, 15_258, 1, 160, 1.0),
    (4_000, 15_258, 1, 110, 0.8),
    (8_000, 30_517, 1, 220, 0.8),
    (4_152, 10_600, 1, 550, 0.8),
    (8_000, 30_517, 1, 650, 0.6),
    (4_000, 22_888, 1, 480, 0.5),
    (6_000, 22_888, 1, 160, 0.5),
    (1_000, 2_048, 1, 320, 0.3),
    (4_000, 15_258, 1, 50, 0.3),
    (3_152, 5_600, 1, 590, 0.3),
    (8_000, 30_517, 1, 230, 0.3),
    (4_152, 10_600, 1, 270, 0.3),
    (4_000, 30_517, 1, 230, 0.3),
    (8_000, 30_517, 1, 440, 0.2),
)
ONE_GPU = (
    (3_152, 5_600, 1, MILLI, 12.0),
    (11_400, 48_128, 1, MILLI, 6.0),
    (12_000, 16_384, 1, MILLI, 4.0),
    (16_000, 32_768, 1, MILLI, 4.0),
    (18_708, 64_512, 1, MILLI, 4.0),
    (12_000, 24_576, 1, MILLI, 3.0),
    (16_000, 65_536, 1, MILLI, 2.0),
    (8_000, 16_384, 1, MILLI, 2.0),
    (9_810, 41_560, 1, MILLI, 2.0),
    (15_200, 80_896, 1, MILLI, 1.5),
    (4_000, 24_576, 1, MILLI, 1.5),
    (8_000, 32_768, 1, MILLI, 1.0),
    (16_000, 49_152, 1, MILLI, 1.0),
    (15_700, 58_368, 1, MILLI, 0.8),
    (8_200, 33_792, 1, MILLI, 0.8),
    (24_200, 93_184, 1, MILLI, 0.8),
    (11_908, 47_104, 1, MILLI, 0.8),
    (4_000, 31_250, 1, MILLI, 0.5),
)
MULTI_GPU = (
    (6_000, 65_536, 2, MILLI, 0.4),
    (16_000, 65_536, 2, MILLI, 0.3),
    (32_200, 132_096, 4, MILLI, 0.3),
    (32_000, 131_072, 4, MILLI, 0.2),
    (64_000, 262_144, 8, MILLI, 0.3),
    (88_000, 327_680, 8, MILLI, 0.2),
    (64_200, 263_168, 8, MILLI, 0.2),
)
#: GPU-model constraints in the style of the gpuspec traces' ``gpu_spec`` column.
SPECS = (
    ("G2",),
    ("G3",),
    ("T4",),
    ("P100",),
    ("V100M32",),
    ("V100M16", "V100M32"),
    ("G2", "G3"),
    ("P100", "T4"),
)

FULL_NODES = sum(shape[4] for shape in NODE_SHAPES)

TaskType = tuple[int, int, int, int, float]


# --- the cluster -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """Static node facts; index ``n`` is a node, in the (shuffled) order first-fit scans."""

    names: tuple[str, ...]
    models: tuple[str, ...]  # model id -> name
    model: np.ndarray  # [N] model id
    cpu: np.ndarray  # [N] CPU milli
    mem: np.ndarray  # [N] memory MiB
    gpus: np.ndarray  # [N] GPU count

    @property
    def capacity(self) -> int:
        """GPU capacity in milli-GPU."""
        return int(self.gpus.sum()) * MILLI

    @property
    def slots(self) -> int:
        return int(self.gpus.max())


def shape_counts(nodes: int) -> list[int]:
    """Nodes of each shape for a cluster of ``nodes`` (largest remainder, proportions kept)."""
    full = [shape[4] for shape in NODE_SHAPES]
    exact = [count * nodes / sum(full) for count in full]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: nodes - sum(counts)]:
        counts[i] += 1
    return counts


def build_cluster(nodes: int, seed: int) -> Cluster:
    rows = []
    for (model, gpus, cpu, mem, _), count in zip(NODE_SHAPES, shape_counts(nodes), strict=True):
        rows += [(model, gpus, cpu, mem)] * count
    # Shuffled as the trace's node list is: first-fit's scan order is not grouped by model.
    order = np.random.default_rng([seed, 0xC1]).permutation(len(rows))
    rows = [rows[i] for i in order]
    models = tuple(sorted({row[0] for row in rows}))
    return Cluster(
        names=tuple(f"node-{n:04d}" for n in range(len(rows))),
        models=models,
        model=np.array([models.index(r[0]) for r in rows], dtype=np.int64),
        cpu=np.array([r[2] for r in rows], dtype=np.int64),
        mem=np.array([r[3] for r in rows], dtype=np.int64),
        gpus=np.array([r[1] for r in rows], dtype=np.int64),
    )


# --- the workload ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Task types (index ``c``) of one variant and the pods that arrive, as type indices."""

    variant: str
    cpu: np.ndarray  # [C]
    mem: np.ndarray  # [C]
    gpus: np.ndarray  # [C] GPUs (0: CPU-only)
    milli: np.ndarray  # [C] milli-GPU per GPU (1000: whole GPUs)
    allowed: np.ndarray  # [C, M] may run on model m
    specs: tuple[tuple[str, ...] | None, ...]  # [C] the constraint, None: any model
    p: np.ndarray  # [C] probability of a pod being of this type
    stream: np.ndarray  # [P] arriving pods
    checkpoints: dict[int, int]  # % of capacity asked for -> index of the pod that reached it

    @property
    def demand(self) -> np.ndarray:
        """Milli-GPU each task type asks for."""
        return self.gpus * self.milli


def variant_types(variant: str) -> list[TaskType]:
    """The variant's task types and weights (before GPU-model constraints)."""
    if variant == "sharing":
        # Keep the CPU-only share of pods; every GPU pod shares a GPU.
        gpu_weight = sum(t[4] for t in SHARING + ONE_GPU + MULTI_GPU)
        scale = gpu_weight / sum(t[4] for t in SHARING)
        return list(CPU_ONLY) + [(*t[:4], t[4] * scale) for t in SHARING]
    if variant == "multigpu":
        rest = sum(t[4] * t[2] * t[3] for t in SHARING + ONE_GPU)
        multi = sum(t[4] * t[2] * t[3] for t in MULTI_GPU)
        scale = rest * MULTIGPU_DEMAND / (1 - MULTIGPU_DEMAND) / multi
        return list(CPU_ONLY + SHARING + ONE_GPU) + [(*t[:4], t[4] * scale) for t in MULTI_GPU]
    return list(CPU_ONLY + SHARING + ONE_GPU + MULTI_GPU)


def spec_options(task: TaskType) -> list[tuple[tuple[str, ...], float]]:
    """Constraint sets a task may carry, weighted by their GPUs; only sets with a node shape
    that can hold the task (so no pod is constrained to what can never run it)."""
    cpu, mem, gpus = task[0], task[1], task[2]
    options = []
    for spec in SPECS:
        shapes = [s for s in NODE_SHAPES if s[0] in spec]
        if any(s[1] >= gpus and s[2] >= cpu and s[3] >= mem for s in shapes):
            options.append((spec, float(sum(s[1] * s[4] for s in shapes))))
    return options


def constrain(types: list[TaskType]) -> list[tuple[TaskType, tuple[str, ...] | None]]:
    """Split each GPU task type: a third of its weight over constraint sets."""
    out: list[tuple[TaskType, tuple[str, ...] | None]] = []
    for task in types:
        options = spec_options(task) if task[2] else []
        if not options:
            out.append((task, None))
            continue
        out.append(((*task[:4], task[4] * (1 - CONSTRAINED_SHARE)), None))
        total = sum(w for _, w in options)
        for spec, w in options:
            out.append(((*task[:4], task[4] * CONSTRAINED_SHARE * w / total), spec))
    return out


def draw_stream(
    p: np.ndarray, demand: np.ndarray, capacity: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[int, int]]:
    """Pods until 130% of ``capacity`` has been asked for, and where each checkpoint fell."""
    target = capacity * CHECKPOINTS[-1] // 100
    batch = int(target / float(p @ demand) * 1.2) + 64
    stream = rng.choice(len(p), size=batch, p=p)
    while demand[stream].sum() < target:
        stream = np.concatenate([stream, rng.choice(len(p), size=batch, p=p)])
    asked = np.cumsum(demand[stream])
    stream = stream[: int(np.searchsorted(asked, target)) + 1]
    checkpoints = {pct: int(np.searchsorted(asked, capacity * pct // 100)) for pct in CHECKPOINTS}
    return stream, checkpoints


def build_workload(variant: str, cluster: Cluster, seed: int) -> Workload:
    types = variant_types(variant)
    tagged = constrain(types) if variant == "constrained" else [(t, None) for t in types]
    allowed = np.array(
        [[spec is None or m in spec for m in cluster.models] for _, spec in tagged], dtype=bool
    )
    weights = np.array([t[4] for t, _ in tagged])
    p = weights / weights.sum()
    gpus = np.array([t[2] for t, _ in tagged], dtype=np.int64)
    milli = np.array([t[3] for t, _ in tagged], dtype=np.int64)
    rng = np.random.default_rng([seed, VARIANTS.index(variant)])
    stream, checkpoints = draw_stream(p, gpus * milli, cluster.capacity, rng)
    return Workload(
        variant=variant,
        cpu=np.array([t[0] for t, _ in tagged], dtype=np.int64),
        mem=np.array([t[1] for t, _ in tagged], dtype=np.int64),
        gpus=gpus,
        milli=milli,
        allowed=allowed,
        specs=tuple(spec for _, spec in tagged),
        p=p,
        stream=stream,
        checkpoints=checkpoints,
    )


# --- the node model ----------------------------------------------------------------------------


class NodeState:
    """Free CPU, memory and milli-GPU per GPU of every node (absent GPU slots have 0 free)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.cpu = cluster.cpu.copy()
        self.mem = cluster.mem.copy()
        slots = np.arange(cluster.slots)[None, :]
        self.gpu = np.where(slots < cluster.gpus[:, None], MILLI, 0).astype(np.int64)
        self.gpu_total = self.gpu.sum(axis=1)

    def basic_fit(self, wl: Workload, c: int) -> np.ndarray:
        """Nodes with the model, CPU and memory for task type ``c`` (GPU room not checked)."""
        return wl.allowed[c][self.cluster.model] & (self.cpu >= wl.cpu[c]) & (self.mem >= wl.mem[c])

    def gpu_room(self, wl: Workload, c: int) -> np.ndarray:
        """Nodes of an allowed model with enough GPUs that have room for task type ``c``."""
        room = (self.gpu >= wl.milli[c]).sum(axis=1) >= wl.gpus[c]
        return room & wl.allowed[c][self.cluster.model]

    def fits(self, wl: Workload, c: int) -> np.ndarray:
        ok = self.basic_fit(wl, c)
        if wl.gpus[c]:
            ok &= (self.gpu >= wl.milli[c]).sum(axis=1) >= wl.gpus[c]
        return ok

    def whole(self, n: int, k: int) -> tuple[int, ...]:
        """The first ``k`` fully free GPUs of node ``n``."""
        return tuple(int(g) for g in np.flatnonzero(self.gpu[n] == MILLI)[:k])

    def take(self, wl: Workload, c: int, n: int, gpus: tuple[int, ...]) -> None:
        self.cpu[n] -= wl.cpu[c]
        self.mem[n] -= wl.mem[c]
        for g in gpus:
            self.gpu[n, g] -= wl.milli[c]
        self.gpu_total[n] -= wl.milli[c] * len(gpus)


Placement = tuple[int, tuple[int, ...]]  # node, GPU indices on it


def pick_gpus(state: NodeState, wl: Workload, c: int, n: int, least_free: bool) -> tuple:
    """GPUs on node ``n`` for task type ``c``: whole ones first-free; a share on the GPU with
    least free that fits (``least_free``) or on the first that fits."""
    if not wl.gpus[c]:
        return ()
    if wl.milli[c] == MILLI:
        return state.whole(n, int(wl.gpus[c]))
    free = state.gpu[n]
    room = np.flatnonzero(free >= wl.milli[c])
    if least_free:
        return (int(room[np.argmin(free[room])]),)
    return (int(room[0]),)


def best_fit_node(state: NodeState, wl: Workload, c: int) -> int | None:
    """The simulator's BestFit score: least CPU and GPU left after placing, equally weighted."""
    ok = state.fits(wl, c)
    if not ok.any():
        return None
    cluster = state.cluster
    left_cpu = (state.cpu - wl.cpu[c]) / cluster.cpu.max()
    left_gpu = (state.gpu_total - wl.demand[c]) / (cluster.gpus.max() * MILLI)
    score = np.where(ok, 0.5 * left_cpu + 0.5 * left_gpu, np.inf)
    return int(np.argmin(score))


def scheduler_node(state: NodeState, wl: Workload, c: int) -> int | None:
    """kube-scheduler's default scoring for a pod without GPUs: NodeResourcesFit
    LeastAllocated (the mean share of CPU and memory left) plus NodeResourcesBalancedAllocation
    (1 minus the spread of the CPU and memory shares used), equally weighted; ties to the
    lowest node index (the scheduler draws among them)."""
    ok = state.basic_fit(wl, c)
    if not ok.any():
        return None
    cluster = state.cluster
    cpu_left = (state.cpu - wl.cpu[c]) / cluster.cpu
    mem_left = (state.mem - wl.mem[c]) / cluster.mem
    least_allocated = (cpu_left + mem_left) / 2
    balanced = 1 - np.abs(cpu_left - mem_left) / 2
    score = np.where(ok, least_allocated + balanced, -np.inf)
    return int(np.argmax(score))


# --- reference policies ------------------------------------------------------------------------


class FirstFit:
    def __init__(self, cluster: Cluster, wl: Workload) -> None:
        self.state = NodeState(cluster)
        self.wl = wl

    def place(self, c: int) -> Placement | None:
        ok = self.state.fits(self.wl, c)
        if not ok.any():
            return None
        n = int(np.argmax(ok))
        gpus = pick_gpus(self.state, self.wl, c, n, least_free=False)
        self.state.take(self.wl, c, n, gpus)
        return n, gpus


class BestFit:
    def __init__(self, cluster: Cluster, wl: Workload) -> None:
        self.state = NodeState(cluster)
        self.wl = wl

    def place(self, c: int) -> Placement | None:
        n = best_fit_node(self.state, self.wl, c)
        if n is None:
            return None
        gpus = pick_gpus(self.state, self.wl, c, n, least_free=True)
        self.state.take(self.wl, c, n, gpus)
        return n, gpus


@dataclass(frozen=True)
class TaskMix:
    """The target workload FGD measures against: typical task types and their popularity."""

    cpu: np.ndarray  # [K]
    mem: np.ndarray
    gpus: np.ndarray
    milli: np.ndarray
    allowed: np.ndarray  # [M, K]
    uses_gpu: np.ndarray  # [K]
    p: np.ndarray  # [K], sums to 1

    @classmethod
    def typical(cls, wl: Workload) -> TaskMix:
        """The most popular types covering 95% of pods, renormalised (GetTypicalPods)."""
        order = np.argsort(-wl.p, kind="stable")
        covered = np.cumsum(wl.p[order])
        keep = order[: int(np.searchsorted(covered, TYPICAL_SHARE)) + 1]
        return cls(
            cpu=wl.cpu[keep],
            mem=wl.mem[keep],
            gpus=wl.gpus[keep],
            milli=wl.milli[keep],
            allowed=wl.allowed[keep].T,
            uses_gpu=wl.gpus[keep] > 0,
            p=wl.p[keep] / wl.p[keep].sum(),
        )

    def fragmentation(
        self, cpu: np.ndarray, mem: np.ndarray, gpu: np.ndarray, model: int
    ) -> np.ndarray:
        """Expected free milli-GPU that a typical task cannot use, for S states of one node
        (``cpu``/``mem``: [S], ``gpu``: [S, G] free milli per GPU)."""
        enough = gpu[:, :, None] >= self.milli[None, None, :]  # [S, G, K]
        fits = (
            self.allowed[model][None, :]
            & (cpu[:, None] >= self.cpu)
            & (mem[:, None] >= self.mem)
            & (enough.sum(axis=1) >= self.gpus)
        )
        unusable = (gpu[:, :, None] * ~enough).sum(axis=1)  # free on GPUs too small: [S, K]
        total = gpu.sum(axis=1)[:, None]
        return np.where(fits & self.uses_gpu, unusable, total) @ self.p


class FGD:
    """Fragmentation gradient descent. ``delta[n, c]`` caches the least growth of node ``n``'s
    fragmentation if a pod of type ``c`` went there (inf: does not fit); a node's row changes
    only when a pod lands on it, so a pod costs one column scan and one row update."""

    def __init__(self, cluster: Cluster, wl: Workload) -> None:
        self.state = NodeState(cluster)
        self.wl = wl
        self.mix = TaskMix.typical(wl)
        self.share = np.flatnonzero((wl.gpus == 1) & (wl.milli < MILLI))
        self.whole = np.flatnonzero(wl.milli == MILLI)
        self.cpu_only = np.flatnonzero(wl.gpus == 0)
        self.delta = np.empty((len(cluster.names), len(wl.p)))
        for n in range(len(cluster.names)):
            self.delta[n] = self._row(n)

    def place(self, c: int) -> Placement | None:
        n = int(np.argmin(self.delta[:, c]))
        if not np.isfinite(self.delta[n, c]):
            return None
        gpus = self._gpus(n, c)
        self.state.take(self.wl, c, n, gpus)
        self.delta[n] = self._row(n)
        return n, gpus

    def _candidates(self, n: int, types: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every state node ``n`` could move to by taking one pod of one of ``types``: the pod's
        type, the GPU a share would go on (-1: none or whole GPUs), and the state."""
        st, wl = self.state, self.wl
        free = st.gpu[n]
        fit = types[self._basic(n, types)]
        share = np.intersect1d(fit, self.share)
        _, distinct = np.unique(free, return_index=True)  # equal GPUs give equal states
        room = free[distinct][None, :] >= wl.milli[share][:, None]
        si, gi = np.nonzero(room)
        share_types, share_gpus = share[si], distinct[gi]
        share_states = np.repeat(free[None, :], len(share_types), axis=0)
        share_states[np.arange(len(share_types)), share_gpus] -= wl.milli[share_types]

        whole = np.intersect1d(fit, self.whole)
        full = free == MILLI
        whole = whole[wl.gpus[whole] <= full.sum()]
        taken = full[None, :] & (np.cumsum(full)[None, :] <= wl.gpus[whole][:, None])
        whole_states = free[None, :] - MILLI * taken

        cpu_only = np.intersect1d(fit, self.cpu_only)
        types_out = np.concatenate([share_types, whole, cpu_only])
        gpus_out = np.concatenate([share_gpus, np.full(len(whole) + len(cpu_only), -1)])
        states = np.concatenate(
            [share_states, whole_states, np.repeat(free[None, :], len(cpu_only), axis=0)]
        )
        return types_out, gpus_out, states

    def _basic(self, n: int, types: np.ndarray) -> np.ndarray:
        st, wl = self.state, self.wl
        model = st.cluster.model[n]
        return (
            wl.allowed[types, model] & (wl.cpu[types] <= st.cpu[n]) & (wl.mem[types] <= st.mem[n])
        )

    def _growth(self, n: int, types: np.ndarray, states: np.ndarray) -> np.ndarray:
        st, wl = self.state, self.wl
        model = int(st.cluster.model[n])
        now = self.mix.fragmentation(st.cpu[n : n + 1], st.mem[n : n + 1], st.gpu[n : n + 1], model)
        after = self.mix.fragmentation(
            st.cpu[n] - wl.cpu[types], st.mem[n] - wl.mem[types], states, model
        )
        # Rounded so that float noise does not break ties between equal placements.
        return np.round(after - now[0], 6)

    def _row(self, n: int) -> np.ndarray:
        types, _, states = self._candidates(n, np.arange(len(self.wl.p)))
        row = np.full(len(self.wl.p), np.inf)
        if len(types):
            np.minimum.at(row, types, self._growth(n, types, states))
        return row

    def _gpus(self, n: int, c: int) -> tuple[int, ...]:
        if self.wl.milli[c] == MILLI:
            return self.state.whole(n, int(self.wl.gpus[c]))
        if not self.wl.gpus[c]:
            return ()
        types, gpus, states = self._candidates(n, np.array([c]))
        # Candidates come in ascending free order, so a tie goes to the GPU with least free.
        return (int(gpus[np.argmin(self._growth(n, types, states))]),)


# --- ours --------------------------------------------------------------------------------------


@dataclass
class Latencies:
    """Seconds per ``reserve`` call of ours, split by outcome."""

    reserved: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)


class Ours:
    """The real allocator, driven as the hub drives it; ``state`` mirrors what it placed."""

    OWNER = Owner("job", "bench")

    #: Name one type per request and loop over the allowed ones (see the module docstring).
    type_loop = False
    #: Place CPU-only pods by best fit and ``adopt`` them, instead of ``reserve_pod``.
    cpu_only_best_fit = False
    #: Keep CPU-only pods off the GPU nodes (a taint): they run on CPU nodes not modelled here.
    cpu_only_tainted = False
    #: Leave CPU-only pods to kube-scheduler's default scoring and count them with
    #: ``observe_pod``, as the hub counts pods it did not place (spawner/node_pods.py).
    cpu_only_scheduler = False

    def __init__(self, cluster: Cluster, wl: Workload, latencies: Latencies) -> None:
        self.cluster, self.wl, self.latencies = cluster, wl, latencies
        self.state = NodeState(cluster)
        self.node_index = {name: n for n, name in enumerate(cluster.names)}
        gpus, nodes = [], {}
        for n, name in enumerate(cluster.names):
            model = cluster.models[cluster.model[n]]
            nodes[name] = NodeCapacity(name, int(cluster.cpu[n]), int(cluster.mem[n]))
            gpus += [
                GPU(name, i, f"GPU-{n:04d}-{i}", model, GPU_MEMORY_MIB[model], model)
                for i in range(int(cluster.gpus[n]))
            ]
        self.allocator = Allocator(gpus, nodes)
        present = self.allocator.gpu_types()
        # The caller's guess: a pod that may use several models tries them in this order.
        self.order = [tuple(t for t in present if spec is None or t in spec) for spec in wl.specs]
        self.requests: dict[tuple[int, str | None], SliceRequest] = {}
        self.cpu_only_pods = 0

    def place(self, c: int) -> Placement | None:
        if not self.wl.gpus[c]:
            return self._place_cpu_only(c)
        clock = time.perf_counter
        for gpu_type in self.order[c] if self.type_loop else (None,):
            request = self._request(c, gpu_type)
            t0 = clock()
            try:
                allocation = self.allocator.reserve(request, self.OWNER)
            except AllocationRefused:
                self.latencies.refused.append(clock() - t0)
                continue
            self.latencies.reserved.append(clock() - t0)
            self.allocator.commit(allocation.id)
            placement = self.node_index[allocation.node], tuple(allocation.gpu_indices)
            self.state.take(self.wl, c, *placement)
            return placement
        return None

    def _request(self, c: int, gpu_type: str | None) -> SliceRequest:
        """One type, or (``gpu_type`` None) every model the pod may use: None for any."""
        key = (c, gpu_type)
        if key not in self.requests:
            wl = self.wl
            if wl.milli[c] == MILLI:
                fraction = Fraction(int(wl.gpus[c]))
            else:
                fraction = Fraction(int(wl.milli[c]), MILLI)
            spec = wl.specs[c]
            self.requests[key] = SliceRequest(
                gpu_type,
                fraction,
                cpu_millis=int(wl.cpu[c]),
                host_memory_mib=int(wl.mem[c]),
                gpu_types=frozenset(spec) if gpu_type is None and spec is not None else None,
            )
        return self.requests[key]

    def _place_cpu_only(self, c: int) -> Placement | None:
        """Placed by the allocator (``reserve_pod``), or by the best-fit rule and then accounted
        in the allocator (``adopt`` checks the node's CPU and memory against what it holds),
        or (tainted GPU nodes) not on this cluster at all."""
        if self.cpu_only_tainted:
            return None
        if self.cpu_only_scheduler:
            n = scheduler_node(self.state, self.wl, c)
            if n is None:
                return None
            self.cpu_only_pods += 1
            self.allocator.observe_pod(
                self.cluster.names[n],
                f"cpu-only-{self.cpu_only_pods}",
                int(self.wl.cpu[c]),
                int(self.wl.mem[c]),
            )
            self.state.take(self.wl, c, n, ())
            return n, ()
        if not self.cpu_only_best_fit:
            try:
                allocation = self.allocator.reserve_pod(
                    int(self.wl.cpu[c]), int(self.wl.mem[c]), self.OWNER
                )
            except AllocationRefused:
                return None
            self.allocator.commit(allocation.id)
            n = self.node_index[allocation.node]
            self.state.take(self.wl, c, n, ())
            return n, ()
        n = best_fit_node(self.state, self.wl, c)
        if n is None:
            return None
        self.cpu_only_pods += 1
        self.allocator.adopt(
            Allocation.cpu_only(
                f"cpu-only-{self.cpu_only_pods}",
                self.OWNER,
                self.cluster.names[n],
                int(self.wl.cpu[c]),
                int(self.wl.mem[c]),
            )
        )
        self.state.take(self.wl, c, n, ())
        return n, ()

    def self_check(self) -> list[str]:
        """The allocator's own audit, and its node accounting against the mirror."""
        problems = self.allocator.audit()
        usage = self.allocator.node_usage()
        for n, name in enumerate(self.cluster.names):
            used = usage.get(name, (0, 0))
            mirror = (
                int(self.cluster.cpu[n] - self.state.cpu[n]),
                int(self.cluster.mem[n] - self.state.mem[n]),
            )
            if tuple(used) != mirror:
                problems.append(f"{name}: allocator charges {used}, placements add to {mirror}")
        return problems


# --- replay and audit --------------------------------------------------------------------------


def audit(cluster: Cluster, wl: Workload, placements: Iterable[tuple[int, int, tuple]]) -> list:
    """Recompute every node's use from ``(type, node, GPUs)`` placements; list what is wrong:
    a node over its CPU or memory, a GPU over 1000 milli, a GPU that is not there, a model the
    pod may not use, the wrong number of GPUs, or more allocated than the cluster has."""
    cpu = np.zeros(len(cluster.names), dtype=np.int64)
    mem = np.zeros_like(cpu)
    gpu = np.zeros((len(cluster.names), cluster.slots), dtype=np.int64)
    problems = []
    for c, n, gpus in placements:
        cpu[n] += wl.cpu[c]
        mem[n] += wl.mem[c]
        if len(set(gpus)) != wl.gpus[c]:
            problems.append(f"{cluster.names[n]}: type {c} got GPUs {gpus}")
        if not wl.allowed[c, cluster.model[n]]:
            problems.append(f"{cluster.names[n]}: type {c} may not use this model")
        for g in gpus:
            if g >= cluster.gpus[n]:
                problems.append(f"{cluster.names[n]}: no GPU {g}")
            else:
                gpu[n, g] += wl.milli[c]
    for n in np.flatnonzero((cpu > cluster.cpu) | (mem > cluster.mem)):
        problems.append(f"{cluster.names[n]}: CPU or memory over capacity")
    for n, g in zip(*np.nonzero(gpu > MILLI), strict=True):
        problems.append(f"{cluster.names[n]}: GPU {g} over capacity ({gpu[n, g]} milli)")
    if gpu.sum() > cluster.capacity:
        problems.append("more GPU allocated than the cluster has")
    return problems


def stranded_pct(state: NodeState, wl: Workload) -> float:
    """Idle GPU capacity on nodes whose CPU or memory no GPU task type (of a model it may use)
    fits in any more, as % of the cluster's."""
    gpu_types = np.flatnonzero(wl.gpus > 0)
    room = (
        (state.cpu[:, None] >= wl.cpu[gpu_types])
        & (state.mem[:, None] >= wl.mem[gpu_types])
        & wl.allowed[gpu_types][:, state.cluster.model].T
    )
    stranded = state.gpu_total[~room.any(axis=1)].sum()
    return round(100 * float(stranded) / state.cluster.capacity, 2)


def replay(policy: FirstFit | BestFit | FGD | Ours, cluster: Cluster, wl: Workload) -> dict:
    """Offer every pod in arrival order; report allocation at each checkpoint."""
    at = {index: pct for pct, index in wl.checkpoints.items()}
    demand = wl.demand
    allocated = failed = bound = 0
    placements: list[tuple[int, int, tuple]] = []
    result: dict = {}
    for i, c in enumerate(wl.stream.tolist()):
        where = policy.place(c)
        if where is not None:
            placements.append((c, *where))
            allocated += int(demand[c])
        elif wl.gpus[c]:
            failed += 1
            bound += bool(policy.state.gpu_room(wl, c).any())
        if i in at:
            result[f"alloc_at_{at[i]}"] = round(100 * allocated / cluster.capacity, 2)
    problems = audit(cluster, wl, placements)
    if isinstance(policy, Ours):
        problems += policy.self_check()
    for problem in problems[:5]:
        print(f"{wl.variant}/{type(policy).__name__}: {problem}", file=sys.stderr)
    result.update(
        failed_gpu_pods=failed,
        failed_cpu_mem_bound=bound,
        stranded_gpu_pct=stranded_pct(policy.state, wl),
        audit_problems=len(problems),
    )
    return result


def p99_ms(samples: list[float]) -> float | None:
    """99th percentile by nearest rank, in milliseconds."""
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[math.ceil(0.99 * len(ordered)) - 1] * 1000, 4)


def run(
    seed: int, variants: Iterable[str], nodes: int, log: Callable[..., None] = lambda *a: None
) -> dict:
    """Every policy on every variant, on one cluster; the JSON object ``main`` prints."""
    cluster = build_cluster(nodes, seed)
    latencies = Latencies()
    out: dict = {"variants": {}, "pods": {}}
    start = time.perf_counter()
    for variant in variants:
        wl = build_workload(variant, cluster, seed)
        out["pods"][variant] = len(wl.stream)
        results = {}
        for name in POLICIES:
            t0 = time.perf_counter()
            if name == "ours":
                policy = Ours(cluster, wl, latencies)
            else:
                policy = {"fgd": FGD, "best_fit": BestFit, "first_fit": FirstFit}[name](cluster, wl)
            results[name] = replay(policy, cluster, wl)
            log(f"{variant:12s} {name:10s} {time.perf_counter() - t0:6.1f}s {results[name]}")
        out["variants"][variant] = results
    out.update(
        reserve_p99_ms=p99_ms(latencies.reserved),
        refuse_p99_ms=p99_ms(latencies.refused),
        reserve_calls=len(latencies.reserved),
        refuse_calls=len(latencies.refused),
        nodes=len(cluster.names),
        gpus=cluster.capacity // MILLI,
        seed=seed,
        elapsed_s=round(time.perf_counter() - start, 1),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--nodes", type=int, default=FULL_NODES, help="cluster size")
    parser.add_argument(
        "--type-loop", action="store_true", help="ours: one type per request, tried in order"
    )
    parser.add_argument(
        "--cpu-only-best-fit",
        action="store_true",
        help="ours: place CPU-only pods by best fit and adopt them (not reserve_pod)",
    )
    parser.add_argument(
        "--cpu-only-tainted",
        action="store_true",
        help="ours: CPU-only pods kept off the GPU nodes by a taint (run elsewhere)",
    )
    parser.add_argument(
        "--cpu-only-scheduler",
        action="store_true",
        help="ours: CPU-only pods placed by kube-scheduler's default scoring and counted "
        "with observe_pod (the hub's default)",
    )
    args = parser.parse_args(argv)
    Ours.cpu_only_tainted = args.cpu_only_tainted
    Ours.cpu_only_scheduler = args.cpu_only_scheduler
    Ours.type_loop = args.type_loop
    Ours.cpu_only_best_fit = args.cpu_only_best_fit
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or args.nodes < 1:
        parser.error(f"variants are {', '.join(VARIANTS)}; --nodes must be >= 1")
    log = (lambda *a: None) if args.json else print
    result = run(args.seed, variants, args.nodes, log)
    print(json.dumps(result))
    audited = (p["audit_problems"] for v in result["variants"].values() for p in v.values())
    return 1 if any(audited) else 0


if __name__ == "__main__":
    sys.exit(main())

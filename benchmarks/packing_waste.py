"""Where the packing benchmark's unallocated GPU capacity lies at the end, and a bound on it.

Run: ``python benchmarks/packing_waste.py --variant multigpu --seed 42 --json`` (``--policies``,
``--nodes`` as in ``benchmarks/packing.py``, whose cluster, workload and policies it replays).
Per policy, at the end of the replay (130% asked), the free capacity (% of the cluster's GPU
capacity) split into

- ``stranded``: on nodes whose free CPU or memory fits no GPU task type of the workload;
- ``sliver``: elsewhere, on GPUs with less free than the smallest share of the workload;
- ``no_pod_fits``: elsewhere, on GPUs whose free part no task type whose pod fits the node's
  free CPU and memory can use;
- ``usable``: the rest (some task type could use it, none of that type came after).

And ``whole_free`` (GPUs fully free), ``share_gpus`` (GPUs holding shares) with the capacity
they keep free, and two offline packings of the *same* share pods into GPUs of 1000
milli-GPU, CPU and memory left out: ``bfd_gpus`` (best-fit decreasing, a packing that exists)
and ``l2_gpus`` (Martello and Toth's L2 lower bound: no packing uses fewer). Where the free
capacity is all next to shares, ``share_gpus - bfd_gpus`` is what a better packing of the same
pods could have handed to whole-GPU pods (there are always refused ones at 130%).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import packing as P  # the benchmark next to this file

MILLI = P.MILLI


def best_fit_decreasing(items: list[int]) -> int:
    """GPUs that best-fit decreasing packs ``items`` (milli-GPU each) into."""
    free: list[int] = []
    for size in sorted(items, reverse=True):
        fitting = [i for i, f in enumerate(free) if f >= size]
        if fitting:
            i = min(fitting, key=free.__getitem__)
            free[i] -= size
        else:
            free.append(MILLI - size)
    return len(free)


def l2_bound(items: list[int]) -> int:
    """Martello and Toth's L2: a lower bound on the GPUs any packing of ``items`` needs."""
    best = -(-sum(items) // MILLI)
    for k in {0, *(s for s in items if s <= MILLI // 2)}:
        big = [s for s in items if s > MILLI - k]
        mid = [s for s in items if MILLI // 2 < s <= MILLI - k]
        small = sum(s for s in items if k <= s <= MILLI // 2)
        room = len(mid) * MILLI - sum(mid)
        best = max(best, len(big) + len(mid) + max(0, -(-(small - room) // MILLI)))
    return best


def classify(state: P.NodeState, wl: P.Workload) -> dict:
    """The free capacity at the end, split as the module docstring says (% of capacity)."""
    cluster = state.cluster
    gpu_types = np.flatnonzero(wl.gpus > 0)
    share_types = gpu_types[wl.milli[gpu_types] < MILLI]
    smallest = int(wl.milli[share_types].min()) if len(share_types) else MILLI
    room = (
        (state.cpu[:, None] >= wl.cpu[gpu_types])
        & (state.mem[:, None] >= wl.mem[gpu_types])
        & wl.allowed[gpu_types][:, cluster.model].T
    )
    parts = dict.fromkeys(("stranded", "sliver", "no_pod_fits", "usable"), 0)
    for n in range(len(cluster.names)):
        free = state.gpu[n, : cluster.gpus[n]]
        if not room[n].any():
            parts["stranded"] += int(free.sum())
            continue
        fit = gpu_types[room[n]]
        whole = int((free == MILLI).sum())
        for f in free[free > 0].tolist():
            usable = (wl.milli[fit] <= f) & ((wl.milli[fit] < MILLI) | (wl.gpus[fit] <= whole))
            if f < smallest:
                parts["sliver"] += f
            elif not usable.any():
                parts["no_pod_fits"] += f
            else:
                parts["usable"] += f
    out = {k: round(100 * v / cluster.capacity, 2) for k, v in parts.items()}
    out["whole_free"] = int((state.gpu == MILLI).sum())
    return out


def run(variant: str, seed: int, nodes: int, policies: list[str]) -> dict:
    cluster = P.build_cluster(nodes, seed)
    wl = P.build_workload(variant, cluster, seed)
    out: dict = {"variant": variant, "seed": seed, "nodes": len(cluster.names), "policies": {}}
    for name in policies:
        if name == "ours":
            policy = P.Ours(cluster, wl, P.Latencies())
        else:
            policy = {"fgd": P.FGD, "best_fit": P.BestFit, "first_fit": P.FirstFit}[name](
                cluster, wl
            )
        allocated = 0
        shares: dict[tuple[int, int], int] = {}
        items: list[int] = []
        for c in wl.stream.tolist():
            where = policy.place(c)
            if where is None:
                continue
            allocated += int(wl.demand[c])
            if wl.gpus[c] == 1 and wl.milli[c] < MILLI:
                key = (where[0], where[1][0])
                shares[key] = shares.get(key, 0) + int(wl.milli[c])
                items.append(int(wl.milli[c]))
        result = classify(policy.state, wl)
        result.update(
            allocated=round(100 * allocated / cluster.capacity, 2),
            share_gpus=len(shares),
            share_gpus_free=round(sum(MILLI - v for v in shares.values()) / MILLI, 1),
            bfd_gpus=best_fit_decreasing(items),
            l2_gpus=l2_bound(items),
        )
        out["policies"][name] = result
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result line")
    parser.add_argument("--variant", default="multigpu", choices=P.VARIANTS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--nodes", type=int, default=P.FULL_NODES)
    parser.add_argument("--policies", default="ours,fgd", help="comma-separated")
    args = parser.parse_args(argv)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if set(policies) - set(P.POLICIES) or args.nodes < 1:
        parser.error(f"policies are {', '.join(P.POLICIES)}; --nodes must be >= 1")
    result = run(args.variant, args.seed, args.nodes, policies)
    if not args.json:
        for name, row in result["policies"].items():
            print(f"{name:10s} {row}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The packing benchmark runs end to end at a small scale, reports every key, and its figures
are sound: nothing over capacity, allocation never falls as pods arrive, same seed same run."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from . import last_json

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "packing.py"
NODES = 60


def load_packing():
    spec = importlib.util.spec_from_file_location("packing_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


packing = load_packing()


@pytest.fixture(scope="module")
def result():
    return last_json("packing.py", "--json", "--nodes", str(NODES), "--seed", "42")


def test_json_has_every_key(result):
    assert {"variants", "reserve_p99_ms", "refuse_p99_ms", "nodes", "gpus", "seed"} <= set(result)
    assert result["nodes"] == NODES and result["seed"] == 42 and result["gpus"] > NODES
    assert set(result["variants"]) == {"base", "sharing", "multigpu", "constrained"}
    for policies in result["variants"].values():
        assert set(policies) == {"ours", "fgd", "best_fit", "first_fit"}
        for figures in policies.values():
            assert {f"alloc_at_{pct}" for pct in (100, 110, 120, 130)} <= set(figures)
    assert result["reserve_p99_ms"] > 0 and result["refuse_p99_ms"] > 0


def test_no_policy_goes_over_capacity(result):
    for policies in result["variants"].values():
        for figures in policies.values():
            assert figures["audit_problems"] == 0
            assert all(0 < figures[f"alloc_at_{pct}"] <= 100 for pct in (100, 110, 120, 130))


def test_allocation_never_falls_as_pods_arrive(result):
    for policies in result["variants"].values():
        for figures in policies.values():
            series = [figures[f"alloc_at_{pct}"] for pct in (100, 110, 120, 130)]
            assert series == sorted(series)


def test_ours_packs_no_worse_than_best_fit(result):
    # Issue 10's floor. Before node fragmentation FGD beat ours on the base mix at this scale
    # on 20 of 20 seeds (by 3.2 points or more); at seed 42 ours now leads FGD on base (95.66
    # vs 93.79). Ours over FGD is not asserted here: at 60 nodes a few nodes decide the figure
    # (multigpu: 97.55 vs 98.25); the full-size comparison is in the README.
    for policies in result["variants"].values():
        assert policies["ours"]["alloc_at_130"] >= policies["best_fit"]["alloc_at_130"]


def test_audit_finds_overcommitted_gpus_and_nodes():
    cluster = packing.build_cluster(NODES, 1)
    wl = packing.build_workload("base", cluster, 1)
    share = int(np.flatnonzero((wl.gpus == 1) & (wl.milli == 810))[0])
    n = int(np.argmax(cluster.gpus))
    assert packing.audit(cluster, wl, [(share, n, (0,))]) == []
    assert packing.audit(cluster, wl, [(share, n, (0,)), (share, n, (0,))])  # 1620 milli
    assert packing.audit(cluster, wl, [(share, n, (int(cluster.gpus[n]),))])  # no such GPU
    big_cpu = int(np.argmax(wl.cpu))
    too_many = [(big_cpu, n, tuple(range(int(wl.gpus[big_cpu]))))] * 20
    assert any("CPU or memory" in p for p in packing.audit(cluster, wl, too_many))


def test_workload_is_deterministic_for_a_seed():
    first = packing.build_cluster(NODES, 7)
    again = packing.build_cluster(NODES, 7)
    assert first.names == again.names and np.array_equal(first.model, again.model)
    for variant in packing.VARIANTS:
        a = packing.build_workload(variant, first, 7)
        b = packing.build_workload(variant, again, 7)
        assert np.array_equal(a.stream, b.stream) and a.checkpoints == b.checkpoints
    other = packing.build_workload("base", packing.build_cluster(NODES, 8), 8)
    assert not np.array_equal(packing.build_workload("base", first, 7).stream, other.stream)


def test_workload_has_the_trace_kinds_of_pod():
    cluster = packing.build_cluster(packing.FULL_NODES, 42)
    assert len(cluster.names) >= 1000 and 5500 <= cluster.capacity // 1000 <= 6500
    base = packing.build_workload("base", cluster, 42)
    shares = set(base.milli[(base.gpus == 1) & (base.milli < 1000)].tolist())
    assert len(shares) >= 10 and not shares <= {125, 250, 500}
    assert {0, 1, 2, 4, 8} <= set(base.gpus.tolist())
    constrained = packing.build_workload("constrained", cluster, 42)
    assert any(spec is not None for spec in constrained.specs)
    sharing = packing.build_workload("sharing", cluster, 42)
    assert set(sharing.milli[sharing.gpus > 0].tolist()) <= shares
    # 130% of the capacity is asked for, and not more than one pod beyond it.
    asked = base.demand[base.stream].sum()
    assert asked >= 1.3 * cluster.capacity > asked - base.demand[base.stream[-1]]

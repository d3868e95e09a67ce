"""The waste breakdown of the packing benchmark runs at a small scale and its parts add up."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "packing_waste.py"
sys.path.insert(0, str(SCRIPT.parent))

import packing_waste  # noqa: E402 (the script's folder is not a package)

from . import last_json  # noqa: E402


def test_offline_packings_bound_each_other():
    items = [810, 810, 160, 470, 470, 320, 650, 220, 110]
    assert packing_waste.l2_bound(items) <= packing_waste.best_fit_decreasing(items)
    assert packing_waste.best_fit_decreasing([500, 500, 500]) == 2
    assert packing_waste.l2_bound([810, 810, 810]) == 3


def test_breakdown_adds_up_to_what_is_not_allocated():
    args = ("--json", "--nodes", "60", "--policies", "ours,fgd")
    result = last_json("packing_waste.py", *args)
    for row in result["policies"].values():
        parts = row["stranded"] + row["sliver"] + row["no_pod_fits"] + row["usable"]
        assert abs(parts + row["allocated"] - 100) < 0.05
        assert row["l2_gpus"] <= row["bfd_gpus"]

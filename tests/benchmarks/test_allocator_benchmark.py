"""The allocator benchmark runs end to end at a small scale and reports every key."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_prints_one_json_object_last():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "allocator.py"),
            "--json",
            "--nodes",
            "20",
            "--live",
            "150",
            "--pairs",
            "300",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert {
        "gpus",
        "live_slices",
        "ops_per_s",
        "reserve_p50_ms",
        "reserve_p99_ms",
        "rebuild_s",
        "packing_ratio",
        "oversubscribed",
    } <= set(result)
    assert result["gpus"] == 160 and result["live_slices"] == 150
    assert result["oversubscribed"] == 0
    assert result["packing_ratio"] >= 1.0

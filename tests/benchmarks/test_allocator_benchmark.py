"""The allocator benchmark runs end to end at a small scale and reports every key."""

from . import last_json


def test_benchmark_prints_one_json_object_last():
    args = ("--json", "--nodes", "20", "--live", "150", "--pairs", "300")
    result = last_json("allocator.py", *args, timeout=120)
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

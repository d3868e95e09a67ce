"""Tests of the benchmarks under benchmarks/: each runs end to end at a small scale."""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def last_json(script: str, *args: str, timeout: float = 300) -> dict:
    """Run ``benchmarks/<script>`` with ``args`` and read the JSON object it prints last."""
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])

"""The chart's node agent with one fake RTX 3090 behind pynvml (the test nodes have no GPU).

``python -m tests.helm.fake_gpu_agent <the DaemonSet's agent arguments>`` installs the agent
tests' fake NVML (``tests/gpu_fraction/agent/conftest.py``) with one GPU whose UUID is derived
from ``$NODE_NAME``, then runs ``ai-console agent`` unchanged: its own ServiceAccount token,
``--owners=pods`` and ``--publish=node`` as the chart runs it.
"""

from __future__ import annotations

import os
import sys

import pytest

from gpu_fraction.agent.main import main
from tests.gpu_fraction.agent.conftest import FakeGpu, FakeNvml

#: What the fake GPU reports, so that a test can find the figures on the admin page.
USED_MIB, UTILIZATION = 1234, 37


def gpu_uuid(node: str) -> str:
    return f"GPU-{node}-0000-3f2a-0000-000000000000"


def run(argv: list[str]) -> int:
    node = os.environ["NODE_NAME"]
    gpu = FakeGpu(gpu_uuid(node), "NVIDIA GeForce RTX 3090", 24576, USED_MIB, UTILIZATION)
    FakeNvml([gpu]).install(pytest.MonkeyPatch())
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

"""Real-GPU test setup: every test here is skipped, with the reason, where NVML cannot start."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pynvml
import pytest

TIMEOUT = 300


@functools.lru_cache(maxsize=1)
def nvml_problem() -> str | None:
    """Why NVML cannot be used here, or None when it can and sees at least one GPU."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return f"needs an NVIDIA GPU and driver: NVML cannot initialise ({err})"
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return "needs an NVIDIA GPU: NVML reports none"
    except pynvml.NVMLError as err:
        return f"needs an NVIDIA GPU: NVML cannot count GPUs ({err})"
    finally:
        pynvml.nvmlShutdown()
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(autouse=True)
def _needs_gpu() -> None:
    reason = nvml_problem()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def nvml() -> Iterator[object]:
    """pynvml, initialised for the test (NVML counts init/shutdown pairs)."""
    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def run_python(
    code: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this interpreter and ``env`` merged over the current environment."""
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=timeout
    )


def last_json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@functools.lru_cache(maxsize=1)
def torch_cuda_problem() -> str | None:
    """Why this interpreter's torch cannot use CUDA (checked in a child, to keep this one clean)."""
    code = "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"
    try:
        result = run_python(code, timeout=120)
    except subprocess.TimeoutExpired:
        return "importing torch timed out"
    if result.returncode != 0:
        return f"needs torch: {result.stderr.strip().splitlines()[-1:]}"
    if not result.stdout.strip().endswith("True"):
        return f"needs a CUDA build of torch that sees the GPU; got {result.stdout.strip()}"
    return None


@pytest.fixture
def cuda_torch() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Skips unless torch with CUDA works here; gives the subprocess runner."""
    reason = torch_cuda_problem()
    if reason is not None:
        pytest.skip(reason)
    return run_python

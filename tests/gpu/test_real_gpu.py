"""What only real hardware can prove: NVML inventory, per-process memory, and the caps holding.

Run with ``bash tests/gpu/run_on_device.sh`` on a machine with an NVIDIA GPU (and a CUDA build
of torch for the memory tests). Skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from gpu_fraction import enforcement
from gpu_fraction.inventory import from_nvml
from gpu_fraction.model import GPU, Allocation, Owner, check_gpu_type

from .conftest import last_json

MIB = 1 << 20


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def first_gpu() -> GPU:
    inventory = from_nvml()
    assert not inventory.empty, inventory.error
    return inventory.gpus[0]


def allocation_on(gpu: GPU, memory_mib: int) -> Allocation:
    """A fractional slice of ``gpu`` with ``memory_mib`` of its memory."""
    share = Fraction(memory_mib, gpu.memory_mib).limit_denominator(1000)
    return Allocation(
        id="gpu-test",
        owner=Owner(kind="job", user="gpu-test"),
        node=gpu.node,
        gpu_type=gpu.gpu_type,
        gpu_uuids=(gpu.uuid,),
        gpu_indices=(gpu.index,),
        fraction=share,
        memory_mib=memory_mib,
        gpu_memory_mib=gpu.memory_mib,
        compute_min=5,
        compute_max=100,
        product=gpu.product,
    )


def slice_environment(allocation: Allocation, **kwargs: object) -> dict[str, str]:
    """The enforcement environment for a local process, merged with this one's PYTHONPATH."""
    env = enforcement.container_environment(allocation, in_container=False, **kwargs)  # type: ignore[arg-type]
    if "PYTHONPATH" in env:
        env["PYTHONPATH"] = enforcement.merge_pythonpath(
            env["PYTHONPATH"], os.environ.get("PYTHONPATH")
        )
    return env


def test_nvml_inventory_has_real_uuids_and_memory(nvml) -> None:
    inventory = from_nvml()
    assert inventory.error is None
    assert inventory.source == "nvml"
    assert not inventory.simulated
    assert len(inventory.gpus) == nvml.nvmlDeviceGetCount()
    for gpu in inventory.gpus:
        handle = nvml.nvmlDeviceGetHandleByIndex(gpu.index)
        assert gpu.uuid == _text(nvml.nvmlDeviceGetUUID(handle))
        assert gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.memory_mib == nvml.nvmlDeviceGetMemoryInfo(handle).total // MIB
        assert gpu.memory_mib >= 1024
        assert gpu.product == _text(nvml.nvmlDeviceGetName(handle))
        check_gpu_type(gpu.gpu_type)
        print(f"GPU {gpu.index}: {gpu.product} -> type {gpu.gpu_type}, {gpu.memory_mib} MiB")


HOLD_MEMORY = """
import sys, torch
x = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print("READY", flush=True)
sys.stdin.readline()
"""


def _processes(nvml, handle) -> list[tuple[int, int]]:
    try:
        found = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except nvml.NVMLError:
        return []
    return [(p.pid, p.usedGpuMemory or 0) for p in found]


@contextlib.contextmanager
def holding_512_mib(gpu: GPU) -> Iterator[subprocess.Popen[str]]:
    """A child process holding 512 MiB on ``gpu`` until the block ends."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpu.uuid)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_MEMORY],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    try:
        line = child.stdout.readline()
        assert line.strip() == "READY", f"child did not start: {line}{child.stderr.read()}"
        yield child
    finally:
        try:
            child.stdin.write("\n")
            child.stdin.close()
            child.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()


def test_per_process_memory_is_visible(nvml, cuda_torch) -> None:
    gpu = first_gpu()
    handle = nvml.nvmlDeviceGetHandleByUUID(gpu.uuid)
    before = {pid for pid, _ in _processes(nvml, handle)}
    seen: list[tuple[int, int]] = []
    with holding_512_mib(gpu) as child:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = _processes(nvml, handle)
            if any(pid == child.pid and used >= 512 * MIB for pid, used in seen):
                return
            new = [(pid, used) for pid, used in seen if pid not in before]
            # In a container without the host PID namespace NVML reports host PIDs, so the
            # child's own PID never matches; one new process holding the memory still proves it.
            if len(new) == 1 and new[0][1] >= 512 * MIB:
                print(f"child pid {child.pid} is pid {new[0][0]} to NVML (PID namespace)")
                return
            time.sleep(0.5)
    pytest.fail(
        f"child pid {child.pid} holding 512 MiB not seen with >= 512 MiB in "
        f"nvmlDeviceGetComputeRunningProcesses on {gpu.uuid}: before {sorted(before)}, "
        f"during {seen}"
    )


CAPPED_ALLOCATE = """
import json, os, torch
out = {"initialised_after_import": torch.cuda.is_initialized()}
fraction = float(os.environ["AI_CONSOLE_GPU_MEMORY_FRACTION"])
total = torch.cuda.get_device_properties(0).total_memory
limit = int(total * fraction)
small = torch.empty(limit // 2, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
out["small_ok"] = True
del small
torch.cuda.empty_cache()
try:
    big = torch.empty(limit + limit // 2, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    out["big_ok"] = True
except torch.cuda.OutOfMemoryError as err:
    out["big_ok"] = False
    out["error"] = str(err)[:400]
out["limit_mib"] = limit // 2**20
print(json.dumps(out))
"""


def test_pytorch_backstop_caps_memory(cuda_torch) -> None:
    gpu = first_gpu()
    allocation = allocation_on(gpu, math.floor(gpu.memory_mib * 0.05))
    env = slice_environment(allocation, startup_path=enforcement.startup_hook_dir())
    assert env["AI_CONSOLE_GPU_MEMORY_FRACTION"].startswith("0.0")
    out = last_json(cuda_torch(CAPPED_ALLOCATE, env))
    assert out["initialised_after_import"] is False  # the hook did not start CUDA at import
    assert out["small_ok"] is True
    assert out["big_ok"] is False, f"allocating 1.5x the {out['limit_mib']} MiB cap worked"
    # Without the hook the same allocation succeeds, so it is the cap that stopped it.
    uncapped = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    plain = last_json(cuda_torch(CAPPED_ALLOCATE, uncapped))
    assert plain["big_ok"] is True


MPS_CLIENT = """
import json, torch
out = {}
a = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
out["small_ok"] = True
del a
torch.cuda.empty_cache()
try:
    b = torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    out["big_ok"] = True
except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
    out["big_ok"] = False
    out["error"] = str(err)[:400]
free, total = torch.cuda.mem_get_info()
out["mem_get_info_mib"] = [free // 2**20, total // 2**20]
out["total_memory_mib"] = torch.cuda.get_device_properties(0).total_memory // 2**20
print(json.dumps(out))
"""


@pytest.fixture
def mps_daemon() -> Iterator[tuple[Path, dict[str, str]]]:
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        pytest.skip("nvidia-cuda-mps-control is not on PATH: CUDA MPS is not installed here")
    # A short path: the pipe directory holds UNIX sockets (path length limit 108).
    root = Path(tempfile.mkdtemp(prefix="mps-"))
    pipe, log = root / "pipe", root / "log"
    pipe.mkdir()
    log.mkdir()
    env = dict(os.environ, CUDA_MPS_PIPE_DIRECTORY=str(pipe), CUDA_MPS_LOG_DIRECTORY=str(log))
    started = subprocess.run([control, "-d"], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, f"MPS daemon did not start: {started.stderr}"
    try:
        yield log, {"CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(log)}
    finally:
        subprocess.run([control], input="quit\n", env=env, text=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_mps_memory_limit_stops_client_at_its_slice(cuda_torch, mps_daemon) -> None:
    log, mps_env = mps_daemon
    gpu = first_gpu()
    settings = enforcement.MpsSettings(
        pipe_directory=mps_env["CUDA_MPS_PIPE_DIRECTORY"], host_shm_directory=None
    )
    env = slice_environment(allocation_on(gpu, 1024), mps=settings)
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=1024M"
    env["CUDA_MPS_LOG_DIRECTORY"] = mps_env["CUDA_MPS_LOG_DIRECTORY"]
    result = cuda_torch(MPS_CLIENT, env)
    control_log = (log / "control.log").read_text() if (log / "control.log").exists() else ""
    assert result.returncode == 0, f"{result.stderr}\ncontrol.log:\n{control_log}"
    out = json.loads(result.stdout.strip().splitlines()[-1])
    print("MPS client:", out)
    assert out["small_ok"] is True
    assert out["big_ok"] is False, (
        "2 GiB fit under a 1024M MPS limit: the client may not have connected to the daemon\n"
        f"control.log:\n{control_log}"
    )

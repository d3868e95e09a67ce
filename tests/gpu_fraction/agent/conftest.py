"""A fake NVML: an in-memory model of GPUs and processes behind the pynvml functions.

The fake raises ``pynvml.NVMLError(code)`` exactly as the real bindings do, so the agent's error
handling is exercised with the real exception classes (``NVMLError(12)`` becomes
``NVMLError_LibraryNotFound``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest

MIB = 1024 * 1024


@dataclass
class FakeProcess:
    pid: int
    used_mib: int | None  # None: NVML cannot tell (usedGpuMemory is None)


@dataclass
class FakeGpu:
    uuid: str
    name: str
    total_mib: int
    used_mib: int
    utilization: int
    compute: list[FakeProcess] = field(default_factory=list)
    graphics: list[FakeProcess] = field(default_factory=list)
    #: pynvml function name -> NVML error code that call raises for this GPU.
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeNvml:
    gpus: list[FakeGpu]
    #: When set, nvmlInit raises NVMLError(init_error).
    init_error: int | None = None
    count_error: int | None = None
    init_calls: int = 0
    shutdown_calls: int = 0

    def gpu(self, handle: object) -> FakeGpu:
        assert isinstance(handle, FakeHandle), "the sampler passed something that is not a handle"
        return self.gpus[handle.index]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def init() -> None:
            self.init_calls += 1
            if self.init_error is not None:
                raise pynvml.NVMLError(self.init_error)

        def shutdown() -> None:
            self.shutdown_calls += 1

        def count() -> int:
            if self.count_error is not None:
                raise pynvml.NVMLError(self.count_error)
            return len(self.gpus)

        def by_index(index: int) -> FakeHandle:
            if not 0 <= index < len(self.gpus):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            self._maybe_fail(self.gpus[index], "nvmlDeviceGetHandleByIndex")
            return FakeHandle(index)

        def device_call(name: str, fn: Callable[[FakeGpu], object]) -> Callable[[object], object]:
            def call(handle: object) -> object:
                gpu = self.gpu(handle)
                self._maybe_fail(gpu, name)
                return fn(gpu)

            return call

        def processes(items: list[FakeProcess]) -> list[SimpleNamespace]:
            return [
                SimpleNamespace(
                    pid=p.pid,
                    usedGpuMemory=None if p.used_mib is None else p.used_mib * MIB,
                    gpuInstanceId=0xFFFFFFFF,
                    computeInstanceId=0xFFFFFFFF,
                )
                for p in items
            ]

        def memory(gpu: FakeGpu) -> SimpleNamespace:
            return SimpleNamespace(
                total=gpu.total_mib * MIB,
                used=gpu.used_mib * MIB,
                free=(gpu.total_mib - gpu.used_mib) * MIB,
            )

        patches: dict[str, Callable[..., object]] = {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": count,
            "nvmlDeviceGetHandleByIndex": by_index,
            "nvmlDeviceGetUUID": device_call("nvmlDeviceGetUUID", lambda g: g.uuid),
            "nvmlDeviceGetName": device_call("nvmlDeviceGetName", lambda g: g.name),
            "nvmlDeviceGetMemoryInfo": device_call("nvmlDeviceGetMemoryInfo", memory),
            "nvmlDeviceGetUtilizationRates": device_call(
                "nvmlDeviceGetUtilizationRates",
                lambda g: SimpleNamespace(gpu=g.utilization, memory=0),
            ),
            "nvmlDeviceGetComputeRunningProcesses": device_call(
                "nvmlDeviceGetComputeRunningProcesses", lambda g: processes(g.compute)
            ),
            "nvmlDeviceGetGraphicsRunningProcesses": device_call(
                "nvmlDeviceGetGraphicsRunningProcesses", lambda g: processes(g.graphics)
            ),
            # No MPS daemon on these fake GPUs: the driver answers "not supported".
            "nvmlDeviceGetMPSComputeRunningProcesses": device_call(
                "nvmlDeviceGetMPSComputeRunningProcesses",
                lambda g: _raise(pynvml.NVML_ERROR_NOT_SUPPORTED),
            ),
        }
        for name, fn in patches.items():
            monkeypatch.setattr(pynvml, name, fn)

    @staticmethod
    def _maybe_fail(gpu: FakeGpu, name: str) -> None:
        code = gpu.errors.get(name)
        if code is not None:
            raise pynvml.NVMLError(code)


@dataclass(frozen=True)
class FakeHandle:
    index: int


def _raise(code: int) -> object:
    raise pynvml.NVMLError(code)


UUID0 = "GPU-00000000-1111-2222-3333-444444444444"
UUID1 = "GPU-55555555-6666-7777-8888-999999999999"


def two_gpus() -> list[FakeGpu]:
    """Two RTX 3090s: GPU 0 shared by two notebook processes, GPU 1 with one job process."""
    return [
        FakeGpu(
            uuid=UUID0,
            name="NVIDIA GeForce RTX 3090",
            total_mib=24576,
            used_mib=9000,
            utilization=37,
            compute=[FakeProcess(1001, 6000), FakeProcess(1002, 3000)],
        ),
        FakeGpu(
            uuid=UUID1,
            name="NVIDIA GeForce RTX 3090",
            total_mib=24576,
            used_mib=1200,
            utilization=5,
            compute=[FakeProcess(2001, 1024)],
            graphics=[FakeProcess(2002, None)],
        ),
    ]


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """NVML with two GPUs and three processes; tests edit ``fake_nvml.gpus`` freely."""
    fake = FakeNvml(gpus=two_gpus())
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    """A machine without the NVIDIA driver: nvmlInit raises NVMLError_LibraryNotFound."""
    fake = FakeNvml(gpus=[], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    fake.install(monkeypatch)
    return fake


class FakeProc:
    """A fake ``/proc`` tree: ``add(pid, cgroup=..., environ={...})`` writes the two files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(
        self, pid: int, *, cgroup: str | None = None, environ: dict[str, str] | None = None
    ) -> Path:
        folder = self.root / str(pid)
        folder.mkdir(parents=True, exist_ok=True)
        if cgroup is not None:
            (folder / "cgroup").write_text(cgroup)
        if environ is not None:
            # As the kernel writes it: NAME=value entries, each ended by NUL.
            data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in environ.items())
            (folder / "environ").write_bytes(data)
        return folder


@pytest.fixture
def fake_proc(tmp_path: Path) -> FakeProc:
    root = tmp_path / "proc"
    root.mkdir()
    return FakeProc(root)

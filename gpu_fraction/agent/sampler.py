"""Sample every GPU on this node with NVML: memory, utilisation and the processes using it.

An NVML error on one call for one device yields a partial sample (the missing value is ``None``)
and one logged warning, never an exception: a GPU that stops answering one query must not blind
the agent to the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pynvml

logger = logging.getLogger(__name__)

MIB = 1024 * 1024

T = TypeVar("T")

#: Error codes that mean "this query does not exist here" (old driver, consumer GPU, no MPS):
#: expected and permanent, so they are not worth a warning.
_QUIET_ERRORS = frozenset({pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND})

#: Process lists NVML keeps per device; a process can appear in several (compute and graphics
#: contexts, or as an MPS client), so they are merged by PID.
_PROCESS_QUERIES: tuple[tuple[str, str], ...] = (
    ("compute", "nvmlDeviceGetComputeRunningProcesses"),
    ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
    ("mps", "nvmlDeviceGetMPSComputeRunningProcesses"),
)


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process holding memory on one GPU."""

    pid: int
    used_memory_mib: int
    #: Which NVML lists reported it, e.g. ``("compute",)`` or ``("compute", "graphics")``.
    types: tuple[str, ...] = ("compute",)


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one instant. A field NVML could not read is ``None`` (or ``""`` for text)."""

    index: int
    uuid: str = ""
    product: str = ""
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_percent: int | None = None
    processes: tuple[ProcessSample, ...] = ()
    #: One line per failed NVML call, for diagnostics.
    errors: tuple[str, ...] = ()

    def as_published(self) -> dict[str, Any] | None:
        """The entry for the node's GPU list, or ``None`` when identity, product or size is
        unknown (the inventory refuses an entry without them)."""
        if not self.uuid or not self.product or not self.memory_total_mib:
            return None
        return {
            "index": self.index,
            "uuid": self.uuid,
            "product": self.product,
            "memory_mib": self.memory_total_mib,
        }


@dataclass(frozen=True, slots=True)
class NodeSample:
    """All GPUs of the node. ``ok`` is False when the GPUs could not even be counted."""

    gpus: tuple[GpuSample, ...] = ()
    ok: bool = True
    error: str = ""


def published_gpus(sample: NodeSample) -> list[dict[str, Any]]:
    """The node's GPU list as published in :data:`gpu_fraction.keys.ANN_NODE_GPUS`."""
    entries = (gpu.as_published() for gpu in sample.gpus)
    return [entry for entry in entries if entry is not None]


def nvml_unavailable_reason() -> str | None:
    """Whether NVML is usable at all: ``None`` when it is, else why not (for one clear log line).

    Leaves NVML as it found it (initialised and shut down again), so anyone may ask.
    """
    reason = _init_nvml()
    if reason is None:
        _shutdown_nvml()
    return reason


def _init_nvml() -> str | None:
    # A machine with no NVIDIA driver raises NVMLError_LibraryNotFound (or DriverNotLoaded);
    # a broken install may raise OSError from the loader.
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return str(err) or type(err).__name__
    except OSError as err:
        return f"cannot load the NVML library: {err}"
    return None


def _shutdown_nvml() -> None:
    try:
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as err:
        logger.debug("nvmlShutdown failed: %s", err)


class Sampler:
    """Reads the node's GPUs through ``pynvml``. Call :meth:`start` first, :meth:`close` last.

    pynvml functions are looked up on the module at every call, so tests can replace them.
    """

    def __init__(self) -> None:
        self._started = False
        # (device index, call, error text) already warned about: a GPU that cannot answer one
        # query will fail it on every tick, and one warning says all there is to say.
        self._warned: set[tuple[int, str, str]] = set()

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> str | None:
        """Initialise NVML; ``None`` on success, else the reason it is unusable."""
        if self._started:
            return None
        reason = _init_nvml()
        self._started = reason is None
        return reason

    def close(self) -> None:
        """Release NVML (it counts initialisations, so each start needs one shutdown)."""
        if not self._started:
            return
        self._started = False
        _shutdown_nvml()

    def sample(self) -> NodeSample:
        """Sample every GPU; never raises for NVML errors."""
        if not self._started:
            return NodeSample(ok=False, error="NVML is not initialised")
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError as err:
            logger.warning("cannot count GPUs (NVML: %s); reporting none this tick", err)
            return NodeSample(ok=False, error=str(err))
        return NodeSample(gpus=tuple(self._sample_device(index) for index in range(count)))

    def _sample_device(self, index: int) -> GpuSample:
        errors: list[str] = []

        def call(name: str, fn: Callable[[], T]) -> T | None:
            try:
                return fn()
            except pynvml.NVMLError as err:
                self._report(index, name, err, errors)
                return None

        handle = call(
            "nvmlDeviceGetHandleByIndex", lambda: pynvml.nvmlDeviceGetHandleByIndex(index)
        )
        if handle is None:
            return GpuSample(index=index, errors=tuple(errors))

        uuid = call("nvmlDeviceGetUUID", lambda: pynvml.nvmlDeviceGetUUID(handle))
        name = call("nvmlDeviceGetName", lambda: pynvml.nvmlDeviceGetName(handle))
        memory = call("nvmlDeviceGetMemoryInfo", lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
        rates = call(
            "nvmlDeviceGetUtilizationRates", lambda: pynvml.nvmlDeviceGetUtilizationRates(handle)
        )
        processes = self._processes(index, handle, errors)
        return GpuSample(
            index=index,
            uuid=_text(uuid),
            product=_text(name),
            memory_total_mib=int(memory.total) // MIB if memory is not None else None,
            memory_used_mib=int(memory.used) // MIB if memory is not None else None,
            utilization_percent=int(rates.gpu) if rates is not None else None,
            processes=processes,
            errors=tuple(errors),
        )

    def _processes(
        self, index: int, handle: object, errors: list[str]
    ) -> tuple[ProcessSample, ...]:
        used: dict[int, int] = {}
        types: dict[int, list[str]] = {}
        for kind, func_name in _PROCESS_QUERIES:
            func = getattr(pynvml, func_name, None)
            if func is None:  # an older pynvml without this query
                continue
            try:
                infos = func(handle)
            except pynvml.NVMLError as err:
                self._report(index, func_name, err, errors)
                continue
            for info in infos:
                pid = int(info.pid)
                # usedGpuMemory is None where the driver cannot tell (Windows WDDM, some MIG
                # setups); count it as 0 rather than drop the process from the picture.
                mib = int(info.usedGpuMemory) // MIB if info.usedGpuMemory is not None else 0
                # The same context listed twice is the same memory: keep the largest figure.
                used[pid] = max(used.get(pid, 0), mib)
                types.setdefault(pid, [])
                if kind not in types[pid]:
                    types[pid].append(kind)
        return tuple(
            ProcessSample(pid=pid, used_memory_mib=used[pid], types=tuple(types[pid]))
            for pid in sorted(used)
        )

    def _report(self, index: int, call: str, err: pynvml.NVMLError, errors: list[str]) -> None:
        text = str(err) or type(err).__name__
        if getattr(err, "value", None) in _QUIET_ERRORS:
            logger.debug("GPU %d: %s is not available here (NVML: %s)", index, call, text)
            return
        errors.append(f"{call}: {text}")
        key = (index, call, text)
        if key in self._warned:
            logger.debug("GPU %d: %s failed (NVML: %s)", index, call, text)
            return
        self._warned.add(key)
        logger.warning("GPU %d: %s failed (NVML: %s); its sample is partial", index, call, text)


def _text(value: object) -> str:
    """NVML strings arrive as ``str`` from current pynvml and as ``bytes`` from older ones."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


__all__ = [
    "GpuSample",
    "NodeSample",
    "ProcessSample",
    "Sampler",
    "nvml_unavailable_reason",
    "published_gpus",
]

"""The user's GPU slice, as the Lab's status bar shows it: ``GET <base_url>/ai-console/slice``.

What the slice *is* (GPU type, share, memory cap, simulated) comes from the environment the
spawner gave this server (``gpu_fraction.enforcement.container_environment``, the same values as
the pod's ``ai-console/...`` annotations). What it *uses* (GPU memory and SM utilisation of this
server's own processes: its kernels and terminals) comes from NVML on the visible devices, when
NVML works and can tell which processes are ours. Otherwise a reading is ``null`` (unknown),
never a guess: inside a container NVML reports host PIDs, which a server in its own PID
namespace cannot match to its processes; there the node agent's readings, which the hub
passes on with the idle verdict, fill them in (``readings_from`` says whose they are). A
simulated slice has no device, so its readings are
``null`` and ``simulated`` is true. A server without a slice (CPU only) answers
``{"gpu": null, "idle": null}``.

Whether the hub finds the slice idle, and when it will stop the server for it, is ``idle``
(:mod:`server_extension.idle_status`): ``{"idle_minutes": n | null, "stops_in_minutes": m |
null}``, or ``null`` when unknown; the hub failing never fails this answer.

The NVML reading is one function, :func:`read_usage` (visible device ids and our PIDs in,
per-device readings or ``None`` out), so tests replace it without a GPU.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from gpu_fraction import keys
from gpu_fraction.enforcement import ENV_CUDA_VISIBLE_DEVICES, ENV_NVIDIA_VISIBLE_DEVICES

from .handlers import AiConsoleHandler
from .idle_status import IdleStatus, idle_of, readings_of

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
#: NVML's per-process utilisation samples newer than this are averaged (the Lab polls every 5 s).
UTILIZATION_WINDOW_S = 10
_UUID_PREFIXES = ("GPU-", "MIG-")


@dataclass(frozen=True)
class SliceInfo:
    """What the spawner says the slice is."""

    gpu_type: str
    #: ``"1/4"`` of one GPU, or a whole number of GPUs (``"2"``).
    share: str
    #: Memory the slice may use on each of its GPUs (None: not given).
    memory_cap_mib: int | None
    simulated: bool
    #: The devices this server sees, as NVML can find them (UUIDs, else indices).
    devices: tuple[str, ...]
    compute_min_percent: int | None = None
    compute_max_percent: int | None = None

    @property
    def gpu_count(self) -> int:
        try:
            share = Fraction(self.share)
        except (ValueError, ZeroDivisionError):
            return max(1, len(self.devices))
        return int(share) if share >= 1 else 1


@dataclass(frozen=True)
class DeviceUsage:
    """One visible GPU as NVML reads it; ``None`` where it could not tell."""

    id: str
    uuid: str | None = None
    name: str | None = None
    memory_total_mib: int | None = None
    #: GPU memory held by this server's processes.
    memory_used_mib: int | None = None
    #: SM utilisation of this server's processes (percent of the GPU).
    utilization_percent: int | None = None


def _int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


def slice_from_environment(env: Mapping[str, str]) -> SliceInfo | None:
    """The slice the spawner described in ``env``; None when there is none (CPU only)."""
    gpu_type = env.get(keys.ENV_GPU_TYPE, "").strip()
    if not gpu_type:
        return None
    simulated = env.get(keys.ENV_GPU_SIMULATED, "").strip().lower() == "true"
    # Fractional slices have a cap; whole GPUs may use all of each GPU's memory.
    cap = _int(env.get(keys.ENV_GPU_MEMORY_MIB)) or _int(env.get(keys.ENV_GPU_DEVICE_MEMORY_MIB))
    return SliceInfo(
        gpu_type=gpu_type,
        share=env.get(keys.ENV_GPU_SHARE, "").strip() or "1",
        memory_cap_mib=cap,
        simulated=simulated,
        devices=() if simulated else visible_devices(env),
        compute_min_percent=_int(env.get(keys.ENV_COMPUTE_MIN)),
        compute_max_percent=_int(env.get(keys.ENV_COMPUTE_MAX)),
    )


def visible_devices(env: Mapping[str, str]) -> tuple[str, ...]:
    """The GPUs this process sees, named so NVML finds them.

    In a container ``NVIDIA_VISIBLE_DEVICES`` holds the UUIDs and CUDA numbers them from 0; a
    local process has them (or NVML indices) in ``CUDA_VISIBLE_DEVICES``.
    """
    nvidia = [d.strip() for d in env.get(ENV_NVIDIA_VISIBLE_DEVICES, "").split(",") if d.strip()]
    if nvidia and all(d.startswith(_UUID_PREFIXES) for d in nvidia):
        return tuple(nvidia)
    cuda = env.get(ENV_CUDA_VISIBLE_DEVICES)
    if cuda is None:
        return ()
    return tuple(d.strip() for d in cuda.split(",") if d.strip())


def own_pids(root: int | None = None, proc: Path = Path("/proc")) -> set[int]:
    """``root`` (this server) and its descendants, as this PID namespace numbers them."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    try:
        entries = list(proc.iterdir())
    except OSError:
        return {root}
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone, or not ours to read
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        if len(fields) >= 2 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _pid_visible(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def attribute(
    values: Mapping[int, int | None],
    own: set[int],
    visible: Callable[[int], bool] | None = None,
) -> int | None:
    """The sum of ``values`` (PID -> amount on one GPU) over our processes, or None.

    None when it cannot be told: one of our processes has no value, or the GPU's processes are
    none of ours and none of them exist here (NVML's PIDs are of another PID namespace, so ours
    may be among them). No process at all: nothing of ours either, 0.
    """
    visible = visible or _pid_visible
    mine = [value for pid, value in values.items() if pid in own]
    if mine:
        return None if any(v is None for v in mine) else sum(v for v in mine if v is not None)
    if not values or any(visible(pid) for pid in values):
        return 0
    return None


class _Nvml:
    """NVML, initialised once for the server's lifetime (each init costs a driver round trip)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: bool | None = None  # None: not tried yet

    def ready(self) -> bool:
        with self._lock:
            if self._state is None:
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    self._state = True
                except Exception as err:  # no driver, no library, no GPU: usage is unknown
                    logger.info("ai-console: no GPU readings for the status bar (NVML: %s)", err)
                    self._state = False
            return self._state


_NVML = _Nvml()


def read_usage(devices: Sequence[str], pids: set[int]) -> list[DeviceUsage] | None:
    """Read each device and our processes' share of it with NVML; None when NVML is unusable.

    The seam tests replace. Runs in a worker thread (NVML calls block).
    """
    if not devices or not _NVML.ready():
        return None
    import pynvml

    readings = []
    for device in devices:
        try:
            readings.append(_read_device(pynvml, device, pids))
        except pynvml.NVMLError as err:
            logger.debug("ai-console: cannot read GPU %s: %s", device, err)
            readings.append(DeviceUsage(id=device))
    return readings


def _read_device(pynvml: Any, device: str, pids: set[int]) -> DeviceUsage:
    if device.startswith(_UUID_PREFIXES):
        handle = pynvml.nvmlDeviceGetHandleByUUID(device)
    elif device.isdigit():
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(device))
    else:
        return DeviceUsage(id=device)

    def get(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except pynvml.NVMLError:
            return None

    uuid = get(lambda: pynvml.nvmlDeviceGetUUID(handle))
    name = get(lambda: pynvml.nvmlDeviceGetName(handle))
    memory = get(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
    return DeviceUsage(
        id=device,
        uuid=_text(uuid),
        name=_text(name),
        memory_total_mib=int(memory.total) // MIB if memory is not None else None,
        memory_used_mib=_memory_used(pynvml, handle, pids),
        utilization_percent=_utilization(pynvml, handle, pids),
    )


def _memory_used(pynvml: Any, handle: Any, pids: set[int]) -> int | None:
    used: dict[int, int | None] = {}
    for query in (
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses",
        "nvmlDeviceGetMPSComputeRunningProcesses",
    ):
        func = getattr(pynvml, query, None)
        if func is None:
            continue
        try:
            processes = func(handle)
        except pynvml.NVMLError as err:
            if query == "nvmlDeviceGetComputeRunningProcesses":
                logger.debug("ai-console: no process list (NVML: %s)", err)
                return None
            continue
        for process in processes:
            memory = getattr(process, "usedGpuMemory", None)
            mib = int(memory) // MIB if isinstance(memory, int) else None
            previous = used.get(int(process.pid), 0)
            # A process in two lists (compute and MPS) holds one allocation: the larger.
            used[int(process.pid)] = None if mib is None or previous is None else max(previous, mib)
    return attribute(used, pids)


def _utilization(pynvml: Any, handle: Any, pids: set[int]) -> int | None:
    since_us = int((time.time() - UTILIZATION_WINDOW_S) * 1_000_000)
    try:
        samples = pynvml.nvmlDeviceGetProcessUtilization(handle, since_us)
    except pynvml.NVMLError as err:
        if getattr(err, "value", None) == pynvml.NVML_ERROR_NOT_FOUND:
            samples = []  # no process used the GPU in the window
        else:
            return None
    by_pid: dict[int, list[int]] = {}
    for sample in samples:
        by_pid.setdefault(int(sample.pid), []).append(int(sample.smUtil))
    means: dict[int, int | None] = {pid: round(sum(v) / len(v)) for pid, v in by_pid.items()}
    total = attribute(means, pids)
    return None if total is None else min(100, total)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def status_body(info: SliceInfo | None, usage: list[DeviceUsage] | None) -> dict[str, Any]:
    """The response: the slice, its readings (null when unknown) and its devices."""
    if info is None:
        return {"gpu": None}
    count = info.gpu_count
    cap = info.memory_cap_mib * count if info.memory_cap_mib is not None else None
    used = utilization = None
    devices: list[dict[str, Any]] = []
    if not info.simulated:
        readings = usage or [DeviceUsage(id=d) for d in info.devices]
        devices = [asdict(reading) for reading in readings]
        if usage:
            memory = [r.memory_used_mib for r in usage]
            if all(m is not None for m in memory):
                used = sum(m for m in memory if m is not None)
            rates = [r.utilization_percent for r in usage]
            if all(r is not None for r in rates):
                utilization = round(sum(r for r in rates if r is not None) / len(rates))
    return {
        "gpu": {
            "type": info.gpu_type,
            "share": info.share,
            "memory_cap_mib": cap,
            "memory_used_mib": used,
            "utilization_percent": utilization,
            "compute_min_percent": info.compute_min_percent,
            "compute_max_percent": info.compute_max_percent,
            "simulated": info.simulated,
            "devices": devices,
            # Who read memory_used_mib and utilization_percent (None: nobody could).
            "readings_from": "nvml" if used is not None or utilization is not None else None,
        }
    }


def add_agent_readings(gpu: dict[str, Any], readings: Mapping[str, int | None]) -> None:
    """Fill the readings NVML could not give with the node agent's, through the hub: inside a
    container NVML reports host PIDs, which this server cannot match to its processes, while
    the agent on the node can. ``readings_from`` says whose they are."""
    if gpu["simulated"]:
        return
    for name in ("memory_used_mib", "utilization_percent"):
        if gpu[name] is None and readings.get(name) is not None:
            gpu[name] = readings[name]
            gpu["readings_from"] = "node agent"


def current_status(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """This server's slice and readings now (blocking: NVML and /proc)."""
    info = slice_from_environment(os.environ if env is None else env)
    usage = None
    if info is not None and not info.simulated and info.devices:
        usage = read_usage(info.devices, own_pids())
    return status_body(info, usage)


#: Where the server's :class:`IdleStatus` (and its cache) lives in the tornado settings.
IDLE_SETTING = "ai_console_idle_status"


class SliceStatusHandler(AiConsoleHandler):
    @property
    def idle_status(self) -> IdleStatus:
        idle = self.settings.get(IDLE_SETTING)
        if idle is None:
            idle = IdleStatus.from_environment(self.extension.hub_token)
            self.settings[IDLE_SETTING] = idle
        return idle

    @web.authenticated
    @authorized
    async def get(self) -> None:
        has_slice = slice_from_environment(os.environ) is not None
        # A server without a slice has nothing the hub could find idle: it is not asked.
        hub_call = self.idle_status.entry() if has_slice else _nothing()
        body, entry = await asyncio.gather(asyncio.to_thread(current_status), hub_call)
        body["idle"] = None
        if body.get("gpu") is not None:
            body["idle"] = idle_of(entry)
            add_agent_readings(body["gpu"], readings_of(entry))
        self.set_header("Cache-Control", "no-store")
        self.send(200, body)


async def _nothing() -> None:
    return None

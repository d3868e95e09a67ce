"""What a container (or local process) needs so unchanged user code stays inside its GPU slice.

Pure functions from an :class:`~gpu_fraction.model.Allocation` to environment variables and
Kubernetes volume definitions. Enforcement comes in layers (see DESIGN.md):

1. device visibility: the process sees only its GPU(s);
2. CUDA MPS, where the node runs the MPS daemon: a driver-enforced memory cap per client process
   (``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``) and a compute ceiling
   (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` = the slice's burst maximum, so idle SMs can be used);
3. framework caps: the ``sitecustomize`` start-up hook (PyTorch, TensorFlow, reading
   ``AI_CONSOLE_GPU_MEMORY_*``), ``XLA_PYTHON_CLIENT_MEM_FRACTION`` for JAX and
   ``TF_FORCE_GPU_ALLOW_GROWTH``. These are fair-use backstops a user could undo, not isolation;
   the node agent watches actual use.

Whole-GPU allocations get device visibility and owner variables but no caps: they own the GPU.
Simulated allocations have no device: ``CUDA_VISIBLE_DEVICES=""`` (and
``NVIDIA_VISIBLE_DEVICES=void`` in containers, overriding images that default to ``all``) so a
simulated slice never reaches a real GPU; the slice variables and the hook still apply, harmlessly.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from . import keys
from .errors import InvalidFieldError
from .model import Allocation, format_fraction

#: Where the start-up hook ConfigMap is mounted in containers (its directory goes on PYTHONPATH).
STARTUP_MOUNT_PATH = "/opt/ai-console/startup"
#: Key of the hook in the ConfigMap (and the file name Python looks for).
STARTUP_CONFIGMAP_KEY = "sitecustomize.py"
STARTUP_VOLUME = "ai-console-startup"
MPS_PIPE_VOLUME = "ai-console-mps-pipe"
MPS_SHM_VOLUME = "ai-console-mps-shm"
#: The MPS daemon's shared memory must be the client's /dev/shm.
MPS_SHM_MOUNT_PATH = "/dev/shm"

ENV_NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
ENV_CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
ENV_CUDA_DEVICE_ORDER = "CUDA_DEVICE_ORDER"
ENV_MPS_PIPE_DIRECTORY = "CUDA_MPS_PIPE_DIRECTORY"
ENV_MPS_PINNED_MEM_LIMIT = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"
ENV_MPS_THREAD_PERCENTAGE = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
ENV_XLA_MEM_FRACTION = "XLA_PYTHON_CLIENT_MEM_FRACTION"
ENV_TF_ALLOW_GROWTH = "TF_FORCE_GPU_ALLOW_GROWTH"
ENV_PYTHONPATH = "PYTHONPATH"
#: What the "restricted" Pod Security Standard asks of a container: not root, no privilege
#: escalation, no capabilities, the runtime's seccomp profile. Notebook pods (the spawner's
#: default container_security_context) and job pods get it; tested against the real
#: PodSecurity admission.
RESTRICTED_CONTAINER: dict = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: The taint GPU node pools carry (GKE, EKS): pods with a slice tolerate it, as pods asking the
#: device plugin for nvidia.com/gpu get it from the ExtendedResourceToleration admission plugin.
GPU_TAINT_TOLERATION: dict = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
#: NVIDIA container runtime value for "no GPU at all" (an image may default to "all").
NO_DEVICE = "void"
#: What a pod that holds no GPU gets, so a CUDA image (whose default is "all") sees none.
NO_GPU_ENVIRONMENT = {ENV_NVIDIA_VISIBLE_DEVICES: NO_DEVICE, ENV_CUDA_VISIBLE_DEVICES: ""}

_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class MpsSettings:
    """Where a node's CUDA MPS daemon listens, as clients and pods must see it.

    ``pipe_directory`` is the path the client process uses (``CUDA_MPS_PIPE_DIRECTORY``): inside
    the container for pods, on the host for local processes. ``host_pipe_directory`` (default:
    the same path) is mounted there in pods. ``host_shm_directory`` is the host directory the MPS
    daemon uses as its ``/dev/shm``; pods get it mounted at ``/dev/shm`` (so a pod spec must not
    mount anything else there). The default is a dedicated tmpfs, as NVIDIA's MPS DaemonSet uses,
    rather than the host's ``/dev/shm``, so pods do not share all of the host's shared memory;
    the MPS DaemonSet must give its daemon the same directory. Set it to ``None`` when the daemon
    and clients already share ``/dev/shm`` (local processes).
    """

    pipe_directory: str = "/tmp/nvidia-mps"
    host_pipe_directory: str | None = None
    host_shm_directory: str | None = "/run/nvidia/mps/shm"

    def __post_init__(self) -> None:
        for name in ("pipe_directory", "host_pipe_directory", "host_shm_directory"):
            value = getattr(self, name)
            if value is None and name != "pipe_directory":
                continue
            if not isinstance(value, str) or not value.startswith("/") or "," in value:
                raise InvalidFieldError(
                    f"mps.{name}", f"must be an absolute directory path, got {value!r}"
                )

    @property
    def host_pipe(self) -> str:
        return self.host_pipe_directory or self.pipe_directory


def has_caps(allocation: Allocation) -> bool:
    """True when the slice is a share of a GPU, so memory/compute caps apply."""
    return not allocation.is_whole


def _decimal_down(value: Fraction, digits: int) -> str:
    """``value`` in (0, 1] as a decimal with at most ``digits`` places, rounded down, never 0."""
    scale = 10**digits
    steps = max(1, min(scale, math.floor(value * scale)))
    text = f"{steps / scale:.{digits}f}".rstrip("0").rstrip(".")
    return text


def memory_fraction_text(allocation: Allocation, digits: int = 4) -> str:
    """The slice's share of each GPU's memory as a decimal string, rounded down (``"0.25"``)."""
    share = Fraction(allocation.memory_mib, allocation.gpu_memory_mib)
    return _decimal_down(min(Fraction(1), share), digits)


def device_ids(allocation: Allocation, *, use_uuids: bool = True) -> list[str]:
    """How to name the allocation's GPUs to the NVIDIA runtime / CUDA: UUIDs, else indices.

    Indices are used when asked or when any identifier is synthesised (``node/gpuN``, from
    inventories without the node agent's annotation), since those are not real UUIDs.
    """
    uuids = list(allocation.gpu_uuids)
    if use_uuids and uuids and all("/" not in u for u in uuids):
        return uuids
    return [str(i) for i in allocation.gpu_indices]


def container_environment(
    allocation: Allocation,
    *,
    mps: MpsSettings | None = None,
    startup_path: str | None = None,
    use_uuids: bool = True,
    in_container: bool = True,
) -> dict[str, str]:
    """Environment variables that put user code inside ``allocation``.

    ``in_container=True`` (pods): ``NVIDIA_VISIBLE_DEVICES`` selects the GPUs and the runtime
    renumbers them from 0, so ``CUDA_VISIBLE_DEVICES`` is ``"0,1,..."``. ``in_container=False``
    (local processes): no runtime, so ``CUDA_VISIBLE_DEVICES`` names the real UUIDs (or indices,
    with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA numbers GPUs as NVML does).

    ``mps``: add the MPS client settings (skipped for simulated allocations). Memory caps use
    device ordinals as the client sees them (``"0=6144M"``).

    ``startup_path``: the directory holding the start-up hook; for slices with caps it is
    returned as ``PYTHONPATH``. Callers merge it in front of any ``PYTHONPATH`` they already set
    (see :func:`merge_pythonpath`) rather than replacing it.
    """
    env: dict[str, str] = {keys.ENV_ALLOCATION_ID: allocation.id}
    owner = allocation.owner
    env[keys.ENV_OWNER_KIND] = owner.kind
    env[keys.ENV_OWNER_USER] = owner.user
    env[keys.ENV_OWNER_PROJECT] = owner.project
    env[keys.ENV_OWNER_NAME] = owner.name
    # What the slice is, so the server can tell its user (the Lab's status bar).
    env[keys.ENV_GPU_TYPE] = allocation.gpu_type
    env[keys.ENV_GPU_SHARE] = format_fraction(allocation.fraction)
    env[keys.ENV_GPU_DEVICE_MEMORY_MIB] = str(allocation.gpu_memory_mib)
    env[keys.ENV_GPU_SIMULATED] = "true" if allocation.simulated else "false"
    env.update(_device_environment(allocation, use_uuids=use_uuids, in_container=in_container))

    real_mps = mps is not None and not allocation.simulated
    if real_mps:
        assert mps is not None
        # Whole GPUs too: on an MPS node the GPU may be in EXCLUSIVE_PROCESS mode, where only MPS
        # clients can create a context.
        env[ENV_MPS_PIPE_DIRECTORY] = mps.pipe_directory

    if not has_caps(allocation):
        return env

    fraction = memory_fraction_text(allocation)
    env[keys.ENV_GPU_MEMORY_MIB] = str(allocation.memory_mib)
    env[keys.ENV_GPU_MEMORY_FRACTION] = fraction
    env[keys.ENV_COMPUTE_MIN] = str(allocation.compute_min)
    env[keys.ENV_COMPUTE_MAX] = str(allocation.compute_max)
    if real_mps:
        env[ENV_MPS_PINNED_MEM_LIMIT] = ",".join(
            f"{ordinal}={allocation.memory_mib}M" for ordinal in range(len(allocation.gpu_uuids))
        )
        env[ENV_MPS_THREAD_PERCENTAGE] = str(allocation.compute_max)
    # JAX preallocates 75% of the device by default; cap its pool at the slice instead.
    env[ENV_XLA_MEM_FRACTION] = memory_fraction_text(allocation, digits=3)
    # TensorFlow otherwise maps nearly all memory at start, starving the other slices.
    env[ENV_TF_ALLOW_GROWTH] = "true"
    if startup_path:
        env[ENV_PYTHONPATH] = startup_path
    return env


def _device_environment(
    allocation: Allocation, *, use_uuids: bool, in_container: bool
) -> dict[str, str]:
    if allocation.simulated:
        # No device exists: hide every real GPU rather than expose one by accident.
        env = {ENV_CUDA_VISIBLE_DEVICES: ""}
        if in_container:
            env[ENV_NVIDIA_VISIBLE_DEVICES] = NO_DEVICE
        return env
    ids = device_ids(allocation, use_uuids=use_uuids)
    # PCI bus order makes CUDA ordinals match NVML indices (CUDA's default is fastest first).
    env = {ENV_CUDA_DEVICE_ORDER: "PCI_BUS_ID"}
    if in_container:
        env[ENV_NVIDIA_VISIBLE_DEVICES] = ",".join(ids)
        env[ENV_CUDA_VISIBLE_DEVICES] = ",".join(str(i) for i in range(len(ids)))
    else:
        env[ENV_CUDA_VISIBLE_DEVICES] = ",".join(ids)
    return env


def merge_pythonpath(hook_path: str, existing: str | None) -> str:
    """``hook_path`` in front of an existing ``PYTHONPATH`` (the hook chains to later entries)."""
    if not existing:
        return hook_path
    parts = [p for p in existing.split(os.pathsep) if p and p != hook_path]
    return os.pathsep.join([hook_path, *parts])


def kubernetes_volumes(
    allocation: Allocation,
    *,
    mps: MpsSettings | None,
    startup_configmap: str | None,
) -> tuple[list[dict], list[dict]]:
    """Pod ``volumes`` and container ``volumeMounts`` (core/v1 JSON) for ``allocation``.

    With ``mps`` (and a real GPU): the daemon's pipe directory and shared memory as ``hostPath``
    volumes of type ``Directory``, so a pod on a node without a running daemon fails visibly at
    start rather than running uncapped. With ``startup_configmap`` (slices with caps only): the
    start-up hook, read-only at :data:`STARTUP_MOUNT_PATH`, matching ``PYTHONPATH`` from
    :func:`container_environment` with ``startup_path=STARTUP_MOUNT_PATH``.
    """
    volumes: list[dict] = []
    mounts: list[dict] = []
    if mps is not None and not allocation.simulated:
        volumes.append(
            {
                "name": MPS_PIPE_VOLUME,
                "hostPath": {"path": mps.host_pipe, "type": "Directory"},
            }
        )
        mounts.append({"name": MPS_PIPE_VOLUME, "mountPath": mps.pipe_directory})
        if mps.host_shm_directory is not None:
            volumes.append(
                {
                    "name": MPS_SHM_VOLUME,
                    "hostPath": {"path": mps.host_shm_directory, "type": "Directory"},
                }
            )
            mounts.append({"name": MPS_SHM_VOLUME, "mountPath": MPS_SHM_MOUNT_PATH})
    if startup_configmap is not None and has_caps(allocation):
        if len(startup_configmap) > 253 or not _DNS_SUBDOMAIN_RE.match(startup_configmap):
            raise InvalidFieldError(
                "startup_configmap",
                f"must be a ConfigMap name (lower-case DNS subdomain), got {startup_configmap!r}",
            )
        volumes.append(
            {
                "name": STARTUP_VOLUME,
                "configMap": {
                    "name": startup_configmap,
                    "items": [{"key": STARTUP_CONFIGMAP_KEY, "path": STARTUP_CONFIGMAP_KEY}],
                    "defaultMode": 0o444,
                },
            }
        )
        mounts.append({"name": STARTUP_VOLUME, "mountPath": STARTUP_MOUNT_PATH, "readOnly": True})
    return volumes, mounts


def startup_hook_dir() -> str:
    """The directory holding ``sitecustomize.py``, for ``PYTHONPATH`` of local processes."""
    return str(Path(__file__).resolve().parent / "startup")


@lru_cache(maxsize=1)
def startup_hook_source() -> str:
    """The text of the start-up hook, for the ConfigMap mounted into pods."""
    return (Path(startup_hook_dir()) / STARTUP_CONFIGMAP_KEY).read_text(encoding="utf-8")


def startup_configmap_data() -> dict[str, str]:
    """``data`` of the start-up hook ConfigMap."""
    return {STARTUP_CONFIGMAP_KEY: startup_hook_source()}

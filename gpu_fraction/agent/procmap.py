"""Map a GPU process (by PID) to who owns it: its pod, its allocation and its user.

Sources under the proc root (``/proc`` on a node; the agent's DaemonSet needs ``hostPID`` so
that NVML's PIDs are visible there):

* ``<pid>/cgroup`` names the Kubernetes pod UID and container ID. On Kubernetes the slice
  (limit, allocation, owner) then comes from that pod's annotations (``pods.PodSlices``),
  which the pod's user cannot change; the environment is not read at all, since
  ``env -u AI_CONSOLE_GPU_MEMORY_MIB`` or a borrowed ``AI_CONSOLE_OWNER_USER`` would otherwise
  exempt a process or blame someone else.
* ``<pid>/environ`` holds the allocation environment the spawner wrote (``AI_CONSOLE_...``) and
  ``JUPYTERHUB_USER``/``JUPYTERHUB_SERVER_NAME``: the fallback for the single-machine hub, whose
  local servers have no pod. A process inherits its parent's environment, so a PyTorch worker
  spawned by a kernel maps to the kernel's slice.
* ``<pid>/stat`` tells when the process started, which with the PID tells it from a later one.

A file that cannot be read (the process exited, permission denied) leaves the fields it would
have filled unknown (``None``); mapping never raises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from .. import keys
from .sampler import NodeSample

logger = logging.getLogger(__name__)

DEFAULT_PROC_ROOT = "/proc"
ENV_JUPYTERHUB_USER = "JUPYTERHUB_USER"
ENV_JUPYTERHUB_SERVER_NAME = "JUPYTERHUB_SERVER_NAME"

# A pod UID is a UUID; the systemd cgroup driver writes it with '_' for '-'. Static (mirror) pods
# use a 32-hex config hash instead.
_UID = r"[0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12}"
#: One path segment naming the pod: ``pod<uid>`` (cgroupfs driver) or
#: ``kubepods-burstable-pod<uid>.slice`` / ``kubepods-pod<uid>.slice`` (systemd driver; kind nests
#: these as ``kubelet-kubepods-...``).
_POD_SEGMENT = re.compile(
    rf"^(?:[\w.-]*kubepods[\w.-]*-)?pod(?P<uid>{_UID}|[0-9a-fA-F]{{32}})(?:\.slice)?$"
)
#: Runtime prefixes of a systemd container scope: ``cri-containerd-<id>.scope``, ``crio-<id>``...
_CONTAINER_PREFIXES = ("cri-containerd-", "containerd-", "cri-o-", "crio-", "docker-")
_CONTAINER_ID = re.compile(r"^[0-9a-fA-F]{12,}$")


@dataclass(frozen=True, slots=True)
class ProcessOwner:
    """Who a process belongs to; any field may be unknown (``None``)."""

    pod_uid: str | None = None
    container_id: str | None = None
    allocation_id: str | None = None
    #: The slice's GPU memory per GPU (``AI_CONSOLE_GPU_MEMORY_MIB``), what the policy enforces.
    memory_limit_mib: int | None = None
    user: str | None = None
    kind: str | None = None
    project: str | None = None
    name: str | None = None
    #: When the process started (clock ticks since boot, ``/proc/<pid>/stat`` field 22): with
    #: the PID, what tells this process from a later one that reuses its PID.
    start_ticks: int | None = None
    #: The GPUs the slice was given (known from a pod's annotations); empty when unknown.
    gpu_uuids: tuple[str, ...] = ()


class PodOwners(Protocol):
    """Where the owners of pods come from (``pods.PodSlices`` on Kubernetes)."""

    def owners(self, pod_uids: Iterable[str]) -> dict[str, ProcessOwner]: ...


@dataclass(frozen=True, slots=True)
class OwnedProcess:
    """One process on one GPU with its owner: what metrics and policy consume each tick."""

    pid: int
    gpu_index: int
    gpu_uuid: str
    used_memory_mib: int
    owner: ProcessOwner = field(default_factory=ProcessOwner)


def parse_cgroup(text: str) -> tuple[str | None, str | None]:
    """``(pod_uid, container_id)`` from the text of ``/proc/<pid>/cgroup`` (v1 or v2).

    >>> parse_cgroup("0::/kubepods.slice/kubepods-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/"
    ...              "cri-containerd-ab12cd34ef56ab12.scope")
    ('0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b', 'ab12cd34ef56ab12')
    """
    found: tuple[str | None, str | None] = (None, None)
    for line in text.splitlines():
        # "hierarchy-id:controllers:path"; the path itself may not contain ':' but be safe.
        parts = line.split(":", 2)
        if len(parts) != 3 or "kubepods" not in parts[2]:
            continue
        pod_uid, container_id = _parse_cgroup_path(parts[2])
        if pod_uid and container_id:
            return pod_uid, container_id
        if pod_uid and not found[0]:
            found = (pod_uid, container_id)
    return found


def _parse_cgroup_path(path: str) -> tuple[str | None, str | None]:
    segments = [s for s in path.split("/") if s]
    for position, segment in enumerate(segments):
        match = _POD_SEGMENT.match(segment)
        if not match:
            continue
        pod_uid = match.group("uid").replace("_", "-").lower()
        following = segments[position + 1] if position + 1 < len(segments) else ""
        return pod_uid, _container_id(following)
    return None, None


def _container_id(segment: str) -> str | None:
    text = segment.removesuffix(".scope")
    for prefix in _CONTAINER_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    return text.lower() if _CONTAINER_ID.match(text) else None


def parse_start_ticks(stat: bytes) -> int | None:
    """Field 22 (starttime) of ``/proc/<pid>/stat``; the command name (field 2, in
    parentheses) may hold spaces and parentheses, so fields are counted after its last ')'."""
    text = stat.decode("ascii", "replace")
    fields = text[text.rfind(")") + 1 :].split()
    try:
        return int(fields[19])  # field 3 is fields[0]
    except (IndexError, ValueError):
        return None


def parse_environ(data: bytes) -> dict[str, str]:
    """The variables of ``/proc/<pid>/environ`` (``NAME=value`` entries separated by NUL)."""
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            env[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def owner_from_environ(env: Mapping[str, str]) -> ProcessOwner:
    """The owner an environment tells: allocation, memory limit, user, kind, project, name.

    ``JUPYTERHUB_USER`` stands in for the owner's user when the allocation variables are absent
    (a local server started without a slice is still somebody's); such a process is a notebook.
    """

    def get(name: str) -> str | None:
        return env.get(name) or None  # an empty value tells nothing

    user = get(keys.ENV_OWNER_USER) or get(ENV_JUPYTERHUB_USER)
    kind = get(keys.ENV_OWNER_KIND) or ("notebook" if get(ENV_JUPYTERHUB_USER) else None)
    return ProcessOwner(
        allocation_id=get(keys.ENV_ALLOCATION_ID),
        memory_limit_mib=_positive_int(get(keys.ENV_GPU_MEMORY_MIB)),
        user=user,
        kind=kind,
        project=get(keys.ENV_OWNER_PROJECT),
        name=get(keys.ENV_OWNER_NAME) or get(ENV_JUPYTERHUB_SERVER_NAME),
    )


def _positive_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        logger.debug("ignoring %s=%r: not a whole number of MiB", keys.ENV_GPU_MEMORY_MIB, value)
        return None
    return number if number > 0 else None


class ProcessMapper:
    """Reads owners from a proc tree (``/proc`` by default; tests point it at a fake one).

    With ``pods`` (on Kubernetes) a process's slice comes from its pod only; without, from its
    environment (the single-machine hub).
    """

    def __init__(
        self, proc_root: str | Path = DEFAULT_PROC_ROOT, pods: PodOwners | None = None
    ) -> None:
        self.proc_root = Path(proc_root)
        self.pods = pods

    def owner(self, pid: int) -> ProcessOwner:
        """The owner of ``pid``; fields that cannot be read stay ``None``."""
        return self._owners([pid])[pid]

    def _owners(self, pids: Iterable[int]) -> dict[int, ProcessOwner]:
        local = {pid: self._local_owner(pid) for pid in pids}
        if self.pods is None:
            return local
        uids = {o.pod_uid for o in local.values() if o.pod_uid}
        by_pod = self.pods.owners(uids) if uids else {}
        owners: dict[int, ProcessOwner] = {}
        for pid, found in local.items():
            pod = by_pod.get(found.pod_uid or "")
            # Outside any pod (a host process) a process has no slice on Kubernetes.
            base = pod if pod is not None else ProcessOwner()
            owners[pid] = replace(
                base,
                pod_uid=found.pod_uid,
                container_id=found.container_id,
                start_ticks=found.start_ticks,
            )
        return owners

    def _local_owner(self, pid: int) -> ProcessOwner:
        """What the proc tree tells: the cgroup's pod, the start time and (without ``pods``)
        the environment's slice."""
        base = self.proc_root / str(int(pid))
        pod_uid = container_id = None
        cgroup = self._read(base / "cgroup")
        if cgroup is not None:
            pod_uid, container_id = parse_cgroup(cgroup.decode("utf-8", "replace"))
        owner = ProcessOwner()
        if self.pods is None:
            environ = self._read(base / "environ")
            if environ is not None:
                owner = owner_from_environ(parse_environ(environ))
        return replace(
            owner, pod_uid=pod_uid, container_id=container_id, start_ticks=self.start_ticks(pid)
        )

    def start_ticks(self, pid: int) -> int | None:
        """When ``pid`` started, or None if it is gone (or unreadable)."""
        stat = self._read(self.proc_root / str(int(pid)) / "stat")
        return None if stat is None else parse_start_ticks(stat)

    def attribute(self, sample: NodeSample) -> list[OwnedProcess]:
        """Every process of every GPU in ``sample`` with its owner (each PID read once, the
        node's pods listed at most once)."""
        owners = self._owners({p.pid for gpu in sample.gpus for p in gpu.processes})
        result: list[OwnedProcess] = []
        for gpu in sample.gpus:
            for process in gpu.processes:
                result.append(
                    OwnedProcess(
                        pid=process.pid,
                        gpu_index=gpu.index,
                        gpu_uuid=gpu.uuid,
                        used_memory_mib=process.used_memory_mib,
                        owner=owners[process.pid],
                    )
                )
        return result

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError as err:
            # The process exited between the NVML query and now, or the agent lacks the right
            # to read another user's environment: both are ordinary, not errors.
            logger.debug("cannot read %s: %s", path, err)
            return None

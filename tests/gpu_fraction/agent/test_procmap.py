"""Mapping a PID to its owner from a fake /proc tree."""

from __future__ import annotations

import pytest

from gpu_fraction import keys
from gpu_fraction.agent.procmap import (
    ProcessMapper,
    ProcessOwner,
    parse_cgroup,
    parse_environ,
)
from gpu_fraction.agent.sampler import GpuSample, NodeSample, ProcessSample

from .conftest import FakeProc

POD_UID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
CID = "3b7c1f0e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c"

CGROUP_V1 = "\n".join(
    [
        f"12:memory:/kubepods/burstable/pod{POD_UID}/{CID}",
        f"11:devices:/kubepods/burstable/pod{POD_UID}/{CID}",
        "1:name=systemd:/",
        "",
    ]
)
CGROUP_V2_SYSTEMD = (
    "0::/kubepods.slice/kubepods-burstable.slice/"
    f"kubepods-burstable-pod{POD_UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n"
)

SLICE_ENV = {
    "PATH": "/usr/bin",
    keys.ENV_ALLOCATION_ID: "alloc-7",
    keys.ENV_GPU_MEMORY_MIB: "6144",
    keys.ENV_OWNER_KIND: "notebook",
    keys.ENV_OWNER_USER: "alice",
    keys.ENV_OWNER_PROJECT: "cs101",
    keys.ENV_OWNER_NAME: "lab1",
    "JUPYTERHUB_USER": "alice",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CGROUP_V1, (POD_UID, CID)),
        (CGROUP_V2_SYSTEMD, (POD_UID, CID)),
        # Guaranteed pods have no QoS level in the path.
        (f"4:cpu,cpuacct:/kubepods/pod{POD_UID}/{CID}\n", (POD_UID, CID)),
        (
            f"0::/kubepods.slice/kubepods-pod{POD_UID.replace('-', '_')}.slice/"
            f"cri-containerd-{CID}.scope\n",
            (POD_UID, CID),
        ),
        (
            "0::/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{POD_UID.replace('-', '_')}.slice/crio-{CID}.scope\n",
            (POD_UID, CID),
        ),
        (
            "0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{POD_UID.replace('-', '_')}.slice/docker-{CID}.scope\n",
            (POD_UID, CID),
        ),
        # cgroup v2 with the cgroupfs driver.
        (f"0::/kubepods/besteffort/pod{POD_UID}/{CID}\n", (POD_UID, CID)),
        # kind nests the kubelet's slices under kubelet.slice.
        (
            "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
            f"kubelet-kubepods-besteffort-pod{POD_UID.replace('-', '_')}.slice/"
            f"cri-containerd-{CID}.scope\n",
            (POD_UID, CID),
        ),
        # The pod's own cgroup (the process sits in the pod slice, not a container).
        (f"0::/kubepods/burstable/pod{POD_UID}\n", (POD_UID, None)),
        # Not in a pod at all.
        ("0::/user.slice/user-1000.slice/session-3.scope\n", (None, None)),
        ("0::/system.slice/docker-" + CID + ".scope\n", (None, None)),
        ("", (None, None)),
    ],
)
def test_parse_cgroup(text: str, expected: tuple[str | None, str | None]) -> None:
    assert parse_cgroup(text) == expected


def test_parse_environ_splits_on_nul_and_keeps_equals_in_values() -> None:
    env = parse_environ(b"A=1\0B=x=y\0EMPTY=\0garbage\0\0")
    assert env == {"A": "1", "B": "x=y", "EMPTY": ""}


def test_pod_process_cgroup_v1(fake_proc: FakeProc) -> None:
    fake_proc.add(1001, cgroup=CGROUP_V1, environ=SLICE_ENV)
    owner = ProcessMapper(fake_proc.root).owner(1001)
    assert owner == ProcessOwner(
        pod_uid=POD_UID,
        container_id=CID,
        allocation_id="alloc-7",
        memory_limit_mib=6144,
        user="alice",
        kind="notebook",
        project="cs101",
        name="lab1",
    )


def test_pod_process_cgroup_v2_systemd(fake_proc: FakeProc) -> None:
    env = dict(SLICE_ENV, **{keys.ENV_OWNER_KIND: "job", keys.ENV_OWNER_USER: "bob"})
    fake_proc.add(2001, cgroup=CGROUP_V2_SYSTEMD, environ=env)
    owner = ProcessMapper(fake_proc.root).owner(2001)
    assert owner.pod_uid == POD_UID
    assert owner.container_id == CID
    assert owner.kind == "job"
    assert owner.user == "bob"  # the allocation's owner wins over JUPYTERHUB_USER


def test_local_server_has_only_its_environment(fake_proc: FakeProc) -> None:
    fake_proc.add(
        3001,
        cgroup="0::/user.slice/user-0.slice/session-1.scope\n",
        environ={"JUPYTERHUB_USER": "carol", "JUPYTERHUB_SERVER_NAME": "gpu"},
    )
    owner = ProcessMapper(fake_proc.root).owner(3001)
    assert owner == ProcessOwner(user="carol", kind="notebook", name="gpu")


def test_default_server_name_is_unknown_not_empty(fake_proc: FakeProc) -> None:
    fake_proc.add(3002, environ={"JUPYTERHUB_USER": "carol", "JUPYTERHUB_SERVER_NAME": ""})
    assert ProcessMapper(fake_proc.root).owner(3002).name is None


def test_vanished_pid_gives_an_unknown_owner(fake_proc: FakeProc) -> None:
    assert ProcessMapper(fake_proc.root).owner(4242) == ProcessOwner()


def test_unreadable_environ_keeps_what_cgroup_tells(fake_proc: FakeProc) -> None:
    folder = fake_proc.add(5001, cgroup=CGROUP_V1)
    # A directory where the file should be: reading it fails with an OSError, as EACCES would
    # (tests run as root, where chmod cannot make a file unreadable).
    (folder / "environ").mkdir()
    owner = ProcessMapper(fake_proc.root).owner(5001)
    assert owner == ProcessOwner(pod_uid=POD_UID, container_id=CID)


@pytest.mark.parametrize("value", ["lots", "-5", "0", ""])
def test_bad_memory_limit_is_unknown(fake_proc: FakeProc, value: str) -> None:
    fake_proc.add(6001, environ={keys.ENV_GPU_MEMORY_MIB: value, keys.ENV_ALLOCATION_ID: "a"})
    owner = ProcessMapper(fake_proc.root).owner(6001)
    assert owner.memory_limit_mib is None
    assert owner.allocation_id == "a"


def test_attribute_joins_samples_with_owners(fake_proc: FakeProc) -> None:
    fake_proc.add(1001, cgroup=CGROUP_V1, environ=SLICE_ENV)
    sample = NodeSample(
        gpus=(
            GpuSample(index=0, uuid="GPU-a", processes=(ProcessSample(1001, 100),)),
            GpuSample(
                index=1, uuid="GPU-b", processes=(ProcessSample(1001, 50), ProcessSample(9, 1))
            ),
        )
    )
    owned = ProcessMapper(fake_proc.root).attribute(sample)
    assert [(p.pid, p.gpu_index, p.gpu_uuid, p.used_memory_mib) for p in owned] == [
        (1001, 0, "GPU-a", 100),
        (1001, 1, "GPU-b", 50),
        (9, 1, "GPU-b", 1),
    ]
    assert owned[0].owner.allocation_id == "alloc-7"
    assert owned[2].owner == ProcessOwner()


def test_start_ticks_are_read_past_a_command_name_with_spaces_and_parentheses(tmp_path) -> None:
    """Field 22 of /proc/<pid>/stat, counted after the last ')' of the command name."""
    from gpu_fraction.agent.procmap import ProcessMapper, parse_start_ticks

    rest = " ".join(str(n) for n in range(3, 53)).replace(" 22 ", " 987654 ")
    stat = f"4321 (python (train) x) {rest}\n".encode()
    assert parse_start_ticks(stat) == 987654
    assert parse_start_ticks(b"garbage") is None
    (tmp_path / "4321").mkdir()
    (tmp_path / "4321" / "stat").write_bytes(stat)
    mapper = ProcessMapper(tmp_path)
    assert mapper.start_ticks(4321) == 987654 and mapper.owner(4321).start_ticks == 987654
    assert mapper.start_ticks(999) is None


def test_start_ticks_of_a_real_process_tell_it_from_a_later_one() -> None:
    import subprocess
    import sys

    from gpu_fraction.agent.procmap import ProcessMapper

    mapper = ProcessMapper("/proc")
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ticks = mapper.start_ticks(first.pid)
        assert isinstance(ticks, int) and ticks > 0
        assert mapper.start_ticks(first.pid) == ticks  # stable while it lives
    finally:
        first.kill()
        first.wait()
    # Gone (None), or its PID reused by a process that started later: never the same ticks.
    assert mapper.start_ticks(first.pid) != ticks


class FakePods:
    """Pod owners by UID, as ``pods.PodSlices`` answers them; counts the lookups."""

    def __init__(self, owners: dict[str, ProcessOwner]) -> None:
        self._owners = owners
        self.calls: list[set[str]] = []

    def owners(self, pod_uids) -> dict[str, ProcessOwner]:
        wanted = set(pod_uids)
        self.calls.append(wanted)
        return {u: self._owners.get(u, ProcessOwner(pod_uid=u)) for u in wanted}


def test_on_kubernetes_the_pod_not_the_environment_tells_the_slice(fake_proc: FakeProc) -> None:
    """A user who runs `env -u AI_CONSOLE_GPU_MEMORY_MIB AI_CONSOLE_OWNER_USER=victim python`
    neither escapes the limit nor blames someone else: the pod's annotations decide."""
    lying = {k: v for k, v in SLICE_ENV.items() if k != keys.ENV_GPU_MEMORY_MIB}
    lying[keys.ENV_OWNER_USER] = "victim"
    fake_proc.add(1001, cgroup=CGROUP_V1, environ=lying)
    fake_proc.add(1002, environ=SLICE_ENV)  # a host process claiming a slice: none on Kubernetes
    from_pod = ProcessOwner(
        pod_uid=POD_UID,
        allocation_id="alloc-7",
        memory_limit_mib=6144,
        user="alice",
        kind="notebook",
        gpu_uuids=("GPU-a",),
    )
    pods = FakePods({POD_UID: from_pod})
    mapper = ProcessMapper(fake_proc.root, pods=pods)
    sample = NodeSample(
        gpus=(
            GpuSample(
                index=0,
                uuid="GPU-a",
                processes=(ProcessSample(1001, 100), ProcessSample(1002, 100)),
            ),
        )
    )
    owned = mapper.attribute(sample)
    assert owned[0].owner.user == "alice" and owned[0].owner.memory_limit_mib == 6144
    assert owned[0].owner.container_id == CID
    assert owned[1].owner.memory_limit_mib is None and owned[1].owner.user is None
    assert pods.calls == [{POD_UID}]  # the node's pods looked up once per tick

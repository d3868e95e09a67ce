"""The agent on the real control plane: it lists its node's pods with its own documented RBAC,
takes each process's slice from the pod its cgroup names, and holds the pod to its slice as a
whole (every process of the pod summed), whatever the processes' environments say."""

from __future__ import annotations

import signal
from pathlib import Path

from gpu_fraction import keys
from gpu_fraction.agent.kube_api import KubeAPI
from gpu_fraction.agent.main import Agent
from gpu_fraction.agent.metrics import AgentMetrics
from gpu_fraction.agent.pods import PodSlices
from gpu_fraction.agent.policy import OverLimitPolicy
from gpu_fraction.agent.procmap import ProcessMapper
from gpu_fraction.agent.sampler import Sampler
from tests.control_plane.fixtures import RBAC_FOLDER

from .conftest import FakeGpu, FakeNvml, FakeProc, FakeProcess

AGENT_RBAC = RBAC_FOLDER / "agent-rbac.yaml"


def slice_pod(name: str, node: str, user: str, memory_mib: int, uuid: str) -> dict:
    annotations = {
        keys.ANN_ALLOCATION: f"alloc-{name}",
        keys.ANN_NODE: node,
        keys.ANN_GPU_TYPE: "RTX3090",
        keys.ANN_GPU_UUIDS: uuid,
        keys.ANN_FRACTION: "1/4",
        keys.ANN_MEMORY_MIB: str(memory_mib),
        keys.ANN_COMPUTE_MIN: "0",
        keys.ANN_COMPUTE_MAX: "100",
        keys.ANN_OWNER_KIND: "notebook",
        keys.ANN_OWNER_USER: user,
    }
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "containers": [{"name": "notebook", "image": "quay.io/jupyter/base-notebook"}],
        },
    }


def cgroup_of(uid: str) -> str:
    pod = f"kubepods-pod{uid.replace('-', '_')}.slice"
    return f"0::/kubepods.slice/{pod}/cri-containerd-{'ab' * 32}.scope\n"


def test_agent_holds_each_pod_to_its_slice_from_the_pods_annotations(
    kube, fake_nvml: FakeNvml, fake_proc: FakeProc, tmp_path: Path
) -> None:
    here, elsewhere = "agent-gpu-a", "agent-gpu-b"
    kube.add_node(here)
    kube.add_node(elsewhere)
    token = kube.bind_account("ai-console-agent", AGENT_RBAC, tmp_path / "agent.kubeconfig")
    uuid = "GPU-aaaa0000-0000-0000-0000-000000000001"
    alice = kube.admin.create("pods", slice_pod("alice", here, "alice", 6144, uuid), kube.namespace)
    bob = kube.admin.create("pods", slice_pod("bob", here, "bob", 6144, uuid), kube.namespace)
    other = kube.admin.create(
        "pods", slice_pod("carol", elsewhere, "carol", 100, uuid), kube.namespace
    )
    # Alice's two kernels hold 4000 + 3000 MiB of her 6144 (each under, together over) and
    # one of them tries to pass as bob with no limit; bob's one kernel fits; carol's pod is on
    # another node, so the agent of this node does not see it.
    for pid, pod in ((4101, alice), (4102, alice), (4201, bob), (4301, other)):
        env = {keys.ENV_OWNER_USER: "bob"} if pid == 4102 else {keys.ENV_GPU_MEMORY_MIB: "6144"}
        fake_proc.add(pid, cgroup=cgroup_of(pod["metadata"]["uid"]), environ=env)
    fake_nvml.gpus = [
        FakeGpu(
            uuid=uuid,
            name="NVIDIA GeForce RTX 3090",
            total_mib=24576,
            used_mib=13500,
            utilization=80,
            compute=[
                FakeProcess(4101, 4000),
                FakeProcess(4102, 3000),
                FakeProcess(4201, 5000),
                FakeProcess(4301, 1500),
            ],
        )
    ]
    plane = kube.cluster.plane
    (tmp_path / "token").write_text(token)
    api = KubeAPI(base_url=plane.url, token_file=tmp_path / "token", ca_file=plane.ca.cert)
    sent: list[tuple[int, int]] = []
    agent = Agent(
        node_name=here,
        sampler=Sampler(),
        mapper=ProcessMapper(fake_proc.root, pods=PodSlices(api, here)),
        policy=OverLimitPolicy("terminate", grace_seconds=0, kill=lambda p, s: sent.append((p, s))),
        metrics=AgentMetrics(here),
    )
    assert agent.start() is None
    try:
        result = agent.tick()
    finally:
        agent.close()

    owners = {p.pid: p.owner for p in result.processes}
    assert owners[4102].user == "alice" and owners[4102].memory_limit_mib == 6144
    assert owners[4301].memory_limit_mib is None  # not a pod of this node: not enforced here
    assert [(e.action, e.user, e.used_mib, e.pids) for e in result.events] == [
        ("report", "alice", 7000, (4101, 4102)),
        ("sigterm", "alice", 7000, (4101, 4102)),
    ]
    assert sent == [(4101, signal.SIGTERM)]  # her largest kernel; bob's fits and is left alone

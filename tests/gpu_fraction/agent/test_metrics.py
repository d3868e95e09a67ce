"""The /metrics endpoint, served for real on 127.0.0.1 with the fake NVML behind it."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pynvml
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gpu_fraction import keys
from gpu_fraction.agent.main import Agent
from gpu_fraction.agent.metrics import AgentMetrics, MetricsServer
from gpu_fraction.agent.policy import OverLimitPolicy
from gpu_fraction.agent.procmap import ProcessMapper
from gpu_fraction.agent.sampler import Sampler

from .conftest import UUID0, UUID1, FakeNvml, FakeProc

POD_A = "11111111-2222-3333-4444-555555555555"
POD_B = "66666666-7777-8888-9999-000000000000"

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def alloc_env(alloc: str, user: str, kind: str, limit: int) -> dict[str, str]:
    return {
        keys.ENV_ALLOCATION_ID: alloc,
        keys.ENV_GPU_MEMORY_MIB: str(limit),
        keys.ENV_OWNER_USER: user,
        keys.ENV_OWNER_KIND: kind,
        keys.ENV_OWNER_PROJECT: "cs101",
    }


@pytest.fixture
def agent(fake_nvml: FakeNvml, fake_proc: FakeProc) -> Iterator[Agent]:
    # GPU 0: pid 1001 (alice, 6000 of a 6144 MiB slice), pid 1002 (bob, 3000 of 2048: over);
    # GPU 1: pid 2001 (carol's job), pid 2002 unknown (no /proc entry).
    fake_proc.add(
        1001,
        cgroup=f"0::/kubepods/burstable/pod{POD_A}/{'a' * 64}\n",
        environ=alloc_env("alloc-a", "alice", "notebook", 6144),
    )
    fake_proc.add(
        1002,
        cgroup=f"0::/kubepods/burstable/pod{POD_B}/{'b' * 64}\n",
        environ=alloc_env("alloc-b", "bob", "notebook", 2048),
    )
    fake_proc.add(2001, environ=alloc_env("alloc-c", "carol", "job", 4096))
    metrics = AgentMetrics("node-a")
    agent = Agent(
        node_name="node-a",
        sampler=Sampler(),
        mapper=ProcessMapper(fake_proc.root),
        policy=OverLimitPolicy("report", tolerance_mib=0),
        metrics=metrics,
    )
    assert agent.start() is None
    yield agent
    agent.close()


@pytest.fixture
def server(agent: Agent) -> Iterator[MetricsServer]:
    srv = MetricsServer(agent.metrics.registry, 0, "127.0.0.1")
    yield srv
    srv.close()


def scrape(port: int) -> Series:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def find(series: Series, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for (metric, label_items), value in series.items():
        found = dict(label_items)
        if metric == name and all(found.get(k) == v for k, v in labels.items()):
            out.append((found, value))
    return out


def test_gpu_and_process_series(agent: Agent, server: MetricsServer) -> None:
    agent.tick()
    series = scrape(server.port)

    gpu_labels = {"node": "node-a", "gpu": "0", "uuid": UUID0, "product": "NVIDIA GeForce RTX 3090"}
    key = tuple(sorted(gpu_labels.items()))
    assert series[("ai_console_gpu_utilization_percent", key)] == 37
    assert series[("ai_console_gpu_memory_used_mib", key)] == 9000
    assert series[("ai_console_gpu_memory_total_mib", key)] == 24576
    assert find(series, "ai_console_gpu_memory_used_mib", gpu="1", uuid=UUID1)[0][1] == 1200

    procs = find(series, "ai_console_process_gpu_memory_mib")
    by_pid = {labels["pid"]: (labels, value) for labels, value in procs}
    assert set(by_pid) == {"1001", "1002", "2001", "2002"}
    labels, value = by_pid["1001"]
    assert value == 6000
    assert labels == {
        "node": "node-a",
        "gpu": "0",
        "uuid": UUID0,
        "pid": "1001",
        "pod_uid": POD_A,
        "user": "alice",
        "allocation": "alloc-a",
        "kind": "notebook",
        "project": "cs101",
    }
    assert by_pid["2001"][0]["kind"] == "job"
    assert by_pid["2001"][0]["pod_uid"] == ""  # a local process: environment only
    assert by_pid["2002"] == (
        {
            "node": "node-a",
            "gpu": "1",
            "uuid": UUID1,
            "pid": "2002",
            "pod_uid": "",
            "user": "",
            "allocation": "",
            "kind": "",
            "project": "",
        },
        0.0,
    )

    limits = {
        labels["allocation"]: value
        for labels, value in find(series, "ai_console_slice_memory_limit_mib")
    }
    assert limits == {"alloc-a": 6144, "alloc-b": 2048, "alloc-c": 4096}

    assert find(series, "ai_console_processes_over_limit")[0][1] == 1  # bob
    assert find(series, "ai_console_policy_actions_total", action="report")[0][1] == 1
    assert find(series, "ai_console_policy_actions_total", action="sigterm")[0][1] == 0
    assert find(series, "ai_console_agent_gpus")[0][1] == 2
    assert find(series, "ai_console_agent_nvml_up")[0][1] == 1


def test_series_of_a_vanished_process_are_removed(
    agent: Agent, server: MetricsServer, fake_nvml: FakeNvml
) -> None:
    agent.tick()
    assert find(scrape(server.port), "ai_console_process_gpu_memory_mib", pid="1002")

    fake_nvml.gpus[0].compute = [p for p in fake_nvml.gpus[0].compute if p.pid != 1002]
    fake_nvml.gpus[0].used_mib = 6000
    agent.tick()
    series = scrape(server.port)
    assert find(series, "ai_console_process_gpu_memory_mib", pid="1002") == []
    assert find(series, "ai_console_slice_memory_limit_mib", allocation="alloc-b") == []
    assert find(series, "ai_console_process_gpu_memory_mib", pid="1001")[0][1] == 6000
    assert find(series, "ai_console_gpu_memory_used_mib", gpu="0")[0][1] == 6000
    assert find(series, "ai_console_processes_over_limit")[0][1] == 0
    # The counter keeps its history.
    assert find(series, "ai_console_policy_actions_total", action="report")[0][1] == 1


def test_unreadable_values_are_left_out_not_zero(
    agent: Agent, server: MetricsServer, fake_nvml: FakeNvml
) -> None:
    fake_nvml.gpus[1].errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_UNKNOWN
    agent.tick()
    series = scrape(server.port)
    assert [lab["gpu"] for lab, _ in find(series, "ai_console_gpu_utilization_percent")] == ["0"]
    assert len(find(series, "ai_console_gpu_memory_total_mib")) == 2


def test_private_registry_leaves_the_global_one_alone() -> None:
    before = set(REGISTRY._names_to_collectors)  # type: ignore[attr-defined]
    AgentMetrics("node-x")
    AgentMetrics("node-y")  # a second instance does not collide either
    assert set(REGISTRY._names_to_collectors) == before  # type: ignore[attr-defined]


def test_before_the_first_tick_nothing_is_up() -> None:
    metrics = AgentMetrics("node-z", CollectorRegistry())
    text = metrics.render().decode()
    assert 'ai_console_agent_nvml_up{node="node-z"} 0.0' in text
    assert "ai_console_process_gpu_memory_mib{" not in text

"""``GET ai-console/slice`` in a real jupyter_server (pytest-jupyter): the slice from the
environment the spawner sets, readings through the NVML seam, nothing made up without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from tornado.httpclient import HTTPClientError

from gpu_fraction import keys
from server_extension import slice_status
from server_extension.slice_status import DeviceUsage, attribute, own_pids

UUID = "GPU-3f2a1b6c-0000-1111-2222-333344445555"
SLICE_ENV = {
    keys.ENV_GPU_TYPE: "RTX3090",
    keys.ENV_GPU_SHARE: "1/4",
    keys.ENV_GPU_MEMORY_MIB: "6144",
    keys.ENV_GPU_DEVICE_MEMORY_MIB: "24576",
    keys.ENV_COMPUTE_MIN: "25",
    keys.ENV_COMPUTE_MAX: "100",
}
ALL_VARS = [*SLICE_ENV, keys.ENV_GPU_SIMULATED, "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"]


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"server_extension": True}}}


@pytest.fixture
def environment(monkeypatch):
    """Sets the server's environment as a spawner would (after clearing the slice's variables)."""
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(values: dict[str, str]) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.fixture
def no_nvml(monkeypatch):
    """Fails the test if NVML is asked (a CPU-only or simulated slice has nothing to read)."""

    def refuse(devices, pids):
        raise AssertionError(f"NVML read for {devices}")

    monkeypatch.setattr(slice_status, "read_usage", refuse)


def get_slice(jp_fetch, loop) -> dict:
    response = loop.run_until_complete(jp_fetch("ai-console", "slice"))
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


def test_a_cpu_only_server_has_no_gpu(jp_fetch, jp_asyncio_loop, environment, no_nvml):
    environment({"CUDA_VISIBLE_DEVICES": ""})
    assert get_slice(jp_fetch, jp_asyncio_loop) == {"gpu": None}


def test_a_simulated_slice_comes_from_the_environment_with_no_readings(
    jp_fetch, jp_asyncio_loop, environment, no_nvml
):
    # As LocalGPUSpawner sets it for "PyTorch, 1/4 RTX 3090" on a simulated GPU.
    environment({**SLICE_ENV, keys.ENV_GPU_SIMULATED: "true", "CUDA_VISIBLE_DEVICES": ""})
    assert get_slice(jp_fetch, jp_asyncio_loop) == {
        "gpu": {
            "type": "RTX3090",
            "share": "1/4",
            "memory_cap_mib": 6144,
            "memory_used_mib": None,
            "utilization_percent": None,
            "compute_min_percent": 25,
            "compute_max_percent": 100,
            "simulated": True,
            "devices": [],
        }
    }


def test_readings_come_from_the_nvml_seam_for_our_processes(
    jp_fetch, jp_asyncio_loop, environment, monkeypatch
):
    environment({**SLICE_ENV, keys.ENV_GPU_SIMULATED: "false", "CUDA_VISIBLE_DEVICES": UUID})
    asked = []

    def read(devices, pids):
        asked.append((tuple(devices), pids))
        return [
            DeviceUsage(UUID, UUID, "NVIDIA GeForce RTX 3090", 24576, 1229, 35),
        ]

    monkeypatch.setattr(slice_status, "read_usage", read)
    gpu = get_slice(jp_fetch, jp_asyncio_loop)["gpu"]
    [(devices, pids)] = asked
    assert devices == (UUID,)
    assert os.getpid() in pids  # the server's own process tree
    assert gpu["memory_cap_mib"] == 6144
    assert gpu["memory_used_mib"] == 1229
    assert gpu["utilization_percent"] == 35
    assert gpu["simulated"] is False
    assert gpu["devices"] == [
        {
            "id": UUID,
            "uuid": UUID,
            "name": "NVIDIA GeForce RTX 3090",
            "memory_total_mib": 24576,
            "memory_used_mib": 1229,
            "utilization_percent": 35,
        }
    ]


def test_without_nvml_the_readings_are_unknown_not_zero(
    jp_fetch, jp_asyncio_loop, environment, monkeypatch
):
    # Whole GPUs in a container: the cap is each GPU's memory, the devices are the UUIDs.
    environment(
        {
            keys.ENV_GPU_TYPE: "A100",
            keys.ENV_GPU_SHARE: "2",
            keys.ENV_GPU_DEVICE_MEMORY_MIB: "81920",
            keys.ENV_GPU_SIMULATED: "false",
            "NVIDIA_VISIBLE_DEVICES": f"{UUID},GPU-b",
            "CUDA_VISIBLE_DEVICES": "0,1",
        }
    )
    monkeypatch.setattr(slice_status, "read_usage", lambda devices, pids: None)
    gpu = get_slice(jp_fetch, jp_asyncio_loop)["gpu"]
    assert gpu["share"] == "2"
    assert gpu["memory_cap_mib"] == 2 * 81920
    assert gpu["memory_used_mib"] is None
    assert gpu["utilization_percent"] is None
    assert [d["id"] for d in gpu["devices"]] == [UUID, "GPU-b"]
    assert all(d["memory_used_mib"] is None for d in gpu["devices"])


def test_a_caller_without_credentials_is_refused(
    jp_serverapp, jp_base_url, http_server_client, jp_asyncio_loop, environment
):
    environment({**SLICE_ENV, keys.ENV_GPU_SIMULATED: "true", "CUDA_VISIBLE_DEVICES": ""})
    fetch = http_server_client.fetch(f"{jp_base_url}ai-console/slice", follow_redirects=False)
    with pytest.raises(HTTPClientError) as info:
        jp_asyncio_loop.run_until_complete(fetch)
    assert info.value.code in (401, 403)


# --- attributing NVML's per-process readings to this server ---------------------------------------


def test_our_processes_are_summed():
    assert attribute({10: 1000, 11: 200, 99: 5000}, {10, 11}, lambda pid: True) == 1200


def test_no_process_on_the_gpu_means_none_of_ours():
    assert attribute({}, {10}, lambda pid: False) == 0


def test_others_processes_we_can_see_mean_none_of_ours():
    assert attribute({99: 5000}, {10}, lambda pid: pid == 99) == 0


def test_processes_of_another_pid_namespace_cannot_be_attributed():
    # In a container NVML reports host PIDs: ours may be among them, so say unknown.
    assert attribute({48213: 5000}, {1, 7}, lambda pid: False) is None


def test_a_process_of_ours_without_a_reading_makes_the_sum_unknown():
    assert attribute({10: None, 11: 200}, {10, 11}, lambda pid: True) is None


def test_own_pids_include_child_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert {os.getpid(), child.pid} <= own_pids()
    finally:
        child.kill()
        child.wait()


class FakeNvml:
    """The pynvml calls the reader makes, answering for one RTX 3090."""

    NVML_ERROR_NOT_FOUND = 6

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(value)
            self.value = value

    def __init__(self, processes, samples) -> None:
        self.processes, self.samples = processes, samples

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return ("handle", uuid)

    def nvmlDeviceGetUUID(self, handle):
        return handle[1]

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA GeForce RTX 3090"

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=24576 << 20, used=9000 << 20)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.processes]

    def nvmlDeviceGetProcessUtilization(self, handle, since):
        if not self.samples:
            raise self.NVMLError(self.NVML_ERROR_NOT_FOUND)
        return [SimpleNamespace(pid=p, smUtil=u) for p, u in self.samples]


def test_the_reader_takes_our_processes_memory_and_utilisation(monkeypatch):
    monkeypatch.setattr(slice_status, "_pid_visible", lambda pid: True)
    me = os.getpid()
    nvml = FakeNvml([(me, 1024 << 20), (99999, 8000 << 20)], [(me, 30), (me, 40), (99999, 90)])
    reading = slice_status._read_device(nvml, UUID, {me})
    assert reading == DeviceUsage(UUID, UUID, "NVIDIA GeForce RTX 3090", 24576, 1024, 35)
    idle = slice_status._read_device(FakeNvml([], []), UUID, {me})
    assert (idle.memory_used_mib, idle.utilization_percent) == (0, 0)

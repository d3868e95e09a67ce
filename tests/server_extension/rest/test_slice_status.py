"""``GET ai-console/slice`` in a real jupyter_server (pytest-jupyter): the slice from the
environment the spawner sets, readings through the NVML seam, nothing made up without one, and
the hub's idle verdict from a real (fake) hub over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from tornado import web
from tornado.httpclient import HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from gpu_fraction import keys
from server_extension import slice_status
from server_extension.idle_status import IdleStatus, pick_idle
from server_extension.slice_status import IDLE_SETTING, DeviceUsage, attribute, own_pids

UUID = "GPU-3f2a1b6c-0000-1111-2222-333344445555"
SLICE_ENV = {
    keys.ENV_GPU_TYPE: "RTX3090",
    keys.ENV_GPU_SHARE: "1/4",
    keys.ENV_GPU_MEMORY_MIB: "6144",
    keys.ENV_GPU_DEVICE_MEMORY_MIB: "24576",
    keys.ENV_COMPUTE_MIN: "25",
    keys.ENV_COMPUTE_MAX: "100",
}
SIMULATED_ENV = {**SLICE_ENV, keys.ENV_GPU_SIMULATED: "true", "CUDA_VISIBLE_DEVICES": ""}
HUB_VARS = ["JUPYTERHUB_API_URL", "JUPYTERHUB_SERVER_NAME"]
ALL_VARS = [
    *SLICE_ENV,
    keys.ENV_GPU_SIMULATED,
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    *HUB_VARS,
]
#: The server's own hub token (JUPYTERHUB_API_TOKEN), as the extension is configured with it.
TOKEN = "server-token-of-student1"


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {"jpserver_extensions": {"server_extension": True}},
        "AiConsoleExtension": {"hub_token": TOKEN},
    }


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
    assert get_slice(jp_fetch, jp_asyncio_loop) == {"gpu": None, "idle": None}


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
            "readings_from": None,
        },
        "idle": None,  # no hub to ask
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
    assert gpu["readings_from"] == "nvml"
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


# --- the hub's idle verdict ----------------------------------------------------------------------


class FakeHub:
    """A real HTTP server answering ``GET /hub/api/ai-console/my-slices`` as the hub would."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.status = 200
        self.answer: dict = {"slices": []}
        self.delay_s = 0.0
        self.server: HTTPServer | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hub/api"

    def start(self) -> None:
        hub = self

        class MySlices(web.RequestHandler):
            async def get(self) -> None:
                hub.requests.append(dict(self.request.headers))
                if hub.delay_s:
                    await asyncio.sleep(hub.delay_s)
                self.set_status(hub.status)
                self.set_header("Content-Type", "application/json")
                self.finish(json.dumps(hub.answer if hub.status == 200 else {"message": "no"}))

        sock, self.port = bind_unused_port()
        self.server = HTTPServer(web.Application([(r"/hub/api/ai-console/my-slices", MySlices)]))
        self.server.add_sockets([sock])


def notebook_slice(server: str = "", idle: int | None = 42, stops: int | None = 8) -> dict:
    return {
        "server": server,
        "kind": "notebook",
        "gpu_type": "RTX3090",
        "share": "1/4",
        "idle_minutes": idle,
        "stops_in_minutes": stops,
    }


@pytest.fixture
def fake_hub(jp_asyncio_loop, environment):
    """The hub, on the server's event loop; the server's environment points at it."""
    hub = FakeHub()

    async def start() -> None:
        hub.start()

    jp_asyncio_loop.run_until_complete(start())
    environment({"JUPYTERHUB_API_URL": hub.api_url})
    yield hub
    assert hub.server is not None
    hub.server.stop()


def without_idle(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "idle"}


def test_an_idle_slice_the_hub_will_stop_says_when(
    jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub
):
    environment(SIMULATED_ENV)
    fake_hub.answer = {"slices": [notebook_slice(idle=42, stops=8)]}
    body = get_slice(jp_fetch, jp_asyncio_loop)
    assert body["idle"] == {"idle_minutes": 42, "stops_in_minutes": 8}
    assert body["gpu"]["type"] == "RTX3090"
    # Asked with the server's own token, as the hub's API wants it.
    [headers] = fake_hub.requests
    assert headers["Authorization"] == f"token {TOKEN}"


def test_an_idle_slice_without_culling_has_no_countdown(
    jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub
):
    environment(SIMULATED_ENV)
    fake_hub.answer = {"slices": [notebook_slice(idle=17, stops=None)]}
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"] == {
        "idle_minutes": 17,
        "stops_in_minutes": None,
    }


def test_a_busy_slice_is_known_not_idle(jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub):
    environment(SIMULATED_ENV)
    fake_hub.answer = {"slices": [notebook_slice(idle=None, stops=None)]}
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"] == {
        "idle_minutes": None,
        "stops_in_minutes": None,
    }


def test_the_entry_is_this_named_servers_own(
    jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub
):
    environment({**SIMULATED_ENV, "JUPYTERHUB_SERVER_NAME": "gpu"})
    fake_hub.answer = {
        "slices": [
            notebook_slice("", idle=90, stops=0),
            {**notebook_slice("gpu", idle=5, stops=25), "kind": "job"},
            notebook_slice("gpu", idle=12, stops=None),
        ]
    }
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"] == {
        "idle_minutes": 12,
        "stops_in_minutes": None,
    }


@pytest.mark.parametrize("status", [403, 404, 500])
def test_a_failing_hub_leaves_idle_unknown_and_the_rest_unchanged(
    jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub, monkeypatch, status
):
    environment(SIMULATED_ENV)
    fake_hub.status = status
    body = get_slice(jp_fetch, jp_asyncio_loop)
    assert len(fake_hub.requests) == 1
    assert body["idle"] is None
    # The same answer as without a hub at all.
    monkeypatch.delenv("JUPYTERHUB_API_URL")
    assert without_idle(body) == slice_status.current_status()


def test_a_slow_or_absent_hub_leaves_idle_unknown(
    jp_serverapp, jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub
):
    environment(SIMULATED_ENV)
    fake_hub.answer = {"slices": [notebook_slice()]}
    fake_hub.delay_s = 1.0
    settings = jp_serverapp.web_app.settings
    settings[IDLE_SETTING] = IdleStatus(fake_hub.api_url, TOKEN, timeout_s=0.2)
    started = time.monotonic()
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"] is None
    assert time.monotonic() - started < 1.0
    # Nothing listening there at all.
    _sock, port = bind_unused_port()
    _sock.close()
    settings[IDLE_SETTING] = IdleStatus(f"http://127.0.0.1:{port}/hub/api", TOKEN)
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"] is None


def test_the_hubs_answer_is_kept_30_seconds(
    jp_serverapp, jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub
):
    environment(SIMULATED_ENV)
    fake_hub.answer = {"slices": [notebook_slice(idle=42, stops=8)]}
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"]["stops_in_minutes"] == 8
    fake_hub.answer = {"slices": [notebook_slice(idle=43, stops=7)]}
    # The Lab polls every 5 s: within 30 s the hub is not asked again.
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"]["stops_in_minutes"] == 8
    assert len(fake_hub.requests) == 1
    # Polls at once (two tabs) share one call.
    both = asyncio.gather(jp_fetch("ai-console", "slice"), jp_fetch("ai-console", "slice"))
    jp_asyncio_loop.run_until_complete(both)
    assert len(fake_hub.requests) == 1
    # 31 s later it is asked again.
    idle = jp_serverapp.web_app.settings[IDLE_SETTING]
    idle._clock = lambda: time.monotonic() + 31
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"]["stops_in_minutes"] == 7
    assert len(fake_hub.requests) == 2


def test_a_failure_is_kept_too(jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub):
    environment(SIMULATED_ENV)
    fake_hub.status = 500
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"] is None
    assert get_slice(jp_fetch, jp_asyncio_loop)["idle"] is None
    assert len(fake_hub.requests) == 1


def test_a_cpu_only_server_does_not_ask_the_hub(
    jp_fetch, jp_asyncio_loop, environment, no_nvml, fake_hub
):
    environment({"CUDA_VISIBLE_DEVICES": ""})
    fake_hub.answer = {"slices": [notebook_slice()]}
    assert get_slice(jp_fetch, jp_asyncio_loop) == {"gpu": None, "idle": None}
    assert fake_hub.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"slices": None},
        {"slices": ["x", None]},
        {"slices": [{**notebook_slice(), "kind": "job"}]},
        {"slices": [notebook_slice("other")]},
        [],
    ],
)
def test_an_answer_without_this_servers_entry_is_unknown(answer):
    assert pick_idle(answer, "") is None


def test_in_a_container_the_node_agents_readings_fill_in(
    jp_fetch, jp_asyncio_loop, environment, monkeypatch, fake_hub
):
    """NVML sees the host's PIDs, so it cannot tell this server's memory: the hub passes on
    what the node agent read of the slice."""
    environment({**SLICE_ENV, keys.ENV_GPU_SIMULATED: "false", "NVIDIA_VISIBLE_DEVICES": UUID})
    unattributed = DeviceUsage(UUID, UUID, "NVIDIA GeForce RTX 3090", 24576, None, None)
    monkeypatch.setattr(slice_status, "read_usage", lambda devices, pids: [unattributed])
    fake_hub.answer = {
        "slices": [{**notebook_slice(idle=None, stops=None), "memory_used_mib": 1229}]
    }
    gpu = get_slice(jp_fetch, jp_asyncio_loop)["gpu"]
    assert (gpu["memory_used_mib"], gpu["memory_cap_mib"]) == (1229, 6144)
    assert gpu["utilization_percent"] is None  # a quarter's own utilisation is not known
    assert gpu["readings_from"] == "node agent"


def test_odd_minutes_are_unknown_or_clamped():
    entry = {**notebook_slice(), "idle_minutes": "42", "stops_in_minutes": -3}
    assert pick_idle({"slices": [entry]}, "") == {"idle_minutes": None, "stops_in_minutes": 0}
    entry = {**notebook_slice(), "server": None, "idle_minutes": 42.7, "stops_in_minutes": True}
    assert pick_idle({"slices": [entry]}, "") == {"idle_minutes": 42, "stops_in_minutes": None}


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

"""An idle notebook on the single-machine hub: its node agent reports no GPU memory held by the
slice, the hub flags it, its user sees the countdown in JupyterLab (status bar and a
notification), and then the hub stops the server through its own API, releasing the slice."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from playwright.sync_api import expect

from gpu_fraction.agent.metrics import AgentMetrics, MetricsServer
from gpu_fraction.agent.sampler import GpuSample, NodeSample
from hub_config.loader import EXAMPLE

from .browser import chromium, log_in, screenshot
from .conftest import ADMIN_PASSWORD, PASSWORD, LocalHub
from .hubclient import HubClient

GPU = "SIM-GPU-gpu-01-0"


def idle_yaml(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    # Flagged after 3 s, stopped after 75 s of idleness (the hub reads its agents every 15 s,
    # the server asks the hub at most every 30 s: the user must see the warning in between).
    data["settings"].update(idle_after_minutes=0.05, stop_idle_after_minutes=1.25)
    path = tmp_path / "ai-console.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_an_idle_notebook_is_flagged_its_user_warned_then_stopped(tmp_path: Path) -> None:
    metrics = AgentMetrics("gpu-01")  # the GPU is there, but no process of the slice holds memory
    metrics.update(NodeSample((GpuSample(0, GPU, "RTX 3090", 24576, 0, 0),)), [], 0)
    agent = MetricsServer(metrics.registry, 0, "127.0.0.1")
    hub = LocalHub(tmp_path, idle_yaml(tmp_path))
    hub.extra_args = ["--agent-url", f"http://127.0.0.1:{agent.port}/metrics"]
    try:
        hub.start()
        student = HubClient(hub.url)
        assert student.login("student1", PASSWORD).status_code == 302
        assert student.spawn("student1", "pytorch-quarter-3090").status_code == 302
        assert student.wait_for_server("student1").get("ready"), hub.logs()[-3000:]

        def flagged() -> dict | None:
            [mine] = student.api("GET", "/ai-console/my-slices").json()["slices"]
            return mine if mine["idle_minutes"] is not None else None

        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            log_in(page, hub.url, "student1", PASSWORD)
            page.goto(f"{hub.url}/user/student1/lab")
            mine = wait_for(flagged, 60, "the slice flagged idle")
            assert (mine["server"], mine["gpu_type"], mine["share"]) == ("", "RTX3090", "1/4")
            # The agent's readings, for a Lab that cannot read NVML itself: nothing held; a
            # quarter's own utilisation cannot be told on a shared GPU.
            assert (mine["memory_used_mib"], mine["utilization_percent"]) == (0, None)
            assert mine["stops_in_minutes"] in (1, 2)  # under 75 s left, rounded up
            # The user is warned in Lab: the status bar counts down, a notification says why.
            label = page.get_by_test_id("ai-console-slice-label")
            expect(label).to_have_attribute("data-idle", "stopping", timeout=45_000)
            expect(label).to_contain_text("stops in")
            expect(page.locator(".Toastify__toast--warning")).to_contain_text(
                "will be stopped", timeout=10_000
            )
            screenshot(page, "lab-idle-warning")
        # Nobody else's slices, whatever the caller asks.
        other = HubClient(hub.url)
        assert other.login("student2", PASSWORD).status_code == 302
        assert other.api("GET", "/ai-console/my-slices").json() == {"slices": []}

        def stopped() -> bool:
            server = student.api("GET", "/users/student1").json()["servers"].get("")
            return not server

        wait_for(stopped, 90, "the idle server stopped")
        admin = HubClient(hub.url)
        assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
        gpus = {g["uuid"]: g for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]}
        assert gpus[GPU]["allocations"] == []  # the slice went back
        assert "stopping student1's server '': its RTX3090 slice was idle" in hub.logs()
    finally:
        hub.stop()
        agent.close()

"""The single-machine hub end to end: `ai-console up`, log in over HTTP, spawn on a simulated
GPU slice, reach the server through the proxy, stop and get the slice back."""

from __future__ import annotations

import psutil
import requests

from .conftest import ADMIN_PASSWORD, PASSWORD, LocalHub
from .hubclient import HubClient


def test_spawn_on_a_simulated_slice_and_stop(local_hub: LocalHub):
    student = HubClient(local_hub.url)
    assert student.login("student1", PASSWORD).status_code == 302
    form = student.spawn_form()
    assert "PyTorch, 1/4 RTX 3090" in form and "free now" in form
    assert "1 x A100" not in form  # a lab profile: not for a cs101 student

    response = student.spawn("student1", "pytorch-quarter-3090")
    assert response.status_code == 302, response.text
    messages = student.progress_messages("student1")
    assert any(m.startswith("Reserved 1/4 of RTX3090 SIM-GPU-gpu-01-0") for m in messages), messages
    assert any("(simulated)" in m for m in messages)
    server = student.wait_for_server("student1")
    assert server.get("ready"), local_hub.logs()[-3000:]

    # The server answers through the proxy: JupyterLab, then its REST API.
    lab = student.open_server("student1")
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    status = student.session.get(f"{local_hub.url}/user/student1/api/status", timeout=30)
    assert status.status_code == 200 and "started" in status.json()

    admin = HubClient(local_hub.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    gpus = {g["uuid"]: g for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]}
    [held] = gpus["SIM-GPU-gpu-01-0"]["allocations"]
    assert held["owner"] == {"kind": "notebook", "user": "student1", "project": "cs101", "name": ""}
    assert held["committed"] is True and held["fraction"] == "1/4"
    capacity = student.api("GET", "/ai-console/capacity").json()
    assert capacity["simulated"] is True
    assert capacity["gpu_types"]["RTX3090"]["1/4"] == 3

    assert student.api("DELETE", "/users/student1/server").status_code in (202, 204)
    student.wait_for_server("student1")
    gpus = {g["uuid"]: g for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]}
    assert gpus["SIM-GPU-gpu-01-0"]["allocations"] == []
    assert gpus["SIM-GPU-gpu-01-0"]["free_memory_mib"] == 24576


def test_students_cannot_reach_the_allocation_api(local_hub: LocalHub):
    student = HubClient(local_hub.url)
    student.login("student2", PASSWORD)
    assert student.api("GET", "/ai-console/allocations").status_code == 403
    refused = student.api(
        "POST",
        "/ai-console/allocations",
        json={"gpu_type": "RTX3090", "fraction": "1/4", "owner": {"user": "student2"}},
    )
    assert refused.status_code == 403
    assert student.api("POST", "/ai-console/allocations/any-id/commit").status_code == 403
    assert student.api("DELETE", "/ai-console/allocations/any-id").status_code == 403
    anonymous = HubClient(local_hub.url)
    assert anonymous.api("GET", "/ai-console/capacity").status_code == 403


def test_hub_restart_keeps_the_running_servers_slice(local_hub: LocalHub):
    student = HubClient(local_hub.url)
    student.login("student2", PASSWORD)
    student.spawn("student2", "pytorch-half-3090")
    assert student.wait_for_server("student2").get("ready"), local_hub.logs()[-3000:]

    hub = psutil.Process(local_hub.process.pid)
    [jobs_service] = [p for p in hub.children() if "server_extension.jobs" in " ".join(p.cmdline())]
    local_hub.kill_hub_only()  # the server process lives on, as after a hub crash
    # Its jobs service goes with it: left running, it would dispatch beside the next hub's.
    jobs_service.wait(timeout=15)
    local_hub.start()

    admin = HubClient(local_hub.url)
    admin.login("admin", ADMIN_PASSWORD)
    # The slice comes back from the spawner's saved state once the hub polls the server.
    gpus = {g["uuid"]: g for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]}
    [held] = gpus["SIM-GPU-gpu-01-0"]["allocations"]
    assert held["owner"]["user"] == "student2" and held["fraction"] == "1/2"
    capacity = admin.api("GET", "/ai-console/capacity").json()["gpu_types"]["RTX3090"]
    assert capacity["1/2"] == 1  # the other half only

    student = HubClient(local_hub.url)
    student.login("student2", PASSWORD)
    assert student.api("DELETE", "/users/student2/server").status_code in (202, 204)
    student.wait_for_server("student2")
    gpus = {g["uuid"]: g for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]}
    assert gpus["SIM-GPU-gpu-01-0"]["allocations"] == []


def test_course_admins_see_their_courses_slices_and_capacity_needs_a_scope(local_hub: LocalHub):
    """The GPU map for a course admin: every GPU, only their members' slices. The capacity
    endpoint wants the capacity scope every user has, not just any token."""
    for user, profile in (("student1", "pytorch-quarter-3090"), ("researcher", "pytorch-a100")):
        client = HubClient(local_hub.url)
        assert client.login(user, PASSWORD).status_code == 302
        assert client.spawn(user, profile).status_code == 302
        assert client.wait_for_server(user).get("ready"), local_hub.logs()[-3000:]
    teacher = HubClient(local_hub.url)
    assert teacher.login("teacher", PASSWORD).status_code == 302
    seen = teacher.api("GET", "/ai-console/allocations")
    assert seen.status_code == 200, seen.text
    gpus = seen.json()["gpus"]
    assert {g["gpu_type"] for g in gpus} == {"RTX3090", "A100"}  # the whole map
    owners = [a["owner"]["user"] for g in gpus for a in g["allocations"]]
    assert owners == ["student1"]  # researcher's A100 slice is another project's

    student = HubClient(local_hub.url)
    assert student.login("student2", PASSWORD).status_code == 302
    assert student.api("GET", "/ai-console/capacity").status_code == 200
    made = student.api("POST", "/users/student2/tokens", json={"scopes": [], "note": "bare"})
    assert made.status_code == 201, made.text
    bare = {"Authorization": f"token {made.json()['token']}"}
    refused = requests.get(f"{local_hub.url}/hub/api/ai-console/capacity", headers=bare, timeout=30)
    assert refused.status_code == 403, refused.text

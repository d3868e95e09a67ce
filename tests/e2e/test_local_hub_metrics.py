"""/hub/metrics of the single-machine hub: the GPU slice metrics next to JupyterHub's own,
for admins only, following a spawn and a stop."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from .conftest import ADMIN_PASSWORD, PASSWORD, LocalHub
from .hubclient import HubClient

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]
COMMITTED = (("gpu_type", "RTX3090"), ("kind", "notebook"), ("state", "committed"))


def scrape(client: HubClient) -> Series:
    response = client.session.get(f"{client.base}/hub/metrics", timeout=30)
    assert response.status_code == 200, response.text[:500]
    series: Series = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def test_hub_metrics_show_a_spawned_slice(local_hub: LocalHub):
    admin = HubClient(local_hub.url)
    assert admin.login("admin", ADMIN_PASSWORD).status_code == 302
    before = scrape(admin)
    assert "jupyterhub_active_users" in {name for name, _ in before}  # JupyterHub's own
    placed = before.get(("ai_console_allocation_seconds_count", ()), 0.0)

    student = HubClient(local_hub.url)
    assert student.login("student1", PASSWORD).status_code == 302
    # Metrics name every project and GPU type: admins only (read:metrics).
    assert student.session.get(f"{local_hub.url}/hub/metrics", timeout=30).status_code == 403
    anonymous = HubClient(local_hub.url)
    assert anonymous.session.get(f"{local_hub.url}/hub/metrics", timeout=30).status_code == 403

    assert student.spawn("student1", "pytorch-quarter-3090").status_code == 302
    assert student.wait_for_server("student1").get("ready"), local_hub.logs()[-3000:]
    series = scrape(admin)
    assert series[("ai_console_slices", COMMITTED)] == 1
    assert series[("ai_console_project_gpu_in_use", (("project", "cs101"),))] == 0.25
    assert ("ai_console_project_gpu_quota", (("project", "cs101"),)) in series
    assert series[("ai_console_gpu_capacity", (("gpu_type", "RTX3090"),))] == 1
    assert series[("ai_console_gpu_free", (("gpu_type", "RTX3090"),))] == 0.75
    assert series[("ai_console_gpu_free", (("gpu_type", "A100"),))] == 1
    assert series[("ai_console_allocation_seconds_count", ())] == placed + 1

    assert student.api("DELETE", "/users/student1/server").status_code in (202, 204)
    student.wait_for_server("student1")
    # A lab profile is not a cs101 student's: the hub's spawn check refuses it, and counts it.
    refused = (("reason", "not_allowed"),)
    assert series[("ai_console_refusals_total", refused)] == 0
    student.spawn("student1", "pytorch-a100")
    student.wait_for_server("student1")
    series = scrape(admin)
    assert series[("ai_console_refusals_total", refused)] == 1
    assert series[("ai_console_slices", COMMITTED)] == 0
    assert series[("ai_console_project_gpu_in_use", (("project", "cs101"),))] == 0
    assert series[("ai_console_gpu_free", (("gpu_type", "RTX3090"),))] == 1

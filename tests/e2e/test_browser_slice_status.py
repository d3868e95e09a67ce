"""A student in a real browser on the single-machine hub: their server runs on "PyTorch, 1/4 RTX
3090" (a simulated GPU); JupyterLab's status bar shows the slice, clicking it opens the details,
and its link opens the Jobs panel; then the same in Traditional Chinese."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .browser import chromium, log_in, screenshot
from .conftest import PASSWORD, LocalHub
from .jobs_setup import LabUser
from .test_browser_jobs import _put_locale_script

LAB_TIMEOUT_MS = 90_000
LOCALE = Path(__file__).parents[2] / "server_extension/locale/zh_TW/LC_MESSAGES/ai_console.json"


@pytest.fixture
def quarter_gpu_lab(local_hub: LocalHub) -> Iterator[tuple[Page, LabUser]]:
    """student1 on a quarter of the simulated RTX 3090, logged in through the browser."""
    user = LabUser(local_hub, "student1")
    assert user.client.spawn("student1", "pytorch-quarter-3090").status_code == 302
    assert user.client.wait_for_server("student1", timeout=120).get("ready"), local_hub.logs()
    assert user.client.open_server("student1").status_code == 200
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        log_in(page, local_hub.url, "student1", PASSWORD)
        yield page, user


def open_lab(page: Page, hub: LocalHub) -> None:
    page.goto(f"{hub.url}/user/student1/lab")
    page.wait_for_selector("#jp-main-dock-panel", timeout=LAB_TIMEOUT_MS)


def test_the_status_bar_shows_the_slice_and_opens_its_details(
    local_hub: LocalHub, quarter_gpu_lab: tuple[Page, LabUser]
):
    page, user = quarter_gpu_lab
    # What the server says: the slice from its environment, simulated, nothing measured.
    gpu = user.call("GET", "slice").json()["gpu"]
    assert gpu["type"] == "RTX3090" and gpu["share"] == "1/4" and gpu["simulated"] is True
    assert gpu["memory_cap_mib"] == 6144
    assert gpu["memory_used_mib"] is None and gpu["utilization_percent"] is None

    open_lab(page, local_hub)
    item = page.get_by_test_id("ai-console-slice-status")
    expect(item).to_have_text("RTX3090 · 1/4 (simulated)", timeout=30_000)

    item.click()
    panel = page.get_by_test_id("ai-console-slice-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_test_id("ai-console-slice-type")).to_contain_text("RTX3090")
    expect(panel.get_by_test_id("ai-console-slice-share")).to_contain_text("1/4 of one GPU")
    expect(panel.get_by_test_id("ai-console-slice-memory-cap")).to_contain_text("6.0 GiB")
    expect(panel.get_by_test_id("ai-console-slice-memory-used")).to_contain_text(
        "not measured (simulated GPU)"
    )
    expect(panel.get_by_test_id("ai-console-slice-compute")).to_contain_text(
        "25% guaranteed, up to 100%"
    )
    expect(panel).to_contain_text("This GPU is simulated")
    screenshot(page, "lab-slice-status")

    # Its link opens the Jobs panel and closes the popup.
    panel.get_by_test_id("ai-console-slice-open-jobs").click()
    expect(page.get_by_test_id("ai-console-jobs-panel")).to_be_visible(timeout=10_000)
    expect(panel).to_have_count(0)

    # Clicking the item again opens the panel, clicking it once more closes it.
    item.click()
    expect(panel).to_be_visible()
    item.click()
    expect(panel).to_have_count(0)


def test_the_slice_status_speaks_traditional_chinese(
    local_hub: LocalHub, quarter_gpu_lab: tuple[Page, LabUser]
):
    page, _user = quarter_gpu_lab
    open_lab(page, local_hub)
    saved = page.evaluate(_put_locale_script())
    assert saved == 204, saved
    open_lab(page, local_hub)
    locale = json.loads(LOCALE.read_text(encoding="utf-8"))
    label = locale["%1 · %2 (simulated)"][0].replace("%1", "RTX3090").replace("%2", "1/4")
    item = page.get_by_test_id("ai-console-slice-status")
    expect(item).to_have_text(label, timeout=30_000)
    item.click()
    panel = page.get_by_test_id("ai-console-slice-panel")
    expect(panel).to_contain_text(locale["GPU slice"][0])
    expect(panel).to_contain_text(locale["Memory cap"][0])
    expect(panel.get_by_test_id("ai-console-slice-memory-used")).to_contain_text(
        locale["not measured (simulated GPU)"][0]
    )
    expect(panel.get_by_test_id("ai-console-slice-open-jobs")).to_have_text(
        locale["Open the Jobs panel"][0]
    )
    screenshot(page, "lab-slice-status-zh-TW")

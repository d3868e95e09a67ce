"""The spawn form in a real browser tells a student what they could start now: counts within
their course's quota, profiles that cannot start shown disabled with the reason, the project a
profile is charged to (a choice when it fits two), and counts that change while the page is
open as other users take slices."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Locator, Page, expect

from hub_config.loader import EXAMPLE

from .browser import chromium, log_in, screenshot
from .conftest import PASSWORD, LocalHub
from .hubclient import HubClient

HALF, QUARTER, A100 = "pytorch-half-3090", "pytorch-quarter-3090", "pytorch-a100"
ANY_GPU = "pytorch-any-gpu"
#: Longer than a few polls of the form (every 5 s).
LIVE = 30_000


@pytest.fixture
def hub_yaml(tmp_path: Path) -> Path:
    """The shipped example, with cs101's quota cut to 1/2 GPU and student1 also in the lab."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["projects"]["cs101"]["gpu_quota"] = "1/2"
    data["projects"]["vision-lab"]["members"]["users"].append("student1")
    path = tmp_path / "ai-console.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def profile(page: Page, slug: str) -> Locator:
    return page.locator(f'fieldset[data-profile="{slug}"]')


def start(hub: LocalHub, user: str, slug: str) -> HubClient:
    """``user`` starts a server on ``slug`` in their own session, as another browser would."""
    client = HubClient(hub.url)
    assert client.login(user, PASSWORD).status_code == 302
    assert client.spawn(user, slug).status_code == 302
    assert client.wait_for_server(user).get("ready"), hub.logs()[-3000:]
    return client


def test_the_spawn_form_shows_what_a_student_could_start_and_keeps_it_current(
    local_hub: LocalHub,
) -> None:
    with chromium() as browser:
        page = browser.new_page()
        log_in(page, local_hub.url, "student1", PASSWORD)
        page.wait_for_url(re.compile(r".*/hub/spawn.*"))

        # Counts within the quota: the hardware has four 1/4 slices, the course 1/2 GPU left.
        expect(profile(page, QUARTER).locator(".ai-console-note")).to_have_text("2 free now")
        # One project: named. Two: a choice, preselected where most are free.
        expect(profile(page, QUARTER)).to_contain_text("Charged to Intro to Deep Learning")
        select = profile(page, HALF).locator("select.ai-console-project-select")
        expect(select).to_have_value("vision-lab")
        expect(select.locator("option")).to_have_text(
            ["Intro to Deep Learning · 1 free now", "Computer Vision Lab · 2 free now"]
        )
        expect(profile(page, A100).locator(".ai-console-note")).to_have_text("1 free now")
        # A profile of two GPU types says so, and counts the halves free on both.
        either = profile(page, ANY_GPU)
        expect(either.locator(".ai-console-slice")).to_have_text("1/2 of RTX3090 or A100")
        expect(either.locator(".ai-console-note")).to_have_text("4 free now")
        screenshot(page, "spawn-form-counts")

        # While the page stays open, a lab member takes the A100 and a classmate a quarter.
        others = [start(local_hub, "researcher", A100), start(local_hub, "student2", QUARTER)]
        a100 = profile(page, A100)
        expect(a100.locator('input[name="profile"]')).to_be_disabled(timeout=LIVE)
        expect(a100.locator(".ai-console-note")).to_have_text(
            "none free now: all A100 GPUs are taken"
        )
        expect(profile(page, QUARTER).locator(".ai-console-note")).to_have_text("1 free now")
        # Only the RTX3090's free half is left of "RTX3090 or A100".
        expect(either.locator(".ai-console-note")).to_have_text("1 free now")
        course = select.locator('option[value="cs101"]')
        expect(course).to_have_text(
            "Intro to Deep Learning · none free now: course quota used: 1/4 of 1/2 GPU"
        )
        expect(course).to_be_disabled()
        screenshot(page, "spawn-form-live")

        # The same form for a browser that prefers Traditional Chinese: the headings, counts
        # and reasons in zh-TW (the admin's profile and project names as written).
        chinese = browser.new_page(locale="zh-TW")
        log_in(chinese, local_hub.url, "student1", PASSWORD)
        chinese.wait_for_url(re.compile(r".*/hub/spawn.*"))
        expect(chinese.locator("#ai-console-spawn-form > p").first).to_have_text(
            "選擇伺服器要使用的環境："
        )
        expect(profile(chinese, A100).locator(".ai-console-note")).to_have_text(
            "目前無可用：所有 A100 GPU 都已被使用"
        )
        expect(profile(chinese, QUARTER).locator(".ai-console-note")).to_have_text("目前可用 1 個")
        expect(profile(chinese, ANY_GPU).locator(".ai-console-slice")).to_have_text(
            "RTX3090 或 A100 的 1/2"
        )
        half = profile(chinese, HALF).locator('option[value="cs101"]')
        expect(half).to_have_text(
            "Intro to Deep Learning · 目前無可用：課程配額已用 1/2 GPU 中的 1/4"
        )
        screenshot(chinese, "spawn-form-zh-tw")
        chinese.close()

        # The half is charged to the lab.
        profile(page, HALF).locator('input[name="profile"]').check()
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_selector("text=Reserved 1/2 of RTX3090", state="attached", timeout=30000)
        page.wait_for_url(re.compile(r".*/user/student1/lab.*"), timeout=90000)

    student = HubClient(local_hub.url)
    assert student.login("student1", PASSWORD).status_code == 302
    model = student.api("GET", "/users/student1").json()
    assert model["servers"][""]["user_options"] == {"profile": HALF, "project": "vision-lab"}
    servers = zip([*others, student], ["researcher", "student2", "student1"], strict=True)
    for client, user in servers:
        assert client.api("DELETE", f"/users/{user}/server").status_code in (202, 204)

"""The AI Console page on a real hub, in real Chromium: platform admins see every slice,
course admins their course's owners only, students a 403; the bars match the allocator and the
page follows a server stopping without a reload."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from gpu_fraction.agent.metrics import AgentMetrics, MetricsServer
from gpu_fraction.agent.procmap import OwnedProcess, ProcessOwner
from gpu_fraction.agent.sampler import GpuSample, NodeSample
from gpu_fraction.model import Allocation
from hub_config.hub import USAGE_HISTORY_FILE
from spawner.usage_history import UsageHistory
from tests.allocations import allocation

from .browser import chromium, log_in, screenshot
from .conftest import ADMIN_PASSWORD, PASSWORD, LocalHub
from .hubclient import HubClient

QUARTER, HALF = "pytorch-quarter-3090", "pytorch-half-3090"
LIVE = 30_000  # several refreshes of the page (every 5 s)


def login(hub: LocalHub, user: str) -> HubClient:
    client = HubClient(hub.url)
    password = ADMIN_PASSWORD if user == "admin" else PASSWORD
    assert client.login(user, password).status_code == 302
    return client


def start(hub: LocalHub, user: str, slug: str) -> HubClient:
    client = login(hub, user)
    assert client.spawn(user, slug).status_code == 302
    assert client.wait_for_server(user).get("ready"), hub.logs()[-3000:]
    return client


def open_console(page: Page, hub: LocalHub, user: str) -> None:
    log_in(page, hub.url, user, ADMIN_PASSWORD if user == "admin" else PASSWORD)
    page.click("nav >> text=AI Console")  # the navigation bar links to it for admins
    page.wait_for_url("**/hub/ai-console")


def test_the_console_is_for_admins_and_course_admins_see_their_course(local_hub: LocalHub):
    student = start(local_hub, "student1", QUARTER)
    researcher = start(local_hub, "researcher", HALF)
    page_url = f"{local_hub.url}/hub/ai-console"
    # A student: neither the page, nor its data, nor a link to it.
    assert student.session.get(page_url, timeout=30).status_code == 403
    assert student.api("GET", "/ai-console/console").status_code == 403
    home = student.session.get(f"{local_hub.url}/hub/home", timeout=30).text
    assert 'href="/hub/ai-console"' not in home
    # The home page shows the student's own slice, and nobody else's.
    mine = home.split('id="ai-console-my-slices"', 1)[1]
    assert "Your GPU slices" in mine and "RTX3090" in mine and "simulated" in mine
    assert "<td>1/4</td>" in mine and "Intro to Deep Learning" in mine and "1/2" not in mine

    teacher = login(local_hub, "teacher")
    assert teacher.session.get(page_url, timeout=30).status_code == 200
    assert 'href="/hub/ai-console"' in teacher.session.get(f"{local_hub.url}/hub/home").text
    view = teacher.api("GET", "/ai-console/console").json()
    assert [p["slug"] for p in view["projects"]] == ["cs101"]
    shown = [s for n in view["nodes"] for g in n["gpus"] for s in g["slices"]]
    owners = sorted((s["share"], s.get("user")) for s in shown)
    assert owners == [("1/2", None), ("1/4", "student1")]  # the lab's half: no name
    # A token of the course admin's without the gpu-map scope reads nothing.
    made = teacher.api("POST", "/users/teacher/tokens", json={"scopes": [], "note": "bare"})
    assert made.status_code == 201, made.text
    bare = requests.get(
        f"{local_hub.url}/hub/api/ai-console/console",
        headers={"Authorization": f"token {made.json()['token']}"},
        timeout=30,
    )
    assert bare.status_code == 403 and "gpu-map" in bare.json()["message"]

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        open_console(page, local_hub, "admin")
        gpu = page.locator('.gpu[data-uuid="SIM-GPU-gpu-01-0"]')
        expect(gpu.locator(".slice")).to_have_count(2, timeout=LIVE)
        expect(gpu.locator('.slice[data-user="student1"]')).to_contain_text("student1 · notebook")
        expect(gpu.locator('.slice[data-user="researcher"]')).to_have_attribute("data-share", "1/2")
        width = gpu.locator('.slice[data-user="student1"]').bounding_box()["width"]
        bar = gpu.locator(".bar").bounding_box()["width"]
        assert abs(width / bar - 0.25) < 0.02  # the bar is split as the slices are
        expect(gpu.locator(".free")).to_have_text("1/4 free")
        expect(gpu).to_contain_text("simulated")
        expect(page.locator(".ai-console-simulated")).to_be_visible()
        rtx = page.locator(".ai-console-types tbody tr", has_text="RTX3090")
        expect(rtx).to_contain_text("2 x 1/8, 1 x 1/4")
        expect(page.locator('tr[data-project="cs101"]')).to_contain_text("student1 (1/4)")
        expect(page.locator('tr[data-project="vision-lab"]')).to_contain_text("researcher (1/2)")
        screenshot(page, "ai-console-admin")

        # The open page follows the cluster: the researcher stops, the half disappears.
        assert researcher.api("DELETE", "/users/researcher/server").status_code in (202, 204)
        expect(gpu.locator(".slice")).to_have_count(1, timeout=LIVE)
        expect(gpu.locator(".free")).to_have_text("3/4 free")

        course = browser.new_page(viewport={"width": 1280, "height": 900})
        open_console(course, local_hub, "teacher")
        expect(course.locator(".ai-console-projects tbody tr")).to_have_count(1, timeout=LIVE)
        expect(course.locator('.slice[data-user="student1"]')).to_have_count(1)
        screenshot(course, "ai-console-course-admin")
    assert student.api("DELETE", "/users/student1/server").status_code in (202, 204)


def seed_history(hub: LocalHub) -> str:
    """Two days ago: student1 held 1/4 for an hour (cs101), the researcher a whole GPU for two
    (vision-lab); written into the hub's own history file, as a past term's hub left it."""
    day_start = (time.time() // 86400 - 2) * 86400
    clock = {"now": day_start + 9 * 3600}
    history = UsageHistory(
        clock=lambda: clock["now"], db_path=str(hub.data / USAGE_HISTORY_FILE), max_gap=1e9
    )
    held = [
        slice_of("student1", "cs101", "1/4", hours=1),
        slice_of("researcher", "vision-lab", "1", hours=2),
    ]

    def sample(slices: list[Allocation]) -> None:
        # The student's notebook computes; the researcher's GPU sits idle. The agents report
        # the node's RTX 3090 60% busy.
        busy = lambda a: a.owner.user == "student1"  # noqa: E731
        history.record(slices, lambda _id: True, busy, {"RTX3090": [60.0]})

    sample(held)
    clock["now"] += 3600
    sample(held)
    clock["now"] += 3600
    sample([held[1]])
    return time.strftime("%Y-%m-%d", time.gmtime(day_start))


def slice_of(user: str, project: str, fraction: str, hours: int) -> Allocation:
    return allocation(f"{user}-{hours}", user, project, fraction, gpu_uuid="SIM-GPU-gpu-01-0")


def test_gpu_hours_are_plotted_and_downloaded_per_role(local_hub: LocalHub):
    day = seed_history(local_hub)
    student = login(local_hub, "student1")
    csv_url = f"{local_hub.url}/hub/ai-console/usage.csv"
    assert student.session.get(csv_url, timeout=30).status_code == 403
    assert student.api("GET", "/ai-console/usage").status_code == 403

    teacher = login(local_hub, "teacher")
    download = teacher.session.get(csv_url, timeout=30)
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [(r["project"], r["user"], r["gpu_hours"]) for r in rows] == [
        ("cs101", "student1", "0.2500")
    ]
    bad = teacher.session.get(f"{csv_url}?days=1000", timeout=30)
    assert bad.status_code == 400 and "between 1 and 366" in bad.text

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        open_console(page, local_hub, "admin")
        bars = page.locator(f'.ai-console-usage-plot rect[data-day="{day}"]')
        expect(bars).to_have_count(2, timeout=LIVE)
        expect(page.locator(".ai-console-usage-total")).to_have_text("2.25 GPU-hours in all.")
        lab = page.locator(f'rect[data-day="{day}"][data-project="vision-lab"]')
        course = page.locator(f'rect[data-day="{day}"][data-project="cs101"]')
        assert (
            lab.get_attribute("data-hours") == "2" and course.get_attribute("data-hours") == "0.25"
        )
        assert lab.bounding_box()["height"] == pytest.approx(
            8 * course.bounding_box()["height"], rel=0.05
        )
        # The researcher's two GPU-hours were measured idle, the student's quarter in use.
        users = page.locator(".ai-console-usage-users tbody tr")
        expect(users.first).to_have_text("researcher2.000%")
        expect(users.nth(1)).to_have_text("student10.25100%")
        expect(page.locator(".ai-console-usage-in-use")).to_have_text(
            "11.1% of the GPU-hours the node agents measured were in use."
        )
        # Per user instead of per project: one bar each, the same heights.
        page.select_option("#ai-console-usage-by", "users")
        mine = page.locator(f'.ai-console-usage-plot rect[data-day="{day}"][data-user="student1"]')
        expect(mine).to_have_attribute("data-hours", "0.25")
        expect(page.locator(".ai-console-usage-plot rect[data-project]")).to_have_count(0)
        dot = page.locator(f'.ai-console-utilization-plot circle[data-day="{day}"]')
        expect(dot).to_have_attribute("data-gpu-type", "RTX3090")
        expect(dot).to_have_attribute("data-percent", "60")
        page.locator(".ai-console-usage-plot").scroll_into_view_if_needed()
        screenshot(page, "ai-console-gpu-hours")
        with page.expect_download() as started:
            page.click("text=Download CSV")
        assert "vision-lab,researcher" in Path(started.value.path()).read_text()
        with page.expect_download() as started:
            page.click("text=Download utilisation CSV")
        hourly = list(csv.DictReader(io.StringIO(Path(started.value.path()).read_text())))
        assert [(r["gpu_type"], r["busy_gpu_hours"]) for r in hourly] == [("RTX3090", "0.6000")] * 2

        # The same page for a reader of Traditional Chinese: our texts are theirs, the figures
        # the same.
        chinese = browser.new_page(viewport={"width": 1280, "height": 1100}, locale="zh-TW")
        open_console(chinese, local_hub, "teacher")
        expect(chinese.locator(".ai-console-usage-total")).to_have_text("共 0.25 GPU 小時。")
        expect(chinese.locator("#ai-console h2").first).to_have_text("可用容量")
        expect(chinese.locator(".ai-console-status")).to_contain_text("顯示您的專案", timeout=LIVE)
        headings = chinese.locator(".ai-console-usage-users thead")
        expect(headings).to_have_text("使用者GPU 小時使用中")
        assert chinese.evaluate("document.documentElement.lang") == "zh-TW"
        screenshot(chinese, "ai-console-zh-tw")
    student_csv = student.session.get(f"{local_hub.url}/hub/ai-console/utilization.csv")
    assert student_csv.status_code == 403


def test_live_figures_from_a_node_agent_on_the_page(tmp_path: Path):
    """`ai-console up --agent-url`: the page draws what the agent's /metrics says."""
    metrics = AgentMetrics("gpu-01")
    agent = MetricsServer(metrics.registry, 0, "127.0.0.1")
    hub = LocalHub(tmp_path, None)
    hub.extra_args = ["--agent-url", f"http://127.0.0.1:{agent.port}/metrics"]
    try:
        hub.start()
        start(hub, "student1", QUARTER)
        admin = login(hub, "admin")
        gpus = {g["uuid"]: g for g in admin.api("GET", "/ai-console/allocations").json()["gpus"]}
        [held] = gpus["SIM-GPU-gpu-01-0"]["allocations"]
        sample = GpuSample(0, "SIM-GPU-gpu-01-0", "RTX 3090", 24576, 9011, 40)
        owner = ProcessOwner(allocation_id=held["id"], user="student1", kind="notebook")
        metrics.update(NodeSample((sample,)), [OwnedProcess(7, 0, sample.uuid, 4096, owner)], 0)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            open_console(page, hub, "admin")
            gpu = page.locator('.gpu[data-uuid="SIM-GPU-gpu-01-0"]')
            # The hub reads its agents every 15 s; the page refreshes every 5 s.
            expect(gpu.locator(".gpu-live")).to_have_text("40% busy · 8.8/24.0 GiB", timeout=45_000)
            slice_ = gpu.locator('.slice[data-user="student1"]')
            expect(slice_).to_contain_text("student1 · notebook · 1/4 · 4.0 GiB")
            expect(page.locator('.gpu[data-uuid="SIM-GPU-gpu-02-0"] .gpu-live')).to_have_text(
                "no reading"
            )
            screenshot(page, "ai-console-live")
    finally:
        hub.stop()
        agent.close()

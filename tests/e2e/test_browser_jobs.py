"""A researcher in a real browser on the single-machine hub: open a notebook, Run as job with a
parameter, watch it complete in the Jobs panel, read its log, open the executed notebook, re-run
it with an edited parameter; then the same dialog in Traditional Chinese. Screenshots of the
dialogs, the panel and the detail views are kept in the test's folder."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .browser import chromium, log_in, screenshot
from .conftest import PASSWORD, LocalHub
from .jobs_setup import JOBS_YAML, LabUser, notebook

#: Long enough for a kernel to start and run the notebook on a loaded two-core machine.
JOB_TIMEOUT_MS = 120_000
LAB_TIMEOUT_MS = 90_000


@pytest.fixture
def hub_yaml(tmp_path: Path) -> Path:
    config = tmp_path / "ai-console.yaml"
    config.write_text(JOBS_YAML)
    return config


@pytest.fixture
def lab_page(local_hub: LocalHub) -> Iterator[tuple[Page, LabUser]]:
    """student1 logged in through the browser, their server running, a notebook in their home."""
    yield from _lab_page(local_hub, "student1")


@pytest.fixture
def researcher_page(local_hub: LocalHub) -> Iterator[tuple[Page, LabUser]]:
    """The same for the researcher, whose project may run whole-GPU jobs."""
    yield from _lab_page(local_hub, "researcher")


def _lab_page(local_hub: LocalHub, name: str) -> Iterator[tuple[Page, LabUser]]:
    user = LabUser(local_hub, name).start_server()
    user.write(
        "train.ipynb",
        notebook(
            'print(f"trained {epochs} epochs at rate {rate}")',
            parameters="epochs = 1\nrate = 0.5",
        ),
    )
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        log_in(page, local_hub.url, name, PASSWORD)
        yield page, user


def open_notebook(page: Page, hub: LocalHub, path: str, user: str = "student1") -> None:
    page.goto(f"{hub.url}/user/{user}/lab/tree/{path}")
    page.wait_for_selector("#jp-main-dock-panel", timeout=LAB_TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=LAB_TIMEOUT_MS)


def open_run_as_job_dialog(page: Page):
    page.get_by_test_id("ai-console-run-as-job").first.click()
    dialog = page.get_by_test_id("ai-console-dialog")
    # The choices and the notebook's parameters load from the server.
    expect(dialog.get_by_test_id("ai-console-field-flavor")).to_be_visible(timeout=30_000)
    expect(dialog.get_by_test_id("ai-console-field-param-epochs")).to_be_visible()
    return dialog


def test_run_as_job_from_the_notebook_toolbar_to_the_executed_notebook(
    local_hub: LocalHub, lab_page: tuple[Page, LabUser]
):
    page, user = lab_page
    open_notebook(page, local_hub, "train.ipynb")
    dialog = open_run_as_job_dialog(page)

    # Prefilled: the name from the notebook and the time, parameters from the tagged cell.
    name = dialog.get_by_test_id("ai-console-field-name")
    assert re.fullmatch(r"train-\d{4}-\d\d-\d\d_\d{6}", name.input_value())
    epochs = dialog.get_by_test_id("ai-console-field-param-epochs")
    assert epochs.input_value() == "1"

    # A value of the wrong type is refused in the dialog, next to its field.
    epochs.fill("2.5")
    expect(dialog.get_by_test_id("ai-console-field-error-param-epochs")).to_be_visible()
    expect(dialog.get_by_test_id("ai-console-submit")).to_be_disabled()
    epochs.fill("3")
    expect(dialog.get_by_test_id("ai-console-field-error-param-epochs")).to_have_count(0)
    name.fill("train-three-epochs")
    dialog.get_by_test_id("ai-console-field-tags").fill("browser, demo")
    screenshot(page, "run-as-job-dialog")
    dialog.get_by_test_id("ai-console-submit").click()
    expect(dialog).to_have_count(0, timeout=30_000)

    # The Jobs panel lists the job and follows it to completed.
    page.click("li[data-id='ai-console-jobs-panel'], li[title='Jobs']")
    panel = page.get_by_test_id("ai-console-jobs-panel")
    row = panel.get_by_test_id("ai-console-job-row").filter(has_text="train-three-epochs")
    expect(row).to_have_count(1, timeout=30_000)
    expect(row).to_have_attribute("data-status", "COMPLETED", timeout=JOB_TIMEOUT_MS)
    screenshot(page, "jobs-panel")

    # The detail view shows the log with the parameter's effect.
    row.click()
    detail = page.get_by_test_id("ai-console-job-detail").last
    expect(detail.get_by_test_id("ai-console-job-log")).to_contain_text(
        "trained 3 epochs at rate 0.5", timeout=30_000
    )
    screenshot(page, "job-detail")

    # The executed notebook opens in Lab, with the injected parameters and the output.
    detail.get_by_test_id("ai-console-open-output").click()
    output = page.locator(".jp-NotebookPanel:visible")
    expect(output.locator(".jp-OutputArea-output").last).to_contain_text(
        "trained 3 epochs at rate 0.5", timeout=30_000
    )
    current = page.locator("#jp-main-dock-panel .lm-TabBar-tab.jp-mod-current")
    expect(current).to_have_attribute(
        "title", re.compile(r"Path: \.ai-console/jobs/\w+/output\.ipynb")
    )
    screenshot(page, "executed-notebook")

    # Re-run from the detail view: the job's parameters are prefilled, epochs is changed.
    row.click()
    detail.get_by_test_id("ai-console-rerun").click()
    rerun = page.get_by_test_id("ai-console-rerun-dialog")
    rerun_epochs = rerun.get_by_test_id("ai-console-field-param-epochs")
    expect(rerun_epochs).to_have_value("3", timeout=30_000)
    expect(rerun.get_by_test_id("ai-console-field-param-rate")).to_have_value("0.5")
    rerun_name = rerun.get_by_test_id("ai-console-field-name").input_value()
    assert re.fullmatch(r"train-\d{4}-\d\d-\d\d_\d{6}", rerun_name)
    rerun_epochs.fill("4")
    expect(rerun.get_by_test_id("ai-console-submit")).to_be_enabled()
    screenshot(page, "rerun-dialog")
    rerun.get_by_test_id("ai-console-submit").click()
    expect(rerun).to_have_count(0, timeout=30_000)

    # A second row follows the re-run to completed; its log shows the edited parameter.
    expect(panel.get_by_test_id("ai-console-job-row")).to_have_count(2, timeout=30_000)
    rerun_row = panel.get_by_test_id("ai-console-job-row").filter(has_text=rerun_name)
    expect(rerun_row).to_have_attribute("data-status", "COMPLETED", timeout=JOB_TIMEOUT_MS)
    rerun_row.click()
    rerun_detail = page.get_by_test_id("ai-console-job-detail").filter(has_text=rerun_name)
    expect(rerun_detail.get_by_test_id("ai-console-job-log")).to_contain_text(
        "trained 4 epochs at rate 0.5", timeout=30_000
    )
    screenshot(page, "rerun-detail")

    # What the browser showed is what the service recorded.
    jobs = user.call("GET", "jobs").json()["jobs"]
    [job] = [j for j in jobs if j["name"] == "train-three-epochs"]
    assert job["status"] == "COMPLETED"
    assert job["parameters"] == {"epochs": 3, "rate": 0.5}
    assert sorted(job["tags"]) == ["browser", "demo"]
    [rerun_job] = [j for j in jobs if j["name"] == rerun_name]
    assert rerun_job["status"] == "COMPLETED"
    assert rerun_job["parameters"] == {"epochs": 4, "rate": 0.5}
    assert rerun_job["rerun_of"] == job["job_id"]


def test_a_flavor_of_two_gpu_types_leaves_the_type_to_the_allocator(
    local_hub: LocalHub, researcher_page: tuple[Page, LabUser]
):
    page, user = researcher_page
    open_notebook(page, local_hub, "train.ipynb", user="researcher")
    dialog = open_run_as_job_dialog(page)
    dialog.get_by_test_id("ai-console-field-flavor").select_option("8C-32G-1GPU")
    gpu_type = dialog.get_by_test_id("ai-console-field-gpu_type")
    # "Any of them" comes first and is chosen; each type can still be picked by name.
    options = gpu_type.locator("option")
    expect(options.first).to_have_text(re.compile(r"^Any of them \(placed where it fits best"))
    expect(gpu_type).to_have_value("")
    expect(options).to_have_count(3)
    dialog.get_by_test_id("ai-console-field-name").fill("train-any-gpu")
    screenshot(page, "run-as-job-any-gpu-type")
    dialog.get_by_test_id("ai-console-submit").click()
    expect(dialog).to_have_count(0, timeout=30_000)
    [job] = [j for j in user.call("GET", "jobs").json()["jobs"] if j["name"] == "train-any-gpu"]
    assert job["gpu_slice"]["any_type"] is True
    assert job["gpu_slice"]["gpu_type"] in ("RTX3090", "A100")
    assert user.wait(job["job_id"])["status"] == "COMPLETED"


def test_the_dialog_speaks_traditional_chinese(local_hub: LocalHub, lab_page: tuple[Page, LabUser]):
    page, _user = lab_page
    open_notebook(page, local_hub, "train.ipynb")
    # The user picks the language in Lab's settings (what Settings > Language writes).
    saved = page.evaluate(_put_locale_script())
    assert saved == 204, saved
    open_notebook(page, local_hub, "train.ipynb")
    dialog = open_run_as_job_dialog(page)
    locale = json.loads(
        (Path(__file__).parents[2] / "server_extension/locale/zh_TW/LC_MESSAGES/ai_console.json")
        .read_text(encoding="utf-8")
    )  # fmt: skip
    expect(dialog).to_contain_text(locale["Run as job"][0])
    expect(dialog).to_contain_text(locale["Job name"][0])
    expect(dialog).to_contain_text(locale["Parameters"][0])
    dialog.get_by_test_id("ai-console-field-param-epochs").fill("2.5")
    error = dialog.get_by_test_id("ai-console-field-error-param-epochs")
    expect(error).to_be_visible()
    # The refusal is in Chinese too (no ASCII-only message).
    assert re.search(r"[\u4e00-\u9fff]", error.inner_text()), error.inner_text()
    screenshot(page, "run-as-job-dialog-zh-TW")


def _put_locale_script() -> str:
    """A script for the page: PUT the Lab's language setting with the page's XSRF cookie."""
    settings = "/user/student1/lab/api/settings/@jupyterlab/translation-extension:plugin"
    return f"""async () => {{
        const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf='));
        const response = await fetch('{settings}', {{
            method: 'PUT',
            headers: {{
                'X-XSRFToken': xsrf ? xsrf.slice(6) : '',
                'Content-Type': 'application/json'
            }},
            body: JSON.stringify({{raw: JSON.stringify({{locale: 'zh_TW'}})}})
        }});
        return response.status;
    }}"""

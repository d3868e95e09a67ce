"""A student in a real browser: log in, pick "PyTorch, 1/4 RTX 3090" on the spawn form, watch the
placement on the progress page, land in JupyterLab."""

from __future__ import annotations

import re

from .browser import chromium, log_in, screenshot
from .conftest import PASSWORD, LocalHub


def test_student_spawns_a_quarter_gpu_in_the_browser(local_hub: LocalHub):
    with chromium() as browser:
        page = browser.new_page()
        log_in(page, local_hub.url, "student1", PASSWORD)
        page.wait_for_url(re.compile(r".*/hub/spawn.*"))

        # The form lists this student's profiles with how many slices are free now.
        quarter = page.locator("fieldset", has_text="PyTorch, 1/4 RTX 3090")
        assert "4 free now" in quarter.inner_text()
        assert page.locator("fieldset", has_text="1 x A100").count() == 0
        screenshot(page, "spawn-form")
        quarter.locator("input[type=radio]").check()
        page.click("input[type=submit], button[type=submit]")

        # The progress page names the placement, then JupyterLab opens.
        page.wait_for_selector("text=Reserved 1/4 of RTX3090", state="attached", timeout=30000)
        page.wait_for_url(re.compile(r".*/user/student1/lab.*"), timeout=90000)
        page.wait_for_selector("#jp-main-dock-panel", timeout=90000)
        screenshot(page, "lab")
        assert "JupyterLab" in page.title()

"""The report renders in headless Chromium with no console error and no broken image.

Needs Debian's ``chromium`` and the ``playwright`` package (dev extra). Without them
the test is skipped, unless ``BATCHLAB_REQUIRE_BROWSER=1`` (set by CI, which installs
Chromium), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from batchlab.report import write_report

from .conftest import make_results, write_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a closed network: no background requests that would fail noisily.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_or_skip():
    required = os.environ.get("BATCHLAB_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed")
    if CHROMIUM is None:
        if required:
            pytest.fail("BATCHLAB_REQUIRE_BROWSER=1 but no chromium on PATH")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return sync_playwright


def test_report_renders_in_headless_chromium(tmp_path: Path):
    sync_playwright = _browser_or_skip()
    study = write_results(tmp_path / "study", make_results("<script>alert(1)</script>"))
    path = write_report(study)
    console_errors: list[str] = []
    page_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda message: (
                    console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on("dialog", lambda dialog: page_errors.append(f"dialog: {dialog.message}"))
            page.goto(path.resolve().as_uri())
            page.wait_for_function("document.body.dataset.images !== undefined")
            images = int(page.evaluate("document.body.dataset.images"))
            broken = int(page.evaluate("document.body.dataset.brokenImages"))
            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert console_errors == [] and page_errors == []
    assert images >= 10 and broken == 0
    assert screenshot.stat().st_size > 10_000

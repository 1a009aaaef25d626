"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.
Skipped, with the reason, where either is missing; never passed without a browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.report.html import write_report
from harness.store import latest, load_frame

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "results" / "h100.csv", ROOT / "results" / "extra" / "h100-serving-llama-fa3-flashinfer.csv"]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _browser_or_skip():
    executable = os.environ.get("ATTNBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        pytest.skip("no Chromium on this machine (Debian: apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not installed ({exc}); pip install -e '.[test]'")
    return executable, sync_playwright


def test_the_report_opens_offline_shows_the_newest_rows_and_filters(tmp_path):
    executable, sync_playwright = _browser_or_skip()
    frame = load_frame(FILES)
    index = write_report(frame, tmp_path / "report")
    newest = latest(frame)  # the rows table: the newest row of each task; the figures read every row
    errors, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(index.as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg", timeout=30_000)
        box = page.locator("#summary").bounding_box()
        assert box and box["y"] + box["height"] < 1000  # the summary is on the first screen
        assert page.locator("nav a").count() >= 5  # the contents
        rows = page.locator("#results tbody tr")
        assert rows.count() == len(newest) < len(frame)  # one table row per task, older re-runs left to the CSVs
        assert f"{len(frame) - len(newest)} older rows" in page.locator("#rows-h + p").inner_text()
        assert page.locator("#results tbody tr:visible").count() == len(newest)
        page.select_option('select[data-filter="backend"]', "flash-attn3")
        shown = page.locator("#results tbody tr:visible").count()
        assert shown == (newest["backend"] == "flash-attn3").sum() and 0 < shown < len(newest)
        assert page.locator("#shown").inner_text() == f"{shown} rows shown"
        page.select_option('select[data-filter="backend"]', "")
        page.select_option('select[data-filter="mix"]', "")
        assert page.locator("#results tbody tr:visible").count() == len(newest)
        assert page.locator(".plotly-graph-div").count() >= 3  # roofline, speed-up, serving mixes
        from harness.report.tables import winners

        assert page.locator("#winners tbody tr").count() == len(winners(frame)) > 0  # who wins each mix
        failed = page.locator("td.fail").first
        assert failed.get_attribute("title")  # a failed cell carries its reason
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        target = os.environ.get("ATTNBENCH_REPORT_SCREENSHOT")
        if target:
            page.screenshot(path=target, full_page=False)
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert errors == []
    assert [url for url in requests if not url.startswith(("file://", "data:", "blob:"))] == []

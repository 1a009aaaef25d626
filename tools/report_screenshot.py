"""The README's screenshot of the report: `run.py report FILES -o DIR`, opened in headless Chromium.

python3 -m tools.report_screenshot docs/report.png results/h100.csv results/h200.csv results/extra/*.csv
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from harness.html_report import write_report
from harness.options import results_files
from harness.store import load_frame

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def main(out: str, files: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        index = write_report(load_frame(results_files(files)[0]), folder)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(index.as_uri())
            page.wait_for_selector(".plotly-graph-div .main-svg")
            page.screenshot(path=out)
            browser.close()
    print(f"{out}: {Path(out).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

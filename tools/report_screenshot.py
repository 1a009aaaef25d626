"""The README's screenshot of the report: `run.py report FILES -o DIR`, opened in headless Chromium; its first
screen (the summary: which backend to use per GPU and workload class, then the contents).

python3 -m tools.report_screenshot docs/report.png results/
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from harness.options import results_files
from harness.report.html import write_report
from harness.store import labelled, load_frame

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def main(out: str, files: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    kept, notes = results_files(files or ["results"])  # folders, and other CSVs passed over, as run.py report
    for note in notes:
        print(note)
    with tempfile.TemporaryDirectory() as folder:
        index = write_report(labelled(load_frame(kept)), folder)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(index.as_uri())
            page.wait_for_selector(".plotly-graph-div .main-svg", timeout=60_000)
            page.screenshot(path=out)
            browser.close()
    print(f"{out}: {Path(out).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python3 -m tools.report_screenshot OUT.png [RESULTS_CSV_OR_FOLDER ...] (default results/)")
    main(sys.argv[1], sys.argv[2:])

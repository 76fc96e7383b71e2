"""Remake docs/img/report.png and docs/img/demo.png, the README's two screenshots, in headless Chromium.

    .venv/bin/python docs/img/screenshots.py [--chromium /usr/bin/chromium]

The report is `cifarzoo eval --dataset fashion-mnist --split test --report DIR` on the bundled model (torch,
for the Grad-CAM gallery; needs Debian's dataset-fashion-mnist), with the Shirt -> T-shirt/top cell opened.
The demo is `cifarzoo demo` on 127.0.0.1 with examples/test00008_sandal.png uploaded. Needs the dev extra
(playwright, gradio) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
PORT = 7869


def report_screenshot(browser, folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "cifarzoo", "eval", "--dataset", "fashion-mnist", "--split", "test",
         "--backend", "torch", "--device", "cpu", "--report", str(folder)],
        check=True, cwd=ROOT,
    )
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
    page.goto((folder / "index.html").as_uri())
    classes = page.eval_on_selector_all("#per-class tbody td:first-child", "cells => cells.map(c => c.textContent)")
    page.click(f"#confusion td[data-key='{classes.index('Shirt')},{classes.index('T-shirt/top')}']")
    page.click("#per-class th button[data-col='3']")  # sorted by F1, ascending: the hardest classes first
    path = OUT / "report.png"
    bottom = page.locator("#cell-images").bounding_box()
    assert bottom is not None
    # From the headline down to the opened cell's images: the reliability diagram and gallery follow below.
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1280, "height": bottom["y"] + bottom["height"] + 16},
                    full_page=True)
    return path


def demo_screenshot(browser) -> Path:
    server = subprocess.Popen(
        [sys.executable, "-m", "cifarzoo", "demo", "--port", str(PORT), "--device", "cpu"], cwd=ROOT
    )
    try:
        url = f"http://127.0.0.1:{PORT}/"
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url)
        page.set_input_files("#input-image input[type=file]", str(ROOT / "examples" / "test00008_sandal.png"))
        page.wait_for_function(
            "() => { const el = document.querySelector('#top-k [data-testid=\"label-output-value\"]');"
            " return el !== null && el.textContent.trim() === 'Sandal'; }", timeout=60_000,
        )
        page.wait_for_function(
            "Array.from(document.querySelectorAll('#cam img')).some(i => i.complete && i.naturalWidth > 0)"
        )
        page.wait_for_timeout(1500)  # let the bars' transition finish
        path = OUT / "demo.png"
        page.screenshot(path=str(path))
        return path
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as tmp:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True)
        print(report_screenshot(browser, Path(tmp) / "report"))
        print(demo_screenshot(browser))
        browser.close()


if __name__ == "__main__":
    main()

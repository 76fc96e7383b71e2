"""The eval report and the demo in a real browser: Debian's chromium, driven by Playwright.

Playwright's own browser download is not reachable here, so it launches the system's chromium
(``executable_path``); ``make test`` installs it as root. Without Playwright or chromium every test here is
skipped, and the reason is printed in pytest's summary. Every request the pages make is watched: anything
that is not the page itself (a file:// report, the demo on 127.0.0.1) or an inline data:/blob: URL is
aborted and fails the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_demo import EXAMPLES, RIGHT, example_label, free_port, listening_addresses, needs_gradio
from test_html_report import HTML_CLASSES, SCRIPT_CLASS, make_html_names_checkpoint, make_html_names_folder
from typer.testing import CliRunner

from cifarzoo.cli import app
from cifarzoo.engines.html_report import CELL_IMAGES
from cifarzoo.registry import DEFAULT_MODEL, ZOO

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _skip_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not CHROMIUM:
        return ("Debian's chromium is not installed: `make test` installs it when run as root "
                "(apt-get install chromium), or set CHROMIUM=/path/to/chromium")
    return None


SKIP_REASON = _skip_reason()
pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """A page with everything it logged and requested."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def open_page(browser, url: str, allowed: tuple[str, ...]) -> Watched:
    """``url`` in a fresh context; requests outside ``allowed`` prefixes (and data:/blob:) are aborted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watched = Watched(page)
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
    page.on("request", lambda r: watched.requests.append(r.url))

    def guard(route) -> None:
        if route.request.url.startswith((*allowed, "data:", "blob:")):
            route.continue_()
        else:
            watched.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page.goto(url)
    return watched


def image_sizes(page, selector: str = "img") -> list[list[Any]]:
    """``[complete, naturalWidth, src prefix]`` for every image the selector matches, once they settled."""
    page.wait_for_function(
        f"Array.from(document.querySelectorAll({json.dumps(selector)})).every(i => i.complete)", timeout=30_000
    )
    return page.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(selector)}))"
        ".map(i => [i.complete, i.naturalWidth, i.src.slice(0, 15)])"
    )


def column(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#per-class tbody tr", f"rows => rows.map(r => r.cells[{index}].dataset.value)"
    )


# ----------------------------------------------------------------------------------------------------------
# The report


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """``cifarzoo eval --custom-dir DIR --report R`` on a folder whose class and file names hold HTML."""
    base = tmp_path_factory.mktemp("browser-report")
    checkpoint = make_html_names_checkpoint(base / "model")
    folder = make_html_names_folder(base / "images")
    out = base / "report"
    args = ["eval", "--model", str(checkpoint), "--custom-dir", str(folder), "--report", str(out), "--device", "cpu"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["cifarzoo", *args])  # what the page shows as its command line
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "index.html").is_file()
    return out


def test_report_renders_offline_with_no_console_error(browser, report_dir, tmp_path) -> None:
    watched = open_page(browser, (report_dir / "index.html").as_uri(), allowed=("file://",))
    page = watched.page
    for selector in ("#headline", "#per-class", "#confusion", "#reliability-diagram", "#mistakes", "#command"):
        box = page.locator(selector).bounding_box()
        assert box and box["width"] > 0 and box["height"] > 0, selector
    assert page.locator("#reliability-diagram rect.acc").count() > 0
    images = image_sizes(page)
    assert len(images) >= 2 and all(done and width > 0 for done, width, _ in images), images
    assert {src for _, _, src in images} <= {"data:image/png;", "data:image/jpeg"}
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert watched.errors == [] and watched.blocked == []
    assert all(url.startswith(("file://", "data:")) for url in watched.requests), watched.requests


def test_clicking_a_confusion_cell_shows_its_images(browser, report_dir) -> None:
    watched = open_page(browser, (report_dir / "index.html").as_uri(), allowed=("file://",))
    page = watched.page
    cells = page.locator("#confusion td[data-key]")
    assert cells.count() > 0
    for i in range(cells.count()):
        cell = cells.nth(i)
        cell.click()
        count = int(cell.get_attribute("data-count"))
        heading = page.inner_text("#cell-images h3")
        true, pred = map(int, cell.get_attribute("data-key").split(","))
        classes = list(HTML_CLASSES)
        assert heading.startswith(f"true {classes[true]}, predicted {classes[pred]}: {count} image")
        thumbs = image_sizes(page, "#cell-images img")
        assert len(thumbs) == min(count, CELL_IMAGES) and all(width > 0 for _, width, _ in thumbs)
    assert watched.errors == [] and watched.blocked == []


def test_sorting_reorders_the_per_class_table(browser, report_dir) -> None:
    watched = open_page(browser, (report_dir / "index.html").as_uri(), allowed=("file://",))
    page = watched.page
    original = column(page, 0)
    assert original == list(HTML_CLASSES)
    page.click("#per-class th button[data-col='0']")
    by_name = column(page, 0)
    assert by_name == page.evaluate("names => names.slice().sort((a, b) => a.localeCompare(b))", original)
    assert by_name != original  # it moved
    page.click("#per-class th button[data-col='0']")
    assert column(page, 0) == by_name[::-1]
    for col in (1, 2, 3):  # precision, recall, F1: ascending, then descending
        page.click(f"#per-class th button[data-col='{col}']")
        ascending = [float(v) for v in column(page, col)]
        assert ascending == sorted(ascending)
        page.click(f"#per-class th button[data-col='{col}']")
        assert [float(v) for v in column(page, col)] == sorted(ascending, reverse=True)
    assert page.get_attribute("#per-class th:nth-child(4)", "aria-sort") == "descending"
    assert watched.errors == []


def test_html_in_names_shows_as_text_and_runs_nothing(browser, report_dir) -> None:
    watched = open_page(browser, (report_dir / "index.html").as_uri(), allowed=("file://",))
    page = watched.page
    page.locator("#confusion td[data-key]").first.click()
    page.click("#per-class th button[data-col='1']")
    assert page.evaluate("typeof window.__pwned") == "undefined"  # no injected script or handler ran
    names = page.eval_on_selector_all("#per-class tbody tr td:first-child", "cells => cells.map(c => c.textContent)")
    assert sorted(names) == sorted(HTML_CLASSES) and SCRIPT_CLASS in names
    assert page.locator("#per-class img, #confusion img, #confusion script, #per-class script").count() == 0
    assert page.locator("script").count() == 2  # the JSON data and the report's own script
    shown = page.eval_on_selector_all("#mistakes .mistake p:first-of-type", "ps => ps.map(p => p.textContent)")
    assert any("<img src=y" in text or "<i>it<i>" in text for text in shown), shown
    assert watched.errors == [] and watched.blocked == []


# ----------------------------------------------------------------------------------------------------------
# The demo


@pytest.fixture
def quiet_gradio(tmp_path, monkeypatch):
    """Gradio's files under tmp_path, and no telemetry."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return tmp_path


@needs_gradio
def test_demo_in_the_browser_shows_the_right_label(browser, quiet_gradio) -> None:
    from cifarzoo.engines.demo import launch_demo

    # What `cifarzoo demo --port N` runs (tests/test_demo.py runs the command itself), here in this process.
    port = free_port()
    server = launch_demo(port=port, device="cpu", block=False)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert listening_addresses(port) == {"127.0.0.1"}  # the default host
        watched = open_page(browser, url, allowed=(url,))
        page = watched.page
        assert page.input_value("#model-picker input") == DEFAULT_MODEL
        assert f"{ZOO[DEFAULT_MODEL].top1:.2f}" in page.inner_text("#model-card")  # its metrics, beside the image
        for example in (EXAMPLES / "test00000_ankle-boot.png", RIGHT[3]):
            page.set_input_files("#input-image input[type=file]", str(example))
            page.wait_for_function(
                "name => { const el = document.querySelector('#top-k [data-testid=\"label-output-value\"]');"
                " return el !== null && el.textContent.trim() === name; }",
                arg=example_label(example), timeout=60_000,
            )
            bars = page.inner_text("#top-k")
            assert bars.count("%") == 5, bars  # the top-5 bars with their percentages
            page.wait_for_function(
                "Array.from(document.querySelectorAll('#cam img')).some(i => i.complete && i.naturalWidth > 0)",
                timeout=60_000,
            )
        page.screenshot(path=str(quiet_gradio / "demo.png"))
        assert watched.errors == [] and watched.blocked == []
        assert all(u.startswith((url, "data:", "blob:")) for u in watched.requests), watched.requests
    finally:
        server.close()

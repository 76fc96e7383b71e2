"""The eval report as one offline HTML page: what it shows, that names are escaped, that it stays light, and
that the ONNX path never imports torch. (tests/test_browser.py opens the same pages in Chromium.)

Everything runs on small generated images and untrained networks, except the ONNX test, which uses the
bundled model on the real Fashion-MNIST images in examples/.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from conftest import run_cli_without_torch
from PIL import Image
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.data.testsets import TestSet, open_testset
from cifarzoo.engines import html_report
from cifarzoo.engines.evaluate import compute_report, evaluate_testset
from cifarzoo.engines.html_report import CELL_IMAGES, GALLERY_MAX, THUMB_SIZE, build_page, write_html_report

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
runner = CliRunner()

# Class names that are markup, with the folder names that match them (a folder name cannot hold "/", and
# folders match classes ignoring case and punctuation).
SCRIPT_CLASS = "<script>window.__pwned = 1</script>"
HTML_CLASSES = {
    SCRIPT_CLASS: "<script>window.__pwned = 1<script>",
    '<img src=x onerror="window.__pwned=2">': '<img src=x onerror="window.__pwned=2">',
    "quote \" and ' & amp": "quote \" and ' & amp",
    "two\nlines": "two\nlines",
}
HTML_FILES = ['<img src=y onerror="window.__pwned=3">', "<i>it<i>", "q\"uo'te", "new\nline"]


# ----------------------------------------------------------------------------------------------------------
# Shared with tests/test_browser.py


def make_html_names_folder(root: Path, seed: int = 0) -> Path:
    """A class folder per HTML class, each with four PNGs whose names hold markup, quotes and newlines, and
    one unreadable file (skipped, with its reason)."""
    rng = np.random.default_rng(seed)
    for folder in HTML_CLASSES.values():
        (root / folder).mkdir(parents=True)
        for name in HTML_FILES:
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / folder / f"{name}.png")
    (root / "two\nlines" / "<broken>.png").write_bytes(b"not a png")
    return root


def make_html_names_checkpoint(directory: Path) -> Path:
    """An untrained resnet26 whose classes are :data:`HTML_CLASSES`, saved as a checkpoint folder."""
    torch.manual_seed(0)
    cifarzoo.create_model("resnet26", classes=list(HTML_CLASSES)).save_pretrained(directory)
    return directory


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""  # the text directly inside, in order, without the children's

    def all(self, tag: str) -> list[Node]:
        found = [self] if self.tag == tag else []
        for child in self.children:
            found += child.all(tag)
        return found

    def by_id(self, element_id: str) -> Node:
        found = [n for n in self.iter() if n.attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def iter(self) -> list[Node]:
        nodes = [self]
        for child in self.children:
            nodes += child.iter()
        return nodes

    def full_text(self) -> str:
        return self.text + "".join(child.full_text() for child in self.children)


class _TreeBuilder(HTMLParser):
    VOID = {"meta", "link", "img", "br", "input", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        node = self.stack[-1]
        if node.children:  # text after a child: keep it with a text node so full_text keeps the order
            node.children.append(Node("#text", {}, text=data))
        else:
            node.text += data


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


def decode_data_uri(uri: str) -> Image.Image:
    match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", uri)
    assert match, uri[:60]
    return Image.open(io.BytesIO(base64.b64decode(match.group(2))))


# ----------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def html_names(tmp_path_factory):
    """(checkpoint folder, images folder, model, test set, report) for the HTML-names set."""
    base = tmp_path_factory.mktemp("html-names")
    checkpoint = make_html_names_checkpoint(base / "model")
    folder = make_html_names_folder(base / "images")
    model = cifarzoo.load(checkpoint, device="cpu")
    testset = open_testset(model.classes, custom_dir=folder)
    report = evaluate_testset(model.logits, model.config.preprocess, testset)
    return checkpoint, folder, model, testset, report


@pytest.fixture(scope="module")
def page_html(html_names, tmp_path_factory) -> str:
    _, _, model, testset, report = html_names
    out = tmp_path_factory.mktemp("report")
    path = write_html_report(report, out, model=model, command=["cifarzoo", "eval", "--custom-dir", "<dir>"],
                             testset=testset)
    assert path == out / "index.html"
    return path.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------
# What the page shows


def test_headline_tables_and_footer_match_the_report(html_names, page_html) -> None:
    _, _, model, _, report = html_names
    doc = parse(page_html)
    assert doc.by_id("n").full_text() == str(report.n) == "16"
    assert doc.by_id("top1").full_text() == f"{report.top1:.2f}%"
    assert doc.by_id("top5").full_text() == f"{report.top5:.2f}%"
    assert doc.by_id("ece").full_text() == f"{report.ece:.4f}"
    assert doc.by_id("skipped-count").full_text() == "1"
    skipped = doc.by_id("skipped").all("td")
    assert skipped[0].full_text().endswith("<broken>.png") and skipped[1].full_text() == report.skipped[0]["reason"]
    # The per-class table: one row per class, its numbers and sort keys from the report.
    rows = doc.by_id("per-class").all("tbody")[0].all("tr")
    assert [r.all("td")[0].full_text() for r in rows] == list(report.classes)
    for row, (name, metrics) in zip(rows, report.per_class.items()):
        cells = row.all("td")
        assert cells[0].attrs["data-value"] == name
        assert [float(c.attrs["data-value"]) for c in cells[1:4]] == [metrics.precision, metrics.recall, metrics.f1]
        assert int(cells[4].full_text()) == metrics.support == 4
    # The confusion matrix: its counts, and a clickable key on every non-empty cell.
    cells = [td for td in doc.by_id("confusion").all("td")]
    assert len(cells) == len(report.classes) ** 2
    counts = [int(td.full_text() or 0) for td in cells]
    assert counts == [c for row in report.confusion for c in row]
    assert all(("data-key" in td.attrs) == bool(count) for td, count in zip(cells, counts))
    # The reliability diagram: one group of bars per non-empty bin.
    assert len(doc.by_id("reliability-diagram").all("g")) == sum(1 for b in report.reliability if b["count"])
    footer = doc.all("footer")[0]
    assert doc.by_id("command").full_text() == "cifarzoo eval --custom-dir '<dir>'"
    assert doc.by_id("version").full_text() == cifarzoo.__version__ and "cifarzoo" in footer.full_text()
    assert doc.by_id("model-name").full_text() == model.config.arch


def test_every_cell_carries_its_images_as_thumbnails(html_names, page_html) -> None:
    _, _, _, _, report = html_names
    doc = parse(page_html)
    data = json.loads(doc.by_id("cell-data").full_text())
    assert data["classes"] == list(report.classes)
    labels, pred = np.asarray(report.labels), np.asarray(report.pred)
    for key, items in data["cells"].items():
        true, predicted = map(int, key.split(","))
        members = {report.ids[i] for i in np.flatnonzero((labels == true) & (pred == predicted))}
        assert 0 < len(items) <= min(CELL_IMAGES, len(members)) and {item["id"] for item in items} <= members
        for item in items:
            with decode_data_uri(item["src"]) as image:
                assert max(image.size) <= THUMB_SIZE
    assert sum(len(items) for items in data["cells"].values()) == report.n  # 16 images, at most 4 per cell


def test_gallery_has_grad_cam_overlays_on_the_torch_backend(html_names, page_html) -> None:
    _, _, _, _, report = html_names
    doc = parse(page_html)
    mistakes = [n for n in doc.by_id("mistakes").iter() if n.attrs.get("class") == "mistake"]
    assert len(mistakes) == min(GALLERY_MAX, len(report.examples)) > 0
    for box, example in zip(mistakes, report.examples):
        image, cam = box.all("img")
        assert image.attrs["alt"] == example.id and cam.attrs["alt"].startswith("Grad-CAM of ")
        with decode_data_uri(image.attrs["src"]) as thumb, decode_data_uri(cam.attrs["src"]) as overlay:
            assert thumb.size == (32, 32) and overlay.size == (96, 96)
            colours = np.unique(np.asarray(overlay.convert("RGB")).reshape(-1, 3), axis=0)
            assert len(colours) > 10  # a heatmap, not a blank square
    assert "Grad-CAM of the predicted class" in doc.by_id("mistakes").full_text()


def test_gallery_is_capped_and_without_the_test_set_only_mistakes_have_pictures(c10_checkpoint) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 40, 40, 3), dtype=np.uint8)  # not the model's size: converted
    model = cifarzoo.load(c10_checkpoint, device="cpu")
    testset = TestSet.from_arrays(images, rng.integers(0, 10, 40), model.classes, name="arrays")
    report = evaluate_testset(model.logits, model.config.preprocess, testset)
    assert len(report.examples) > GALLERY_MAX
    with_set = build_page(report, model=model, testset=testset)
    assert len(with_set.gallery) == GALLERY_MAX
    assert all(len(items) <= CELL_IMAGES for items in with_set.cells.values())
    assert sum(len(items) for items in with_set.cells.values()) == sum(
        min(CELL_IMAGES, c) for row in report.confusion for c in row
    )
    for items in with_set.cells.values():
        with decode_data_uri(items[0]["src"]) as thumb:  # the array's own 40x40 picture, shrunk
            assert thumb.size == (40, 40) or max(thumb.size) <= THUMB_SIZE
    without = build_page(report)  # no test set (and no model: no Grad-CAM to draw again)
    wrong = {f"{e.label},{e.pred}" for e in report.examples}
    assert set(without.cells) == wrong and "most confident mistakes" in without.cells_note


def test_unlabeled_set_gives_a_predictions_page(c10_checkpoint, tmp_path) -> None:
    rng = np.random.default_rng(2)
    model = cifarzoo.load(c10_checkpoint, device="cpu")
    testset = TestSet.from_arrays(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), None, model.classes, "x")
    report = evaluate_testset(model.logits, model.config.preprocess, testset)
    doc = parse(write_html_report(report, tmp_path, model=model).read_text())
    counts = {r.all("td")[0].full_text(): int(r.all("td")[1].full_text()) for r in doc.by_id("predicted").all("tr")[1:]}
    assert sum(counts.values()) == 6 and set(counts) == set(model.classes)
    assert "not recorded" in doc.by_id("command").full_text()
    assert not [n for n in doc.iter() if n.attrs.get("id") in ("confusion", "per-class", "mistakes")]


def test_nan_probabilities_still_give_valid_json_and_svg(tmp_path) -> None:
    logits = np.zeros((6, 3))
    logits[:2] = np.nan  # a broken model
    report = compute_report(logits, np.array([0, 1, 2, 0, 1, 2]), ["a", "b", "c"])
    testset = TestSet.from_arrays(np.full((6, 8, 8, 3), 7, np.uint8), report.labels, report.classes, name="nan")
    report.ids = testset.ids
    html = write_html_report(report, tmp_path, testset=testset).read_text()
    doc = parse(html)
    data = json.loads(doc.by_id("cell-data").full_text(), parse_constant=pytest.fail)  # no NaN in the JSON
    assert None in [item["conf"] for items in data["cells"].values() for item in items]
    assert "nan" not in " ".join(str(n.attrs) for n in doc.by_id("reliability-diagram").iter()).lower()


# ----------------------------------------------------------------------------------------------------------
# Escaping, offline, light


def test_html_in_class_and_file_names_is_text(html_names, page_html) -> None:
    _, _, _, _, report = html_names
    # No name turns into markup: the only elements a name could open are absent, and both scripts are ours.
    for raw in ("<script>window", "<img src=x", "<img src=y", "<i>it"):
        assert raw not in page_html
    doc = parse(page_html)
    scripts = doc.all("script")
    assert [s.attrs.get("type") for s in scripts] == ["application/json", None]
    assert scripts[1].full_text() == (ROOT / "cifarzoo" / "templates" / "report.js").read_text()
    assert "__pwned" not in scripts[1].full_text()
    # ... and every name shows exactly as it is.
    rows = doc.by_id("per-class").all("tbody")[0].all("tr")
    assert [r.all("td")[0].full_text() for r in rows] == list(HTML_CLASSES)
    header = [th.full_text() for th in doc.by_id("confusion").all("thead")[0].all("th")[1:]]
    assert header == list(HTML_CLASSES)
    shown_ids = {n.attrs["alt"] for n in doc.by_id("mistakes").all("img") if not n.attrs["alt"].startswith("Grad")}
    assert shown_ids and shown_ids <= set(report.ids)
    assert any("\n" in i for i in shown_ids) or any('"' in i for i in shown_ids)
    data = json.loads(scripts[0].full_text())
    assert data["classes"] == list(HTML_CLASSES)
    assert "\\u003cscript\\u003e" in page_html and "</script>" not in scripts[0].full_text()


def test_page_fetches_nothing_and_allows_only_its_own_script(page_html) -> None:
    doc = parse(page_html)
    csp = [m.attrs["content"] for m in doc.all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1 and "default-src 'none'" in csp[0] and "img-src data:;" in csp[0]
    assert csp[0] == html_report.content_security_policy(doc.all("script")[1].full_text())
    for node in doc.iter():
        for attr in ("src", "href"):
            if attr in node.attrs:
                assert node.attrs[attr].startswith("data:"), (node.tag, node.attrs[attr][:40])
    assert not re.search(r"url\(|@import|https?://", page_html)


def test_template_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["cifarzoo"]
    assert "templates/*.html" in globs and "templates/*.js" in globs
    assert any(dep.startswith("jinja2") for dep in config["project"]["dependencies"])


# ----------------------------------------------------------------------------------------------------------
# The command line, and the ONNX path


def fm_class_folder(root: Path) -> Path:
    """examples/ (real Fashion-MNIST test images, named after their class) as class folders."""
    for image in sorted(EXAMPLES.glob("*.png")):
        label = image.stem.split("_", 1)[1]
        (root / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / label / image.name)
    return root


def test_eval_report_writes_index_html(html_names, tmp_path, monkeypatch) -> None:
    checkpoint, folder, _, _, _ = html_names
    out = tmp_path / "report"
    args = ["eval", "--model", str(checkpoint), "--custom-dir", str(folder), "--report", str(out)]
    monkeypatch.setattr(sys, "argv", ["/some/bin/cifarzoo", *args])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = parse((out / "index.html").read_text())
    assert doc.by_id("command").full_text().startswith(f"cifarzoo eval --model {checkpoint}")
    assert doc.by_id("n").full_text() == "16" and len(doc.by_id("mistakes").all("img")) > 0


def test_default_eval_report_is_onnx_and_never_imports_torch(tmp_path) -> None:
    from cifarzoo.registry import DEFAULT_MODEL, ZOO

    folder = fm_class_folder(tmp_path / "fm")
    # One deliberately mislabelled image, so that the report has a mistake to show whichever model is the default.
    shutil.copy(EXAMPLES / "test00002_trouser.png", folder / "bag" / "test00002_trouser.png")
    out = tmp_path / "out"
    # `cifarzoo eval --custom-dir DIR --report R`: the bundled default, on ONNX (its folder has model.onnx).
    stdout = run_cli_without_torch(["eval", "--custom-dir", str(folder), "--report", str(out)])
    # The report must agree with what the same model answers through the API on the same backend.
    classes = list(ZOO[DEFAULT_MODEL].dataset.classes)
    squash = {re.sub(r"[^a-z]", "", c.lower()): i for i, c in enumerate(classes)}
    images = sorted(folder.rglob("*.png"))
    answers = cifarzoo.load(DEFAULT_MODEL, device="cpu", backend="onnx").predict(images, topk=1)
    truth = [squash[re.sub(r"[^a-z]", "", image.parent.name)] for image in images]
    predicted = [answer.index for answer in answers]
    wrong = {image.relative_to(folder).with_suffix("").as_posix()
             for image, t, p in zip(images, truth, predicted) if t != p}
    assert "bag/test00002_trouser" in wrong  # the mislabelled trouser (this test's premise)
    top1 = 100 * (len(images) - len(wrong)) / len(images)
    assert stdout.startswith(f"{folder}: n={len(images)}  top-1 {top1:.2f}%")
    doc = parse((out / "index.html").read_text())
    assert doc.by_id("model-name").full_text() == DEFAULT_MODEL
    assert doc.by_id("command").full_text() == f"cifarzoo eval --custom-dir {folder} --report {out}"
    assert "onnx" in [n.full_text() for n in doc.by_id("headline").all("dd")]
    mistakes = doc.by_id("mistakes")
    assert {img.attrs["alt"] for img in mistakes.all("img")} == wrong
    assert "no Grad-CAM" in mistakes.full_text()  # ONNX has no gradients for Grad-CAM
    data = json.loads(doc.by_id("cell-data").full_text())
    assert data["classes"] == classes
    cells = Counter(f"{t},{p}" for t, p in zip(truth, predicted))
    assert {key: len(items) for key, items in data["cells"].items()} == cells  # every image pictured in its cell

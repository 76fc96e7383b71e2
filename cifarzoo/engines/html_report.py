"""An :class:`~cifarzoo.engines.evaluate.EvalReport` as one offline HTML page (``index.html``).

The page shows the headline (model, test set, n, top-1/top-5, ECE, skipped files and why), a per-class table
sortable by each column, the confusion matrix (click a cell to see its images), the reliability diagram, a
gallery of the most confident mistakes (with Grad-CAM overlays when the model is a torch model), and the
command line and cifarzoo version that made it.

It is rendered by Jinja2 from ``cifarzoo/templates/report.html`` with autoescaping on, so file and class
names (which may hold ``<``, quotes or newlines) always show as text. Everything is inside the one file:
images are small data URIs (thumbnails, not the originals; the gallery and each matrix cell are capped),
the reliability diagram is inline SVG, and the only script is the package's ``report.js``, allowed by its
sha256 in the page's Content-Security-Policy, which also forbids every network fetch.

torch is imported only to draw Grad-CAM for a torch model; a report from the ONNX backend never imports it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cifarzoo._version import __version__
from cifarzoo.atomic import atomic_path
from cifarzoo.config import PreprocessConfig
from cifarzoo.data.preprocess import normalize, read_image, to_color_mode
from cifarzoo.data.testsets import TestSet
from cifarzoo.engines.evaluate import EvalReport, MisclassifiedExample
from cifarzoo.errors import CifarzooError, ImageReadError
from cifarzoo.io.layout import REPORT_HTML_NAME
from cifarzoo.runtime.predictor import Predictor

TEMPLATE_NAME = "report.html"
SCRIPT_NAME = "report.js"
GALLERY_MAX = 24  # most confident mistakes shown in the gallery
CELL_IMAGES = 8  # thumbnails kept per confusion-matrix cell ...
CELL_IMAGES_TOTAL = 600  # ... and for the whole matrix, so a 100-class report stays light
THUMB_SIZE = 64  # longest side of a thumbnail, in pixels
CAM_SIZE = 96  # side of a Grad-CAM overlay
LISTED_PROBLEMS = 200  # skipped/ignored files listed on the page; report.json has all of them
NAMED_COLUMNS_MAX = 20  # above this many classes the matrix's columns are headed by class index


# ----------------------------------------------------------------------------------------------------------
# What the page shows, computed here; the template only lays it out.


@dataclass(frozen=True)
class ClassRow:
    """One row of the per-class table."""

    index: int
    name: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass(frozen=True)
class MatrixCell:
    """One confusion-matrix cell: its count, the fraction of its true class, and how many thumbnails it has."""

    true: int
    pred: int
    count: int
    fraction: float
    thumbs: int

    @property
    def key(self) -> str:
        return f"{self.true},{self.pred}"


@dataclass(frozen=True)
class Bar:
    """One reliability bin as SVG geometry (``y`` grows downwards), with its numbers for the tooltip."""

    x: float
    width: float
    acc_y: float
    acc_h: float
    gap_y: float
    gap_h: float
    hist_y: float
    hist_h: float
    lower: float
    upper: float
    count: int
    accuracy: float
    confidence: float


@dataclass(frozen=True)
class GalleryItem:
    """One misclassified image: thumbnail, Grad-CAM overlay (``None`` without a torch model) and caption."""

    id: str
    true: str
    pred: str
    confidence: float
    image: str
    cam: str | None


@dataclass
class ReportPage:
    """Everything :data:`TEMPLATE_NAME` renders. Numbers are percentages for top-1/top-5, fractions for ECE."""

    title: str
    model: str
    backend: str
    testset: str
    labeled: bool
    n: int
    top1: float | None
    top5: float | None
    ece: float | None
    loss: float | None
    tta: str
    skipped: list[dict[str, str]]
    skipped_total: int
    ignored: list[dict[str, str]]
    ignored_total: int
    classes: list[str]
    rows: list[ClassRow]
    matrix: list[list[MatrixCell]]
    named_columns: bool
    cells: dict[str, list[dict[str, Any]]]
    cells_note: str
    bars: list[Bar]
    gallery: list[GalleryItem]
    gallery_note: str
    command: str
    predicted: dict[str, int] = field(default_factory=dict)
    version: str = __version__


# ----------------------------------------------------------------------------------------------------------
# Images: small PNG/JPEG data URIs


def _to_pil(image: np.ndarray) -> Image.Image:
    """A ``(H, W)`` / ``(H, W, 1|3|4)`` uint8 array as a PIL image."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:
        return to_color_mode(Image.fromarray(arr, "RGBA"), "RGB")
    return Image.fromarray(arr)


def data_uri(image: Image.Image | np.ndarray, max_side: int = THUMB_SIZE) -> str:
    """A thumbnail (longest side at most ``max_side``) as a data URI: PNG for images of up to 32x32 pixels
    (the datasets' own size, sharp and tiny), JPEG for larger ones (photos, overlays)."""
    picture = image if isinstance(image, Image.Image) else _to_pil(image)
    if picture.mode not in ("L", "RGB"):
        picture = to_color_mode(picture, "RGB")
    if max(picture.size) > max_side:
        picture = picture.copy()
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if picture.width * picture.height <= 32 * 32:
        picture.save(buffer, format="PNG", optimize=True)
        kind = "png"
    else:
        picture.save(buffer, format="JPEG", quality=85)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _testset_image(testset: TestSet, index: int) -> Image.Image | np.ndarray:
    """Item ``index`` of the test set, decoded (files) or read (arrays); raises :class:`ImageReadError`."""
    if testset.paths is not None:
        return read_image(testset.paths[index])
    assert testset.images is not None
    return np.asarray(testset.images[index])


# ----------------------------------------------------------------------------------------------------------
# The page's parts


def _class_rows(report: EvalReport) -> list[ClassRow]:
    predicted = report.predicted_counts()
    return [
        ClassRow(i, name, m.precision, m.recall, m.f1, m.support, predicted.get(name, 0))
        for i, (name, m) in enumerate(report.per_class.items())
    ]


def _cell_picks(report: EvalReport, per_cell: int) -> dict[tuple[int, int], list[int]]:
    """Positions (into ``report.ids``) of the images each cell shows: the most confident first for mistakes,
    the least confident first for correct predictions (the borderline ones say more)."""
    if report.labels is None or not len(report.pred):
        return {}
    labels = np.asarray(report.labels, dtype=np.int64)
    pred = np.asarray(report.pred, dtype=np.int64)
    confidence = np.asarray(report.confidence, dtype=np.float64)
    k = len(report.classes)
    cell = labels * k + pred
    # Within a cell, ascending order of this key is the order shown.
    order_key = np.where(labels == pred, confidence, -confidence)
    order = np.lexsort((order_key, cell))
    picks: dict[tuple[int, int], list[int]] = {}
    for position in order.tolist():
        key = divmod(int(cell[position]), k)
        chosen = picks.setdefault(key, [])
        if len(chosen) < per_cell:
            chosen.append(position)
    return picks


def _per_cell_limit(report: EvalReport) -> int:
    nonzero = sum(1 for row in report.confusion for count in row if count)
    return max(1, min(CELL_IMAGES, CELL_IMAGES_TOTAL // max(nonzero, 1)))


def _cell_thumbnails(
    report: EvalReport, testset: TestSet | None
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Thumbnails per matrix cell (``"true,pred"`` -> ``[{src, id, conf}]``) and a note on what is shown.

    With the test set, any image can be shown (re-read from its file or array); without it, only the most
    confident mistakes the report kept (``report.examples``) have pictures.
    """
    cells: dict[str, list[dict[str, Any]]] = {}
    if testset is not None and report.ids:
        per_cell = _per_cell_limit(report)
        where = {image_id: i for i, image_id in reversed(list(enumerate(testset.ids)))}
        unreadable = 0
        for (true, pred), positions in _cell_picks(report, per_cell).items():
            items = []
            for position in positions:
                image_id = report.ids[position]
                if image_id not in where:
                    continue
                try:
                    src = data_uri(_testset_image(testset, where[image_id]))
                except ImageReadError:  # changed or removed since it was evaluated
                    unreadable += 1
                    continue
                items.append({"src": src, "id": image_id, "conf": _finite_or_none(report.confidence[position])})
            cells[f"{true},{pred}"] = items
        note = (f"Up to {per_cell} images per cell, at most {THUMB_SIZE} px: mistakes most confident first, "
                f"correct predictions least confident first.")
        if unreadable:
            note += f" {unreadable} could not be read again and are left out."
        return cells, note
    for example in report.examples:
        items = cells.setdefault(f"{example.label},{example.pred}", [])
        if len(items) < CELL_IMAGES:
            conf = _finite_or_none(example.confidence)
            items.append({"src": data_uri(example.image), "id": example.id, "conf": conf})
    return cells, (f"Only the {len(report.examples)} most confident mistakes were kept with their images, so "
                   f"only their cells show pictures (at most {CELL_IMAGES} per cell).")


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN (a broken model's probabilities can be NaN): such a value becomes ``null``."""
    return float(value) if np.isfinite(value) else None


def _matrix(report: EvalReport, cells: dict[str, list[dict[str, Any]]]) -> list[list[MatrixCell]]:
    rows = []
    for i, row in enumerate(report.confusion):
        total = max(sum(row), 1)
        rows.append([MatrixCell(i, j, int(c), c / total, len(cells.get(f"{i},{j}", []))) for j, c in enumerate(row)])
    return rows


# Reliability diagram geometry (SVG user units): the accuracy panel on top, the bins' counts below.
PLOT_LEFT, PLOT_WIDTH = 48.0, 300.0
ACC_TOP, ACC_HEIGHT = 12.0, 240.0
HIST_TOP, HIST_HEIGHT = 276.0, 60.0


def _bars(report: EvalReport) -> list[Bar]:
    bins = report.reliability
    peak = max((b["count"] for b in bins), default=0) or 1
    bars = []
    for b in bins:
        x = PLOT_LEFT + b["lower"] * PLOT_WIDTH
        width = (b["upper"] - b["lower"]) * PLOT_WIDTH
        count = int(b["count"])
        # An empty bin has no bar; a NaN (from NaN probabilities) draws none either, rather than invalid SVG.
        acc = float(np.nan_to_num(b["accuracy"])) if count else 0.0
        conf = float(np.nan_to_num(b["confidence"])) if count else 0.0
        low, high = min(acc, conf), max(acc, conf)
        hist_h = HIST_HEIGHT * count / peak
        bars.append(Bar(
            x=round(x, 2), width=round(width, 2),
            acc_y=round(ACC_TOP + ACC_HEIGHT * (1 - acc), 2), acc_h=round(ACC_HEIGHT * acc, 2),
            gap_y=round(ACC_TOP + ACC_HEIGHT * (1 - high), 2), gap_h=round(ACC_HEIGHT * (high - low), 2),
            hist_y=round(HIST_TOP + HIST_HEIGHT - hist_h, 2), hist_h=round(hist_h, 2),
            lower=float(b["lower"]), upper=float(b["upper"]), count=count, accuracy=acc, confidence=conf,
        ))
    return bars


def _backend_name(model: Predictor | None) -> str:
    if model is None:
        return "-"
    if _torch_module(model) is not None:
        return "torch"
    return model.export_format or type(model).__name__


def _torch_module(model: object) -> Any:
    """The network to run Grad-CAM on when ``model`` is a torch model, else ``None``. torch is looked up in
    ``sys.modules``, never imported: a model can only be a torch module if torch is already loaded."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        return None
    net = getattr(model, "net", model)
    return net if hasattr(net, "forward_features") and hasattr(net, "forward_head") else None


def _cam_overlays(
    model: Predictor | None, examples: Sequence[MisclassifiedExample], cfg: PreprocessConfig | None
) -> list[str | None]:
    """Grad-CAM overlays of the predicted (wrong) class for each example, on a torch model; ``None`` each
    otherwise (ONNX and TorchScript have no gradients to read)."""
    net = _torch_module(model)
    if net is None or cfg is None or not examples:
        return [None] * len(examples)
    import torch

    from cifarzoo.engines.explain import grad_cam, overlay

    device = next(net.parameters()).device
    images = np.stack([example.image for example in examples])
    x = torch.from_numpy(normalize(images, cfg)).to(device)
    result = grad_cam(net, x, [example.pred for example in examples])
    return [
        data_uri(overlay(example.image, heatmap, size=CAM_SIZE), max_side=CAM_SIZE)
        for example, heatmap in zip(examples, result.heatmaps)
    ]


def _gallery(report: EvalReport, model: Predictor | None) -> tuple[list[GalleryItem], str]:
    examples = report.examples[:GALLERY_MAX]
    cfg = model.config.preprocess if model is not None else None
    cams = _cam_overlays(model, examples, cfg)
    items = [
        GalleryItem(e.id, report.classes[e.label], report.classes[e.pred], e.confidence, data_uri(e.image), cam)
        for e, cam in zip(examples, cams)
    ]
    wrong = int((np.asarray(report.pred) != np.asarray(report.labels)).sum()) if report.labels is not None else 0
    note = f"The {len(items)} most confident of {wrong} mistakes"
    if any(cam is not None for cam in cams):
        note += "; beside each, Grad-CAM of the predicted class (where the evidence for the wrong answer lies)"
    elif items:
        note += f"; no Grad-CAM: the {_backend_name(model)} backend has no gradients (use --backend torch)"
    return items, note + "."


def _command_text(command: Sequence[str] | str | None) -> str:
    if command is None:
        return "not recorded (written through the Python API)"
    return command if isinstance(command, str) else shlex.join([str(c) for c in command])


# ----------------------------------------------------------------------------------------------------------
# Rendering


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    # autoescape=True escapes every {{ value }}: file and class names cannot become markup.
    return Environment(
        loader=PackageLoader("cifarzoo", "templates"), autoescape=True, undefined=StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    )


def content_security_policy(script: str) -> str:
    """The page's CSP: no network at all, images only from data URIs, and only ``script`` may run."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
            "base-uri 'none'; form-action 'none'")


def build_page(
    report: EvalReport,
    *,
    model: Predictor | None = None,
    command: Sequence[str] | str | None = None,
    testset: TestSet | None = None,
) -> ReportPage:
    """Compute what the page shows (see :func:`write_html_report` for the arguments)."""
    cells, cells_note = _cell_thumbnails(report, testset) if report.labeled else ({}, "")
    gallery, gallery_note = _gallery(report, model) if report.labeled else ([], "")
    name = (model.config.name or model.config.arch) if model is not None else "-"
    finite = [None if v is None or not np.isfinite(v) else float(v)
              for v in (report.top1, report.top5, report.ece, report.loss)]
    return ReportPage(
        title=f"{name} on {report.name}" if report.name else name,
        model=name,
        backend=_backend_name(model),
        testset=report.name or "-",
        labeled=report.labeled,
        n=report.n,
        top1=finite[0], top5=finite[1], ece=finite[2], loss=finite[3],
        tta=report.tta,
        skipped=report.skipped[:LISTED_PROBLEMS],
        skipped_total=len(report.skipped),
        ignored=report.ignored[:LISTED_PROBLEMS],
        ignored_total=len(report.ignored),
        classes=list(report.classes),
        rows=_class_rows(report) if report.labeled else [],
        matrix=_matrix(report, cells) if report.labeled else [],
        named_columns=len(report.classes) <= NAMED_COLUMNS_MAX,
        cells=cells,
        cells_note=cells_note,
        bars=_bars(report) if report.labeled else [],
        gallery=gallery,
        gallery_note=gallery_note,
        command=_command_text(command),
        predicted=report.predicted_counts(),
    )


def render_page(page: ReportPage) -> str:
    """The HTML text of ``page``, from the package's Jinja2 template (with the package's script inlined)."""
    env = _environment()
    loader = env.loader
    assert loader is not None
    script, _, _ = loader.get_source(env, SCRIPT_NAME)
    return env.get_template(TEMPLATE_NAME).render(page=page, script=script, csp=content_security_policy(script))


def write_html_report(
    report: EvalReport,
    folder: str | os.PathLike,
    *,
    model: Predictor | None = None,
    command: Sequence[str] | str | None = None,
    testset: TestSet | None = None,
) -> Path:
    """Write ``folder/index.html``: the whole report as one page that works offline. Returns its path.

    Args:
        report: what :func:`~cifarzoo.engines.evaluate.evaluate_testset` returned.
        model: the evaluated model, for its name and backend; a torch model also draws Grad-CAM overlays in
            the gallery of mistakes (other backends show the images alone, and torch is never imported).
        command: the command line that made the report (argv, or one string), shown at the bottom.
        testset: the evaluated test set, so that every confusion-matrix cell can show its images; without
            it only the most confident mistakes (``report.examples``) have pictures.
    """
    page = build_page(report, model=model, command=command, testset=testset)
    # Names that came from undecodable bytes are already escaped by display_path; any lone surrogate left
    # (a CSV cell read with surrogateescape) is written as its escape, not refused.
    data = render_page(page).encode("utf-8", "backslashreplace")
    path = Path(folder) / REPORT_HTML_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise CifarzooError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


__all__ = ["GALLERY_MAX", "ReportPage", "build_page", "data_uri", "render_page", "write_html_report"]

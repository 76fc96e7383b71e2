"""An :class:`~cifarzoo.engines.evaluate.EvalReport` as files: JSON, a predictions CSV, and PNGs (confusion
heatmap, reliability diagram, grid of misclassified images).

matplotlib is imported only when a PNG is drawn, and through its object-oriented Agg canvas rather than
pyplot, so drawing never changes the caller's matplotlib backend and needs no display. Every file is written
atomically (temp file, then rename).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

from cifarzoo.atomic import atomic_write_text
from cifarzoo.engines.evaluate import EvalReport
from cifarzoo.engines.figures import new_figure, save_figure
from cifarzoo.engines.html_report import write_html_report
from cifarzoo.io.layout import (
    REPORT_CONFUSION_NAME,
    REPORT_HTML_NAME,
    REPORT_JSON_NAME,
    REPORT_MISCLASSIFIED_NAME,
    REPORT_PREDICTIONS_NAME,
    REPORT_RELIABILITY_NAME,
)
from cifarzoo.runtime.predictor import Predictor

ANNOTATE_MAX_CLASSES = 20  # write the counts into the heatmap cells up to this many classes


# ----------------------------------------------------------------------------------------------------------
# CSV and JSON


def predictions_csv_text(
    report: EvalReport, details: bool = False, *, escape: Callable[[str], str] | None = None
) -> str:
    """``id,label`` rows (a competition submission); ``details`` adds ``prob`` and, when labeled, ``true``.

    ``escape`` is applied to every text cell (ids and labels), for a CSV shown on a terminal rather than
    saved: the files themselves keep every name exact.
    """
    columns = ["id", "label"] + (["prob"] + (["true"] if report.labeled else []) if details else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in report.predictions():
        cells = [f"{row[c]:.6f}" if c == "prob" else str(row[c]) for c in columns]
        writer.writerow([escape(cell) for cell in cells] if escape else cells)
    return buffer.getvalue()


def write_predictions_csv(report: EvalReport, path: str | os.PathLike, details: bool = False) -> Path:
    """:func:`predictions_csv_text` written to ``path``."""
    atomic_write_text(path, predictions_csv_text(report, details))
    return Path(path)


def write_json(report: EvalReport, path: str | os.PathLike) -> Path:
    """``report.json``: :meth:`EvalReport.to_dict`, which has ``None`` for every non-finite number, so the file
    is strict JSON (``allow_nan=False`` makes a stray NaN an error instead of invalid output)."""
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# PNGs


def plot_confusion(report: EvalReport, path: str | os.PathLike) -> Path:
    """A heatmap of the confusion matrix, each row normalised by its class's support (counts written in)."""
    matrix = np.asarray(report.confusion, dtype=np.float64)
    k = len(report.classes)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(24.0, max(5.0, 0.45 * k + 2))
    fig = new_figure(side + 1, side)
    ax = fig.add_subplot()
    image = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    font = max(4, min(9, int(200 / max(k, 1))))
    ax.set_xticks(range(k), report.classes, rotation=90, fontsize=font)
    ax.set_yticks(range(k), report.classes, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{report.name}: top-1 {report.top1:.2f}% (n={report.n})")
    if k <= ANNOTATE_MAX_CLASSES:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, int(count), ha="center", va="center", fontsize=font,
                        color="white" if rows[i, j] > 0.5 else "black")
    return save_figure(fig, path)


def plot_reliability(report: EvalReport, path: str | os.PathLike) -> Path:
    """Accuracy against confidence per bin (the diagonal is perfect calibration), with the bins' support; for a
    calibrated model, the bars are after temperature scaling and a line shows the bins before it."""
    bins = report.reliability
    centers = np.asarray([(b["lower"] + b["upper"]) / 2 for b in bins])
    width = 1.0 / max(len(bins), 1)
    accuracy = np.asarray([b["accuracy"] for b in bins])
    confidence = np.asarray([b["confidence"] for b in bins])
    counts = np.asarray([b["count"] for b in bins])
    fig = new_figure(5.5, 6.5)
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    filled = counts > 0
    ax.bar(centers[filled], accuracy[filled], width=width, edgecolor="black", label="accuracy")
    ax.bar(centers[filled], (confidence - accuracy)[filled], bottom=accuracy[filled], width=width, color="red",
           alpha=0.3, edgecolor="red", label="gap to confidence")
    title = f"{report.name}: ECE {report.ece:.4f}"
    if report.uncalibrated is not None:
        # Before temperature scaling: the same images' accuracy against their uncalibrated confidence.
        before = [b for b in report.reliability_uncalibrated if b["count"] > 0]
        ax.plot([b["confidence"] for b in before], [b["accuracy"] for b in before], "o-", color="tab:orange",
                label=f"before scaling (ECE {report.uncalibrated['ece']:.4f})")
        title = (f"{report.name}: ECE {report.uncalibrated['ece']:.4f} -> {report.ece:.4f} "
                 f"(temperature {report.temperature:.3f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    hist.bar(centers, counts, width=width, edgecolor="black")
    hist.set_xlabel("confidence")
    hist.set_ylabel("images")
    return save_figure(fig, path)


def plot_misclassified(report: EvalReport, path: str | os.PathLike, columns: int = 8) -> Path:
    """The most confident mistakes as a grid: each image titled ``true -> predicted (confidence)``."""
    examples = report.examples
    rows = max(1, -(-len(examples) // columns))
    fig = new_figure(columns * 1.6, rows * 1.8 + 0.4)
    if not examples:
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return save_figure(fig, path)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, example in zip(axes, examples):
        image = example.image[..., 0] if example.image.shape[-1] == 1 else example.image
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        shown_id = example.id if len(example.id) <= 22 else "..." + example.id[-19:]
        ax.set_title(f"{shown_id}\n{report.classes[example.label]} -> {report.classes[example.pred]} "
                     f"({example.confidence:.2f})", fontsize=6)
    fig.suptitle(f"{report.name}: {len(examples)} most confident mistakes", fontsize=9)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------
# The whole folder

# file name -> writer; the plots need labels.
_ALWAYS: Mapping[str, Callable[[EvalReport, Path], Path]] = MappingProxyType(
    {
        REPORT_JSON_NAME: write_json,
        REPORT_PREDICTIONS_NAME: lambda report, path: write_predictions_csv(report, path, details=True),
    }
)
_LABELED: Mapping[str, Callable[[EvalReport, Path], Path]] = MappingProxyType(
    {
        REPORT_CONFUSION_NAME: plot_confusion,
        REPORT_RELIABILITY_NAME: plot_reliability,
        REPORT_MISCLASSIFIED_NAME: plot_misclassified,
    }
)


def report_file_names(labeled: bool = True) -> tuple[str, ...]:
    """The names :func:`write_report` writes into its folder (for a labeled or an unlabeled set), so callers
    can refuse a folder where they would replace an input."""
    return (*_ALWAYS, *(_LABELED if labeled else {}), REPORT_HTML_NAME)


def write_report(
    report: EvalReport,
    folder: str | os.PathLike,
    *,
    model: Predictor | None = None,
    command: Sequence[str] | None = None,
) -> list[Path]:
    """Write ``report.json`` and ``predictions.csv`` (id, label, prob, true), and for a labeled set
    ``confusion.png``, ``reliability.png`` and ``misclassified.png``, into ``folder``, and ``index.html``, the
    whole report as one page (:func:`~cifarzoo.engines.html_report.write_html_report`: ``model`` gives its name
    and, for a torch model, Grad-CAM; ``command`` is shown). Returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writers = {**_ALWAYS, **(_LABELED if report.labeled else {})}
    written = [write(report, folder / name) for name, write in writers.items()]
    return [*written, write_html_report(report, folder, model=model, command=command, testset=report.source)]


__all__ = [
    "predictions_csv_text",
    "plot_confusion",
    "plot_misclassified",
    "plot_reliability",
    "report_file_names",
    "write_json",
    "write_predictions_csv",
    "write_report",
]

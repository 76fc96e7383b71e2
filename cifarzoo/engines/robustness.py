"""Corruption robustness: top-1 under the 15 CIFAR-10-C corruptions at severities 1-5, on any test set.

:func:`evaluate_robustness` streams a :class:`~cifarzoo.data.testsets.TestSet` once: each batch is decoded (and
resized to the model's input size) once, then the clean images and every requested corruption x severity of them
(:func:`~cifarzoo.data.corruptions.corrupt_batch`, before normalisation) go through the network, and only the
correct counts are kept. Memory is one decoded batch plus one corrupted copy of it, whatever the set's size.

Determinism: image ``i`` of the set (its index in the set, whatever the batching, skipped files included) is
corrupted with draws seeded by ``(seed, corruption, severity, i)``, so a seed fixes every number and the batch
size changes none. Run on CIFAR-10's test split, this is CIFAR-10-C (up to the random draws and the deviations
listed in :mod:`cifarzoo.data.corruptions`).

Reported (percentages, like :class:`~cifarzoo.engines.evaluate.EvalReport`): the clean top-1, the top-1 of each
corruption x severity cell, the mean corruption accuracy (mCA, the mean over all cells) and the relative
robustness (mCA / clean top-1, a fraction). numpy only at import; matplotlib only when the heatmap is drawn.
Decoding, skipped-file handling and the progress bar are :mod:`cifarzoo.engines.evaluate`'s own (one decode loop).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cifarzoo.atomic import atomic_write_text
from cifarzoo.config import PreprocessConfig
from cifarzoo.data.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    check_seed,
    corrupt_batch,
    parse_corruptions,
    parse_severities,
)
from cifarzoo.data.preprocess import normalize
from cifarzoo.data.testsets import TestSet
from cifarzoo.data.tta import LogitsFn, check_tta, tta_logits
from cifarzoo.engines.evaluate import _finite_tree, nothing_read_error, readable_batches
from cifarzoo.engines.figures import new_figure, save_figure
from cifarzoo.errors import CifarzooError
from cifarzoo.io.layout import REPORT_ROBUSTNESS_JSON_NAME, REPORT_ROBUSTNESS_NAME


@dataclass
class RobustnessReport:
    """Top-1 (percent) on the clean images and on each corruption x severity of them.

    ``top1[name][severity]`` is a cell; ``corruptions`` and ``severities`` give the grid's order. ``n`` counts the
    images evaluated (each cell saw all of them); ``skipped`` and ``ignored`` are as in an ``EvalReport``.
    """

    name: str
    n: int
    clean_top1: float
    top1: dict[str, dict[int, float]]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    seed: int = 0
    tta: str = "none"
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)

    def grid(self) -> np.ndarray:
        """``(len(corruptions), len(severities))`` top-1 percentages."""
        return np.asarray([[self.top1[c][s] for s in self.severities] for c in self.corruptions], dtype=np.float64)

    def corruption_mean(self, name: str) -> float:
        """The mean top-1 of one corruption over the severities evaluated."""
        return float(np.mean([self.top1[name][s] for s in self.severities]))

    def severity_mean(self, severity: int) -> float:
        """The mean top-1 of one severity over the corruptions evaluated."""
        return float(np.mean([self.top1[c][severity] for c in self.corruptions]))

    @property
    def mean_corruption_accuracy(self) -> float:
        """mCA: the mean top-1 over every corruption x severity cell, in percent."""
        return float(self.grid().mean()) if self.corruptions and self.severities else float("nan")

    @property
    def relative_robustness(self) -> float:
        """mCA / clean top-1 (1.0: the corruptions cost nothing); NaN when the clean top-1 is 0."""
        return self.mean_corruption_accuracy / self.clean_top1 if self.clean_top1 > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; severities become string keys (JSON objects have no integer keys), non-finite
        numbers ``None``."""
        corruptions = {
            "clean_top1": self.clean_top1,
            "mean_corruption_accuracy": self.mean_corruption_accuracy,
            "relative_robustness": self.relative_robustness,
            "seed": self.seed,
            "severities": list(self.severities),
            "names": list(self.corruptions),
            "top1": {c: {str(s): self.top1[c][s] for s in self.severities} for c in self.corruptions},
            "mean_top1": {c: self.corruption_mean(c) for c in self.corruptions},
        }
        data = {
            "name": self.name,
            "n": self.n,
            "tta": self.tta,
            "corruptions": corruptions,
            "skipped": self.skipped,
            "ignored": self.ignored,
        }
        return _finite_tree(data)


def resolve_corruptions(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"``, ``"gaussian_noise,fog"`` or a sequence of names -> the corruptions (one-line error otherwise)."""
    return parse_corruptions(spec if isinstance(spec, str) else ",".join(spec))


def resolve_severities(spec: str | int | Sequence[int]) -> tuple[int, ...]:
    """``"1-5"``, ``3``, ``"1,3"`` or a sequence of levels -> sorted severities (one-line error outside 1-5)."""
    if isinstance(spec, (str, int)):
        return parse_severities(spec)
    return parse_severities(",".join(str(level) for level in spec))


def _contiguous_runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` positions of ``indices`` whose values run without a gap (skipped files cut them)."""
    if len(indices) == 0:
        return []
    cuts = np.flatnonzero(np.diff(indices) != 1) + 1
    bounds = [0, *cuts.tolist(), len(indices)]
    return list(zip(bounds[:-1], bounds[1:]))


def corrupt_indexed(
    images: np.ndarray, indices: np.ndarray, name: str, severity: int, *, seed: int
) -> np.ndarray:
    """:func:`corrupt_batch` of a batch whose image ``k`` is image ``indices[k]`` of the set: each is corrupted as
    at its place in the whole stream, also when skipped files leave gaps in ``indices``."""
    runs = _contiguous_runs(indices)
    if len(runs) == 1:
        return corrupt_batch(images, name, severity, seed=seed, start_index=int(indices[0]))
    parts = [corrupt_batch(images[a:b], name, severity, seed=seed, start_index=int(indices[a])) for a, b in runs]
    return np.concatenate(parts) if parts else images.copy()


def evaluate_robustness(
    logits_fn: LogitsFn,
    cfg: PreprocessConfig,
    testset: TestSet,
    *,
    corruptions: str | Sequence[str] = "all",
    severities: str | int | Sequence[int] = "1-5",
    seed: int = 0,
    batch_size: int = 256,
    tta: str = "none",
    strict: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> RobustnessReport:
    """Top-1 of any backend (normalised float32 NCHW -> logits) on ``testset`` clean and under each corruption x
    severity, applied after the resize to the model's input size and before normalisation.

    Each batch is decoded once and run through the network ``1 + corruptions x severities`` times; only correct
    counts are kept, so memory is bounded by the batch. The set must be labelled. Unreadable files are skipped
    and listed (``strict``: the first is an error), as in :func:`~cifarzoo.engines.evaluate.evaluate_testset`.
    """
    names = resolve_corruptions(corruptions)
    levels = resolve_severities(severities)
    seed = check_seed(seed)
    check_tta(tta)
    if not testset.labeled or testset.labels is None:
        raise CifarzooError(f"{testset.name}: corruption robustness needs labelled images; this set has no labels")
    skipped: list[dict[str, str]] = []
    clean_correct = 0
    correct = np.zeros((len(names), len(levels)), dtype=np.int64)
    n = 0
    for indices, images in readable_batches(testset, cfg, skipped, batch_size=batch_size, workers=workers,
                                            strict=strict, progress=progress):
        labels = testset.labels[indices]
        clean_correct += _correct(logits_fn, images, labels, cfg, tta)
        for i, name in enumerate(names):
            for j, level in enumerate(levels):
                corrupted = corrupt_indexed(images, indices, name, level, seed=seed)
                correct[i, j] += _correct(logits_fn, corrupted, labels, cfg, tta)
        n += len(indices)
    if len(testset) and n == 0:
        raise nothing_read_error(testset, skipped)
    scale = 100.0 / max(n, 1)
    return RobustnessReport(
        name=testset.name,
        n=n,
        clean_top1=clean_correct * scale,
        top1={name: {level: float(correct[i, j] * scale) for j, level in enumerate(levels)}
              for i, name in enumerate(names)},
        corruptions=tuple(names),
        severities=tuple(levels),
        seed=seed,
        tta=tta,
        skipped=skipped,
        ignored=list(testset.ignored),
    )


def _correct(logits_fn: LogitsFn, images: np.ndarray, labels: np.ndarray, cfg: PreprocessConfig, tta: str) -> int:
    logits = tta_logits(logits_fn, normalize(images, cfg), tta)
    return int((np.asarray(logits).argmax(axis=1) == labels).sum())


# ----------------------------------------------------------------------------------------------------------
# Report files


def plot_robustness(report: RobustnessReport, path: str | os.PathLike) -> Path:
    """A heatmap of top-1 per corruption (rows) x severity (columns), with each corruption's mean as a last
    column; the title gives the clean top-1, the mCA and the relative robustness."""
    grid = report.grid()
    means = grid.mean(axis=1, keepdims=True) if grid.size else np.zeros((len(report.corruptions), 1))
    table = np.hstack([grid, means])
    columns = [str(s) for s in report.severities] + ["mean"]
    fig = new_figure(1.1 * len(columns) + 3.2, 0.38 * len(report.corruptions) + 1.8)
    ax = fig.add_subplot()
    image = ax.imshow(table, cmap="viridis", vmin=0.0, vmax=100.0, aspect="auto")
    fig.colorbar(image, ax=ax, label="top-1 (%)")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(report.corruptions)), report.corruptions, fontsize=8)
    ax.axvline(len(report.severities) - 0.5, color="white", linewidth=2)
    ax.set_xlabel("severity")
    for (i, j), value in np.ndenumerate(table):
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                color="black" if value > 60 else "white")
    ax.set_title(
        f"{report.name} (n={report.n}, seed {report.seed}): clean {report.clean_top1:.2f}%, "
        f"mCA {report.mean_corruption_accuracy:.2f}%, relative {report.relative_robustness:.3f}",
        fontsize=9,
    )
    return save_figure(fig, path)


def write_robustness_json(report: RobustnessReport, path: str | os.PathLike) -> Path:
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return Path(path)


def robustness_file_names() -> tuple[str, ...]:
    """The names :func:`write_robustness_report` writes into its folder."""
    return (REPORT_ROBUSTNESS_JSON_NAME, REPORT_ROBUSTNESS_NAME)


def write_robustness_report(report: RobustnessReport, folder: str | os.PathLike) -> list[Path]:
    """``corruptions.json`` (:meth:`RobustnessReport.to_dict`) and ``corruptions.png`` (the heatmap) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_robustness_json(report, folder / REPORT_ROBUSTNESS_JSON_NAME),
        plot_robustness(report, folder / REPORT_ROBUSTNESS_NAME),
    ]


__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "RobustnessReport",
    "check_seed",
    "corrupt_indexed",
    "evaluate_robustness",
    "plot_robustness",
    "resolve_corruptions",
    "resolve_severities",
    "robustness_file_names",
    "write_robustness_report",
]

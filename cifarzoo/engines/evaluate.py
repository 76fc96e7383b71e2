"""Evaluation: one implementation for validation during training, ``cifarzoo eval``, the Python API and the tests.

:func:`compute_report` turns logits and labels into every metric (numpy only). :func:`evaluate_testset`
streams any :class:`~cifarzoo.data.testsets.TestSet` (built-in splits, folders, CSVs, arrays) through any
backend: decoding in a thread pool overlapped with batched inference, bad files skipped and listed, optional
test-time augmentation (:mod:`cifarzoo.data.tta`). Training validates through the same :func:`compute_report`
on logits from the torch runner. Nothing here imports torch, so the ONNX backend evaluates without it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from cifarzoo.config import PreprocessConfig
from cifarzoo.data.preprocess import normalize
from cifarzoo.data.testsets import TestSet
from cifarzoo.data.tta import LogitsFn, check_tta, tta_logits
from cifarzoo.errors import CifarzooError, ImageReadError
from cifarzoo.runtime.predictor import decode_stream

ECE_BINS = 15
MAX_EXAMPLES = 64  # misclassified images kept for the report's grid (the most confident mistakes)


@dataclass
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class MisclassifiedExample:
    """One wrong prediction, kept for the report's image grid."""

    id: str
    image: np.ndarray  # (H, W, C) uint8, as the model saw it before normalisation
    label: int
    pred: int
    confidence: float


@dataclass
class EvalReport:
    """Accuracy report. Percentages for top-1/top-5, a fraction for ECE, mean cross-entropy for ``loss``.

    Probabilities are the model's calibrated ones, ``softmax(logits / temperature)``: ``loss`` (the NLL),
    ``ece``, ``brier``, ``confidence`` and ``reliability`` are measured on them. When the temperature is not
    1, ``uncalibrated`` and ``reliability_uncalibrated`` hold the same measures at temperature 1 (before
    scaling); top-1 and top-5 do not depend on it. ``logits`` are the raw network outputs, kept for fitting.

    ``confusion[i][j]`` counts images of true class ``i`` predicted as ``j``. An unlabeled set
    (``labeled=False``) has predictions only: its metrics are NaN (``None`` in :meth:`to_dict`).
    ``skipped`` lists the files that could not be read (``{path, reason}``), ``ignored`` what was left out on
    purpose (unknown classes under ``ignore_unknown``). ``ids``, ``pred``, ``confidence`` and ``labels`` hold
    the per-image results of the evaluated images, in input order.
    """

    n: int
    top1: float
    top5: float
    loss: float
    ece: float
    classes: tuple[str, ...]
    per_class: dict[str, ClassMetrics]
    confusion: list[list[int]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    labeled: bool = True
    name: str = ""
    tta: str = "none"
    ignored: list[dict[str, str]] = field(default_factory=list)
    reliability: list[dict[str, float]] = field(default_factory=list)
    brier: float = float("nan")
    temperature: float = 1.0
    uncalibrated: dict[str, float] | None = None  # {"ece", "nll", "brier"} at temperature 1
    reliability_uncalibrated: list[dict[str, float]] = field(default_factory=list)
    logits: np.ndarray | None = field(default=None, repr=False, compare=False)
    ids: list[str] = field(default_factory=list, repr=False, compare=False)
    pred: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False, compare=False)
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    labels: np.ndarray | None = field(default=None, repr=False, compare=False)
    examples: list[MisclassifiedExample] = field(default_factory=list, repr=False, compare=False)
    source: TestSet | None = field(default=None, repr=False, compare=False)  # for the HTML report's thumbnails

    def predicted_counts(self) -> dict[str, int]:
        """How many images were predicted as each class."""
        counts = np.bincount(self.pred, minlength=len(self.classes)) if len(self.pred) else [0] * len(self.classes)
        return {name: int(c) for name, c in zip(self.classes, counts)}

    def predictions(self) -> list[dict[str, Any]]:
        """One row per evaluated image: ``id``, predicted ``label``, ``prob``, and ``true`` when labeled."""
        ids = self.ids or [str(i) for i in range(len(self.pred))]  # reports from bare logits have no ids
        rows = []
        for i, (image_id, p, conf) in enumerate(zip(ids, self.pred.tolist(), self.confidence.tolist())):
            row: dict[str, Any] = {"id": image_id, "label": self.classes[p], "prob": conf}
            if self.labels is not None:
                row["true"] = self.classes[int(self.labels[i])]
            rows.append(row)
        return rows

    def calibration_summary(self) -> dict[str, Any] | None:
        """``{"temperature", "before": {ece, nll, brier}, "after": {...}}`` when a temperature was applied."""
        if self.uncalibrated is None:
            return None
        after = {"ece": self.ece, "nll": self.loss, "brier": self.brier}
        return {"temperature": self.temperature, "before": dict(self.uncalibrated), "after": after}

    def to_dict(self, include_predictions: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``include_predictions`` adds the per-image rows. Every non-finite number (NaN
        metrics of an unlabeled set, NaN probabilities from a broken model) becomes ``None``: JSON has no NaN."""
        data = {
            "name": self.name,
            "labeled": self.labeled,
            "n": self.n,
            "top1": _finite(self.top1),
            "top5": _finite(self.top5),
            "loss": _finite(self.loss),
            "ece": _finite(self.ece),
            "brier": _finite(self.brier),
            "calibration": self.calibration_summary(),
            "tta": self.tta,
            "classes": list(self.classes),
            "per_class": {name: vars(m) for name, m in self.per_class.items()},
            "confusion": self.confusion,
            "reliability": self.reliability,
            "predicted_counts": self.predicted_counts(),
            "skipped": self.skipped,
            "ignored": self.ignored,
        }
        if include_predictions:
            data["predictions"] = self.predictions()
        return _finite_tree(data)


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _finite_tree(data: Any) -> Any:
    """``data`` (dicts, lists, numbers) with numpy numbers as Python ones and non-finite floats as ``None``."""
    if isinstance(data, dict):
        return {key: _finite_tree(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite_tree(value) for value in data]
    if isinstance(data, (float, np.floating)):
        return float(data) if np.isfinite(data) else None
    if isinstance(data, np.integer):
        return int(data)
    return data


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature if temperature != 1.0 else logits
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def probability_metrics(log_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """``(pred, confidence, {"ece", "nll", "brier"})`` of ``(N, C)`` log-probabilities against integer labels:
    the expected calibration error (a fraction), the mean negative log-likelihood and the Brier score (the mean
    squared distance from the one-hot label; 0 is perfect, 2 the worst)."""
    n = len(labels)
    pred = log_probs.argmax(axis=1)
    confidence = np.exp(log_probs[np.arange(n), pred])
    probs = np.exp(log_probs)
    probs[np.arange(n), labels] -= 1.0
    measures = {
        "ece": expected_calibration_error(confidence, pred == labels),
        "nll": float(-log_probs[np.arange(n), labels].mean()),
        "brier": float((probs**2).sum(axis=1).mean()),
    }
    return pred, confidence, measures


def compute_report(
    logits: np.ndarray, labels: np.ndarray, classes: Sequence[str], *, temperature: float = 1.0
) -> EvalReport:
    """Every metric from ``(N, C)`` logits and ``(N,)`` integer labels, vectorised; probabilities are
    ``softmax(logits / temperature)`` (the model's calibration, see :class:`~cifarzoo.config.CalibrationConfig`)."""
    raw = np.asarray(logits, dtype=np.float32)
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, num_classes = logits.shape if logits.ndim == 2 else (0, len(classes))
    if n == 0:
        empty = {c: ClassMetrics(0.0, 0.0, 0.0, 0) for c in classes}
        return EvalReport(0, 0.0, 0.0, 0.0, 0.0, tuple(classes), empty, [[0] * len(classes) for _ in classes],
                          labels=np.zeros(0, np.int64))
    log_probs = log_softmax(logits, temperature)
    pred, confidence, measures = probability_metrics(log_probs, labels)
    k = min(5, num_classes)
    topk = np.argpartition(-log_probs, k - 1, axis=1)[:, :k]
    confusion = np.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros(num_classes), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num_classes), where=precision + recall > 0)
    correct = pred == labels
    uncalibrated, reliability_uncalibrated = None, []
    if temperature != 1.0:
        _, raw_confidence, uncalibrated = probability_metrics(log_softmax(logits), labels)
        reliability_uncalibrated = calibration_bins(raw_confidence, correct)
    return EvalReport(
        n=n,
        top1=float(correct.mean() * 100),
        top5=float((topk == labels[:, None]).any(axis=1).mean() * 100),
        loss=measures["nll"],
        ece=measures["ece"],
        brier=measures["brier"],
        temperature=temperature,
        uncalibrated=uncalibrated,
        reliability_uncalibrated=reliability_uncalibrated,
        logits=raw,
        classes=tuple(classes),
        per_class={
            name: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]), int(actual[i]))
            for i, name in enumerate(classes)
        },
        confusion=confusion.tolist(),
        reliability=calibration_bins(confidence, correct),
        pred=pred,
        confidence=confidence,
        labels=labels,
    )


def predictions_report(logits: np.ndarray, classes: Sequence[str], *, temperature: float = 1.0) -> EvalReport:
    """The report of an unlabeled set: predictions and their (calibrated) confidence, no metrics."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1, len(classes))
    log_probs = log_softmax(logits, temperature) if len(logits) else logits
    pred = log_probs.argmax(axis=1) if len(logits) else np.zeros(0, np.int64)
    nan = float("nan")
    return EvalReport(len(logits), nan, nan, nan, nan, tuple(classes), {}, [], labeled=False, pred=pred,
                      confidence=np.exp(log_probs.max(axis=1)) if len(logits) else np.zeros(0))


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the support-weighted gap between accuracy and mean confidence over equal-width confidence bins."""
    which = _bin_index(confidence, bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    return float(np.abs(acc_sum - conf_sum).sum() / max(1, len(confidence)))


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """The reliability diagram's data: per equal-width confidence bin, its range, count, mean confidence and
    accuracy (both 0 for an empty bin)."""
    which = _bin_index(confidence, bins)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    safe = np.maximum(counts, 1)
    return [
        {"lower": i / bins, "upper": (i + 1) / bins, "count": int(counts[i]),
         "confidence": float(conf_sum[i] / safe[i]), "accuracy": float(acc_sum[i] / safe[i])}
        for i in range(bins)
    ]


# ----------------------------------------------------------------------------------------------------------
# The streaming evaluator


class _MistakeKeeper:
    """The ``limit`` most confident misclassified images seen so far: bounded memory for any test set."""

    def __init__(self, limit: int, temperature: float = 1.0):
        self.limit = limit
        self.temperature = temperature
        self.kept: list[MisclassifiedExample] = []

    def add(self, ids: Sequence[str], images: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> None:
        if self.limit <= 0:
            return
        log_probs = log_softmax(logits.astype(np.float64), self.temperature)
        pred = log_probs.argmax(axis=1)
        confidence = np.exp(log_probs.max(axis=1))
        wrong = np.flatnonzero(pred != labels)
        for i in wrong[np.argsort(-confidence[wrong], kind="stable")][: self.limit]:
            self.kept.append(
                MisclassifiedExample(ids[i], images[i].copy(), int(labels[i]), int(pred[i]), float(confidence[i]))
            )
        self.kept.sort(key=lambda e: -e.confidence)
        del self.kept[self.limit :]


def _decoded_batches(
    testset: TestSet, cfg: PreprocessConfig, batch_size: int, workers: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray, list[ImageReadError]]]:
    """``(indices into testset, (n, H, W, C) uint8 images at the model's size, read errors)`` per batch."""
    if testset.images is not None and testset.array_fits(cfg):
        for start in range(0, len(testset), batch_size):
            stop = min(start + batch_size, len(testset))
            yield np.arange(start, stop), testset.array_batch(start, stop), []
        return
    # Files, or arrays in another size or colour mode: decode/convert in the pool, the next batch meanwhile.
    items = testset.paths if testset.paths is not None else testset.iter_arrays()
    empty = np.zeros((0, cfg.input_size, cfg.input_size, cfg.in_chans), np.uint8)
    start = 0
    for chunk, decoded in decode_stream(items, cfg, batch_size, workers):
        good = [i for i, arr in enumerate(decoded) if isinstance(arr, np.ndarray)]
        errors = [arr for arr in decoded if isinstance(arr, ImageReadError)]
        images = np.stack([decoded[i] for i in good]) if good else empty  # type: ignore[misc]
        yield start + np.asarray(good, dtype=np.int64), images, errors
        start += len(chunk)


def readable_batches(
    testset: TestSet,
    cfg: PreprocessConfig,
    skipped: list[dict[str, str]],
    *,
    batch_size: int,
    workers: int | None,
    strict: bool,
    progress: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The one decode loop of every evaluation: ``(indices, uint8 NHWC images)`` per batch of the set's readable
    files, decoded and resized to the model's input. Unreadable files (the set's own listing first) are appended to
    ``skipped`` as ``{"path", "reason"}``, or with ``strict`` the first is a one-line error; ``progress`` shows a
    bar on stderr."""
    if strict and testset.skipped:
        raise _strict_error(testset.skipped[0]["path"], testset.skipped[0]["reason"])
    skipped.extend(testset.skipped)
    bar = _progress_bar(len(testset), progress)
    try:
        for indices, images, errors in _decoded_batches(testset, cfg, batch_size, workers):
            if errors and strict:
                raise _strict_error(errors[0].path, errors[0].reason)
            skipped.extend({"path": e.path, "reason": e.reason} for e in errors)
            if len(indices):
                yield indices, images
            if bar is not None:
                bar.update(len(indices) + len(errors))
    finally:
        if bar is not None:
            bar.close()


def nothing_read_error(testset: TestSet, skipped: list[dict[str, str]]) -> CifarzooError:
    """The one-line error for a non-empty set none of whose files could be read."""
    first = skipped[0] if skipped else {"path": testset.name, "reason": "nothing to read"}
    return CifarzooError(
        f"{testset.name}: none of its {len(testset)} images could be read (first: {first['path']}: {first['reason']})"
    )


def _strict_error(path: str, reason: str) -> CifarzooError:
    return CifarzooError(f"{path}: {reason} (strict mode: an unreadable file is an error)")


def evaluate_testset(
    logits_fn: LogitsFn,
    cfg: PreprocessConfig,
    testset: TestSet,
    *,
    batch_size: int = 256,
    tta: str = "none",
    strict: bool = False,
    progress: bool = False,
    max_examples: int = MAX_EXAMPLES,
    workers: int | None = None,
    temperature: float = 1.0,
) -> EvalReport:
    """Evaluate any backend (a function from normalised float32 NCHW batches to logits) on a test set.

    Files are decoded in a thread pool while the previous batch runs through the network, and only a batch
    of images is held at a time (plus the ``max_examples`` most confident mistakes, for the report's grid).
    Unreadable files are listed in ``skipped`` and the rest evaluated; ``strict`` makes the first one an
    error instead. ``progress`` shows a progress bar with img/s on stderr. An unlabeled set gives a
    predictions-only report. ``temperature`` is the model's calibration (``config.temperature``): probabilities
    are ``softmax(logits / temperature)``.
    """
    check_tta(tta)
    skipped: list[dict[str, str]] = []
    keeper = _MistakeKeeper(max_examples if testset.labeled else 0, temperature)
    logits_parts: list[np.ndarray] = []
    index_parts: list[np.ndarray] = []
    for indices, images in readable_batches(testset, cfg, skipped, batch_size=batch_size, workers=workers,
                                            strict=strict, progress=progress):
        logits = tta_logits(logits_fn, normalize(images, cfg), tta)
        logits_parts.append(logits)
        index_parts.append(indices)
        if testset.labels is not None:
            keeper.add([testset.ids[i] for i in indices], images, logits, testset.labels[indices])
    if len(testset) and not index_parts:
        raise nothing_read_error(testset, skipped)
    num_classes = len(testset.classes)
    logits = np.concatenate(logits_parts) if logits_parts else np.zeros((0, num_classes), np.float32)
    order = np.concatenate(index_parts) if index_parts else np.zeros(0, np.int64)
    if testset.labels is not None:
        report = compute_report(logits, testset.labels[order], testset.classes, temperature=temperature)
    else:
        report = predictions_report(logits, testset.classes, temperature=temperature)
    report.name, report.tta = testset.name, tta
    report.skipped, report.ignored = skipped, list(testset.ignored)
    report.ids = [testset.ids[i] for i in order]
    report.examples = keeper.kept
    report.source = testset
    return report


def _progress_bar(total: int, enabled: bool) -> Any:
    """tqdm on stderr (its rate reads img/s), or ``None``; tqdm is imported only when shown."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="eval", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def evaluate_arrays(
    logits_fn: LogitsFn,
    cfg: PreprocessConfig,
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    batch_size: int = 256,
    tta: str = "none",
) -> EvalReport:
    """Evaluate any backend on ``(N, H, W, C)`` uint8 images already at the model's input size (dataset splits
    are); a thin wrapper over :func:`evaluate_testset`."""
    size = cfg.input_size
    if images.ndim != 4 or images.shape[1:3] != (size, size) or images.shape[3] != cfg.in_chans:
        raise ValueError(f"expected (N, {size}, {size}, {cfg.in_chans}) uint8 images, got {images.shape}")
    testset = TestSet.from_arrays(images, labels, classes, name="arrays")
    return evaluate_testset(logits_fn, cfg, testset, batch_size=batch_size, tta=tta)


__all__ = [
    "ClassMetrics",
    "EvalReport",
    "MisclassifiedExample",
    "calibration_bins",
    "compute_report",
    "evaluate_arrays",
    "evaluate_testset",
    "expected_calibration_error",
    "log_softmax",
    "probability_metrics",
]

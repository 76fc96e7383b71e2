"""Evaluation: one implementation for validation during training, ``cifarzoo eval`` and the tests.

:func:`compute_report` turns logits and labels into every metric (numpy only); :func:`torch_logits` runs a
network over a uint8 image tensor in batches, with optional flip test-time augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

ECE_BINS = 15


@dataclass
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EvalReport:
    """Accuracy report. Percentages for top-1/top-5, a fraction for ECE, mean cross-entropy for ``loss``.

    ``confusion[i][j]`` counts images of true class ``i`` predicted as ``j``.
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "ece": self.ece,
            "classes": list(self.classes),
            "per_class": {name: vars(m) for name, m in self.per_class.items()},
            "confusion": self.confusion,
            "skipped": self.skipped,
        }


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def compute_report(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> EvalReport:
    """Every metric from ``(N, C)`` logits and ``(N,)`` integer labels, vectorised."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, num_classes = logits.shape if logits.ndim == 2 else (0, len(classes))
    if n == 0:
        empty = {c: ClassMetrics(0.0, 0.0, 0.0, 0) for c in classes}
        return EvalReport(0, 0.0, 0.0, 0.0, 0.0, tuple(classes), empty, [[0] * len(classes) for _ in classes])
    log_probs = log_softmax(logits)
    pred = log_probs.argmax(axis=1)
    k = min(5, num_classes)
    topk = np.argpartition(-log_probs, k - 1, axis=1)[:, :k]
    confusion = np.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros(num_classes), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num_classes), where=precision + recall > 0)
    return EvalReport(
        n=n,
        top1=float((pred == labels).mean() * 100),
        top5=float((topk == labels[:, None]).any(axis=1).mean() * 100),
        loss=float(-log_probs[np.arange(n), labels].mean()),
        ece=expected_calibration_error(np.exp(log_probs.max(axis=1)), pred == labels),
        classes=tuple(classes),
        per_class={
            name: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]), int(actual[i]))
            for i, name in enumerate(classes)
        },
        confusion=confusion.tolist(),
    )


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the support-weighted gap between accuracy and mean confidence over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    return float(np.abs(acc_sum - conf_sum).sum() / max(1, len(confidence)))


def torch_logits(module: Any, images: Any, cfg: Any, batch_size: int = 512, tta: str = "none", amp_dtype: Any = None) -> Any:
    """Logits (float32, on the images' device) of ``module`` for a ``(N, C, H, W)`` uint8 tensor.

    Normalisation uses the model config's constants; ``tta="flip"`` averages the logits of each image and its
    mirror. The module is run in eval mode under ``inference_mode``; its mode is restored afterwards.
    """
    import torch

    from cifarzoo.training.augment import normalize

    was_training = module.training
    module.eval()
    device = images.device
    channels_last = next(module.parameters()).is_contiguous(memory_format=torch.channels_last) and images.shape[1] > 1
    outputs = []
    try:
        with torch.inference_mode(), torch.autocast(device.type, amp_dtype or torch.float32, enabled=amp_dtype is not None):
            for chunk in images.split(batch_size):
                x = normalize(chunk, cfg)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits = module(x).float()
                if tta == "flip":
                    logits = (logits + module(x.flip(3)).float()) / 2
                outputs.append(logits)
    finally:
        module.train(was_training)
    return torch.cat(outputs) if outputs else torch.zeros(0, 0, device=device)


def evaluate_arrays(
    logits_fn: Any,
    cfg: Any,
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    batch_size: int = 256,
    tta: str = "none",
) -> EvalReport:
    """Evaluate any backend (a function from float32 NCHW batches to logits) on ``(N, H, W, C)`` uint8 images.

    Images must already be at the model's input size (dataset splits are); normalisation is the model
    config's. ``tta="flip"`` averages each image's logits with its mirror's.
    """
    from cifarzoo.data.preprocess import normalize

    size = cfg.input_size
    if images.ndim != 4 or images.shape[1:3] != (size, size) or images.shape[3] != cfg.in_chans:
        raise ValueError(f"expected (N, {size}, {size}, {cfg.in_chans}) uint8 images, got {images.shape}")
    outputs = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size], cfg)
        logits = np.asarray(logits_fn(x), dtype=np.float32)
        if tta == "flip":
            logits = (logits + np.asarray(logits_fn(np.ascontiguousarray(x[..., ::-1])), dtype=np.float32)) / 2
        outputs.append(logits)
    all_logits = np.concatenate(outputs) if outputs else np.zeros((0, len(classes)), np.float32)
    return compute_report(all_logits, labels, classes)

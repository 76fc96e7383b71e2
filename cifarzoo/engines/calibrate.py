"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

One scalar ``T`` divides the logits before the softmax. It is fitted on a labelled held-out set (the validation
split at the end of training, or any test set with ``cifarzoo calibrate``) by minimising the negative
log-likelihood with L-BFGS. Dividing by a positive scalar never changes the arg-max, so top-1 and top-5 are
exactly unchanged; only the probabilities move. Label smoothing trains under-confident models (``T < 1``
sharpens them), plain cross-entropy over-confident ones (``T > 1``).

Everything here is numpy + scipy: fitting runs on logits from any backend, ONNX included, without torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifarzoo.atomic import atomic_path, atomic_write_text
from cifarzoo.config import CalibrationConfig, ModelConfig
from cifarzoo.engines.evaluate import EvalReport, log_softmax, probability_metrics
from cifarzoo.errors import CifarzooError
from cifarzoo.io.layout import CONFIG_NAME, ONNX_CONFIG_KEY, ONNX_NAME, TORCHSCRIPT_NAME, WEIGHTS_NAME
from cifarzoo.io.resolve import ModelSource

# The files of a model folder that a calibrated copy takes along (the exports carry the config too).
MODEL_FILES = (WEIGHTS_NAME, CONFIG_NAME, ONNX_NAME, TORCHSCRIPT_NAME)

# The search range for T: far wider than any trained network needs (Guo et al. report 1.0-3.0), and bounded
# so that a degenerate set (every image right with margin) cannot push T to 0 or infinity.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
MIN_IMAGES = 100  # fewer labelled images than this fit noise, not the model


@dataclass
class CalibrationResult:
    """What :func:`cifarzoo.calibrate` did: the folder written, the fitted calibration and the report of the set
    it was fitted on (its metrics at the model's previous temperature)."""

    folder: Path
    calibration: CalibrationConfig
    report: EvalReport


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)`` on ``labels``, by L-BFGS over ``log T``.

    The NLL is convex in ``1/T``, so the optimum is unique; the search runs over ``log T`` with the analytic
    gradient ``dNLL/dlogT = -mean(E_p[z] - z_y) / T`` (``z`` the logits, ``p`` the scaled softmax).
    """
    from scipy.optimize import minimize

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"expected (N, C) logits and N labels, got {logits.shape} and {labels.shape}")
    if len(labels) < MIN_IMAGES:
        raise CifarzooError(f"temperature scaling needs at least {MIN_IMAGES} labelled images, got {len(labels)}")
    if not np.isfinite(logits).all():
        raise CifarzooError("the model produced non-finite logits; it cannot be calibrated")
    rows = np.arange(len(labels))

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        temperature = math.exp(float(x[0]))
        log_probs = log_softmax(logits, temperature)
        nll = -log_probs[rows, labels].mean()
        expected = (np.exp(log_probs) * logits).sum(axis=1)
        grad = -(expected - logits[rows, labels]).mean() / temperature
        return float(nll), np.array([grad])

    bounds = [(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))]
    result = minimize(objective, x0=np.zeros(1), jac=True, method="L-BFGS-B", bounds=bounds)
    return float(math.exp(float(result.x[0])))


def calibration_metrics(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> dict[str, float]:
    """``{"ece", "nll", "brier"}`` of ``softmax(logits / temperature)`` against integer ``labels``."""
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64), temperature)
    return probability_metrics(log_probs, np.asarray(labels, dtype=np.int64))[2]


def fit_calibration(logits: np.ndarray, labels: np.ndarray, fitted_on: str) -> CalibrationConfig:
    """Fit the temperature on ``(logits, labels)`` and record it with the ECE and NLL before and after, as
    stored in ``config.json`` (``calibration``). ``fitted_on`` names the set (``fashion-mnist:val``)."""
    labels = np.asarray(labels, dtype=np.int64)
    temperature = round(fit_temperature(logits, labels), 6)  # what config.json stores is what is measured
    before = calibration_metrics(logits, labels)
    after = calibration_metrics(logits, labels, temperature)
    return CalibrationConfig(
        temperature=temperature,
        fitted_on=fitted_on,
        n=len(labels),
        ece_before=round(before["ece"], 6),
        ece_after=round(after["ece"], 6),
        nll_before=round(before["nll"], 6),
        nll_after=round(after["nll"], 6),
    )


def write_calibration(
    source: ModelSource, calibration: CalibrationConfig, out: str | os.PathLike | None = None
) -> Path:
    """Store ``calibration`` with the model: in its folder, or in a copy at ``out``. Returns the folder written.

    ``config.json`` gets the ``calibration`` table, and ``model.onnx``'s embedded config is rewritten to match, so
    the file calibrates on its own too (a TorchScript file in the folder reads ``config.json`` beside it). A
    zoo entry (inside the installed package) or a Hub snapshot (in the HF cache) is never changed in place:
    those need ``out``. ``out`` must be new or empty; nothing is written before every check passed.
    """
    if out is None:
        if source.kind != "folder":
            raise CifarzooError(
                f"{source.ref}: a {source.kind} model is not changed in place; write the calibrated copy with --out DIR"
            )
        folder = source.path
    else:
        folder = Path(out)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise CifarzooError(f"{folder}: already exists and is not empty; choose a new --out folder")
        if source.kind == "file":
            raise CifarzooError(f"{source.ref}: calibrate the model folder this file was exported from")
    config = ModelConfig.load(source.path / CONFIG_NAME).replace(calibration=calibration)
    try:
        if folder != source.path:
            folder.mkdir(parents=True, exist_ok=True)
            for name in MODEL_FILES:
                if (source.path / name).is_file():
                    shutil.copyfile(source.path / name, folder / name)
        if (folder / ONNX_NAME).is_file():
            _restamp_onnx_config(folder / ONNX_NAME, config)
        atomic_write_text(folder / CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise CifarzooError(f"{folder}: cannot write the calibrated model: {exc.strerror or exc}") from None
    return folder


def _restamp_onnx_config(path: Path, config: ModelConfig) -> None:
    """Replace the config embedded in an exported ONNX file (its graph is unchanged), atomically."""
    import onnx

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == ONNX_CONFIG_KEY:
            prop.value = json.dumps(config.to_dict())
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


__all__ = ["CalibrationResult", "calibration_metrics", "fit_calibration", "fit_temperature", "write_calibration"]

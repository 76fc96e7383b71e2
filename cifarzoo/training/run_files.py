"""What a run directory holds, besides the checkpoint: the resumable state, metrics.jsonl and curves.png."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from cifarzoo.atomic import atomic_path
from cifarzoo.engines.compare import load_runs, plot_comparison
from cifarzoo.io.layout import (
    CONFIG_NAME,
    CURVES_NAME,
    METRICS_NAME,
    ONNX_FILES,
    RECIPE_NAME,
    STATE_NAME,
    TORCHSCRIPT_NAME,
    WEIGHTS_NAME,
)
from cifarzoo.io.run_metrics import read_metrics

__all__ = ["STATE_NAME", "RECIPE_NAME", "save_state", "load_state", "append_metrics", "read_metrics",
           "truncate_metrics", "remove_run_files", "plot_curves"]



def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    """The resumable training state, written atomically (temp file, then rename)."""
    with atomic_path(run_dir / STATE_NAME) as tmp:
        torch.save(state, tmp)


def load_state(run_dir: Path) -> dict[str, Any]:
    # weights_only: a state file is plain tensors and numbers; it never needs to run code to load.
    return torch.load(run_dir / STATE_NAME, map_location="cpu", weights_only=True)


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    with open(run_dir / METRICS_NAME, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def remove_run_files(run_dir: Path) -> None:
    """Delete the files a run writes (for ``train --overwrite``); anything else in the folder stays."""
    exports = (*ONNX_FILES.values(), TORCHSCRIPT_NAME)  # stale exports would outlive the new weights
    for name in (STATE_NAME, METRICS_NAME, RECIPE_NAME, CURVES_NAME, CONFIG_NAME, WEIGHTS_NAME, *exports):
        (run_dir / name).unlink(missing_ok=True)


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Drop metric rows of epochs after the resumed state (written before a crash, then redone)."""
    rows = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= epochs_done]
    with atomic_path(run_dir / METRICS_NAME) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def plot_curves(run_dir: Path, title: str) -> Path:
    """``curves.png``: train vs val loss and accuracy per epoch (and gradient norms when logged), drawn by
    the same code as ``cifarzoo compare``."""
    return plot_comparison(load_runs([run_dir]), run_dir / CURVES_NAME, title)

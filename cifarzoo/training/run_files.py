"""What a run directory holds, besides the checkpoint: the resumable state, metrics.jsonl and curves.png."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from cifarzoo.atomic import atomic_path
from cifarzoo.io.layout import CURVES_NAME, METRICS_NAME
from cifarzoo.io.run_metrics import read_metrics

__all__ = ["STATE_NAME", "RECIPE_NAME", "save_state", "load_state", "append_metrics", "read_metrics",
           "truncate_metrics", "plot_curves"]

STATE_NAME = "state.pt"
RECIPE_NAME = "recipe.json"


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


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Drop metric rows of epochs after the resumed state (written before a crash, then redone)."""
    rows = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= epochs_done]
    with atomic_path(run_dir / METRICS_NAME) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def plot_curves(run_dir: Path, title: str) -> Path | None:
    """``curves.png``: train vs val loss and accuracy per epoch. ``None`` without matplotlib."""
    rows = read_metrics(run_dir)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], label="val")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [r["train_top1"] for r in rows], label="train (augmented)")
    ax_acc.plot(epochs, [r["val_top1"] for r in rows], label="val")
    ax_acc.set(xlabel="epoch", ylabel="top-1 %", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(run_dir / CURVES_NAME) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return run_dir / CURVES_NAME

"""Comparing training runs: overlaid curves, per-stage gradient norms, and a table of what each run reached.

Reads only what a run directory already holds (``metrics.jsonl`` per epoch and the final metrics in
``config.json``), so it works on finished runs, on runs still training, and on copies of them. Torch-free.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cifarzoo.engines.figures import colour_cycle, figure_format, new_figure, save_figure
from cifarzoo.errors import CifarzooError
from cifarzoo.io.layout import CONFIG_NAME, METRICS_NAME, RECIPE_NAME
from cifarzoo.io.run_metrics import read_metrics


@dataclass
class Run:
    """One training run as recorded on disk.

    Attributes:
        name: the label used in figures and tables (the directory's name, made unique by its parent).
        path: the run directory.
        epochs: the ``metrics.jsonl`` rows, one per epoch.
        final: the final metrics in ``config.json`` (``test_top1``, ...); empty until the run has finished.
        has_val: ``False`` for runs trained without a validation split (``data.val_size = 0``), whose logged
            val metrics are placeholders and are left out of tables and figures.
    """

    name: str
    path: Path
    epochs: list[dict[str, Any]]
    final: dict[str, Any] = field(default_factory=dict)
    has_val: bool = True

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(epochs, values)`` for a per-epoch metric, skipping epochs that lack it."""
        if key.startswith("val_") and not self.has_val:
            return [], []
        pairs = [(row["epoch"], row[key]) for row in self.epochs if key in row]
        return [p[0] for p in pairs], [float(p[1]) for p in pairs]

    def best_val(self) -> tuple[float, int] | None:
        """``(best val top-1, its epoch)``; the first epoch wins ties, as in training."""
        epochs, values = self.series("val_top1")
        if not values:
            return None
        index = max(range(len(values)), key=lambda i: (values[i], -i))
        return values[index], epochs[index]

    def epochs_to(self, target: float) -> int | None:
        """The first epoch whose val top-1 reached ``target`` percent, or ``None``."""
        for epoch, value in zip(*self.series("val_top1")):
            if value >= target:
                return epoch
        return None

    @property
    def train_seconds(self) -> float:
        """Time spent in the training loop (the epochs' ``seconds``, without evaluation)."""
        return sum(float(row.get("seconds", 0.0)) for row in self.epochs)

    @property
    def has_grad_norms(self) -> bool:
        return any("grad_norms" in row for row in self.epochs)


def load_runs(paths: Sequence[str | os.PathLike]) -> list[Run]:
    """Read run directories; each must hold a non-empty ``metrics.jsonl``."""
    if not paths:
        raise CifarzooError("give at least one run directory")
    runs = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise CifarzooError(f"{path}: no such run directory")
        rows = read_metrics(path)
        if not rows:
            raise CifarzooError(f"{path}: no {METRICS_NAME} with epochs in it (not a training run, or not started)")
        for number, row in enumerate(rows, start=1):
            missing = [k for k in ("epoch", "train_loss", "train_top1", "val_loss", "val_top1") if k not in row]
            if missing:
                raise CifarzooError(f"{path / METRICS_NAME}:{number}: missing {', '.join(missing)}")
        runs.append(Run(path.name or str(path), path, rows, _final_metrics(path), _has_val_split(path)))
    _make_names_unique(runs)
    return runs


def _final_metrics(path: Path) -> dict[str, Any]:
    config = path / CONFIG_NAME
    if not config.is_file():
        return {}
    try:
        metrics = json.loads(config.read_text(encoding="utf-8")).get("metrics", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise CifarzooError(f"{config}: not a readable config ({exc})") from None
    return metrics if isinstance(metrics, dict) else {}


def _has_val_split(path: Path) -> bool:
    try:
        recipe = json.loads((path / RECIPE_NAME).read_text(encoding="utf-8"))
        return recipe["data"]["val_size"] != 0
    except (OSError, ValueError, KeyError, TypeError):
        return True  # no readable recipe: trust the logged metrics


def _make_names_unique(runs: list[Run]) -> None:
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = str(Path(run.path.resolve().parent.name) / run.path.name)
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = str(run.path)


def default_target(runs: Sequence[Run]) -> float:
    """The highest whole-percent val top-1 that every run reached: the fairest "epochs to accuracy" line."""
    bests = [b[0] for b in (r.best_val() for r in runs) if b is not None]
    return float(math.floor(min(bests))) if bests else 0.0


def summarize(runs: Sequence[Run], target: float) -> list[dict[str, Any]]:
    """One row per run with the numbers the table shows, taken unchanged from the runs' files."""
    rows = []
    for run in runs:
        last = run.epochs[-1]
        best = run.best_val()
        rows.append({
            "run": run.name,
            "epochs": int(last["epoch"]),
            "final_train_top1": float(last["train_top1"]),
            "final_val_top1": float(last["val_top1"]) if run.has_val else None,
            "best_val_top1": best[0] if best else None,
            "best_epoch": best[1] if best else None,
            "test_top1": run.final.get("test_top1"),
            "target": target,
            "epochs_to_target": run.epochs_to(target),
            "train_minutes": run.train_seconds / 60.0,
        })
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a GitHub-flavoured markdown table (percentages and minutes to 2 decimals)."""
    target = rows[0]["target"] if rows else 0.0
    headers = ["run", "epochs", "final train top-1", "final val top-1", "best val top-1 (epoch)", "test top-1",
               f"epochs to {target:g}% val", "train time (min)"]

    def pct(value: float | None) -> str:
        return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    for row in rows:
        best = "—" if row["best_val_top1"] is None else f"{row['best_val_top1']:.2f} ({row['best_epoch']})"
        cells = [row["run"], str(row["epochs"]), pct(row["final_train_top1"]), pct(row["final_val_top1"]), best,
                 pct(row["test_top1"]), "—" if row["epochs_to_target"] is None else str(row["epochs_to_target"]),
                 f"{row['train_minutes']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_comparison(runs: Sequence[Run], out: str | os.PathLike, title: str | None = None) -> Path:
    """Overlay the runs' loss and accuracy curves (train dashed, val solid; one colour per run).

    When a run logged per-stage gradient norms (``train.log_grad_norms``), a second row shows them: by stage
    from input to output, at the first epoch (solid) and the last (dashed), and the stem's over epochs. A
    plain network's gradients shrinking towards the input is the vanishing-gradient picture.
    """
    figure_format(out)  # an unsupported suffix fails before any drawing
    with_norms = any(r.has_grad_norms for r in runs)
    fig = new_figure(12, 8.5 if with_norms else 4.5, layout="tight")
    axes = fig.subplots(2 if with_norms else 1, 2, squeeze=False)
    colours = colour_cycle()
    ax_loss, ax_acc = axes[0]
    for i, run in enumerate(runs):
        colour = colours[i % len(colours)]
        for key, ax, style in (("train_loss", ax_loss, "--"), ("val_loss", ax_loss, "-"),
                               ("train_top1", ax_acc, "--"), ("val_top1", ax_acc, "-")):
            epochs, values = run.series(key)
            if not values:
                continue
            split = key.split("_")[0]
            ax.plot(
                epochs, values, style, color=colour, label=f"{run.name} {split}",
                marker="." if len(values) < 30 else None,
            )
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss (train dashed, val solid)")
    ax_acc.set(xlabel="epoch", ylabel="top-1 %", title="accuracy (train: augmented batches)")
    if with_norms:
        _plot_grad_norms(runs, axes[1][0], axes[1][1], colours)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out, dpi=110)


def _plot_grad_norms(runs: Sequence[Run], ax_stage: Any, ax_time: Any, colours: Sequence[str]) -> None:
    for i, run in enumerate(runs):
        rows = [row for row in run.epochs if "grad_norms" in row]
        if not rows:
            continue
        colour = colours[i % len(colours)]
        stages = list(rows[0]["grad_norms"])
        for row, style in ((rows[0], "-"), (rows[-1], "--")):
            ax_stage.plot(stages, [row["grad_norms"][s] for s in stages], style, color=colour, marker="o",
                          label=f"{run.name} epoch {row['epoch']}")
        first = stages[0]
        ax_time.plot([row["epoch"] for row in rows], [row["grad_norms"][first] for row in rows], color=colour,
                     marker=".", label=f"{run.name} {first}")
    ax_stage.set(yscale="log", xlabel="stage (input -> output)", ylabel="mean gradient L2 norm per step",
                 title="gradient norm by stage")
    ax_time.set(yscale="log", xlabel="epoch", ylabel="mean gradient L2 norm per step",
                title="gradient norm at the first stage")

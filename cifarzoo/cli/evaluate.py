"""``cifarzoo eval``: an accuracy report for a model on a dataset split."""

from __future__ import annotations

from typing import Optional

import typer

from cifarzoo.cli._common import format_table, write_json
from cifarzoo.registry import DEFAULT_MODEL


def eval_command(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="A zoo name or a checkpoint directory."),
    dataset: str = typer.Option(..., "--dataset", help="cifar10, cifar100 or fashion-mnist."),
    split: str = typer.Option("test", "--split", help="test, val (the held-out 5,000 training images) or train."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder holding the dataset files."),
    download: bool = typer.Option(False, "--download", help="Download the dataset if it is not found."),
    tta: str = typer.Option("none", "--tta", help="Test-time augmentation: none or flip."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    backend: str = typer.Option("torch", "--backend", help="torch, onnx, torchscript or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
) -> None:
    """Evaluate a model on a dataset split: top-1, top-5, loss, ECE and per-class precision/recall/F1."""
    from cifarzoo.api import evaluate, load

    if tta not in ("none", "flip"):
        raise typer.BadParameter("choose none or flip", param_hint="--tta")
    report = evaluate(load(model, device, backend), dataset, split, data_dir, download, batch_size, tta)
    if as_json:
        write_json(report.to_dict())
        return
    typer.echo(f"{dataset} {split}: n={report.n}  top-1 {report.top1:.2f}%  top-5 {report.top5:.2f}%  "
               f"loss {report.loss:.4f}  ECE {report.ece:.4f}")
    rows = [(name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", m.support) for name, m in report.per_class.items()]
    typer.echo(format_table(["class", "precision", "recall", "F1", "n"], rows, right=(1, 2, 3, 4)))

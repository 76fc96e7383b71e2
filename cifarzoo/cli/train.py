"""``cifarzoo train``: run a recipe into a run directory (resumable, torchrun-aware)."""

from __future__ import annotations

from typing import List, Optional

import typer

from cifarzoo.cli._common import write_json


def train_command(
    recipe: str = typer.Argument(..., help="A zoo name (resnet26-fm) or a recipe .toml path."),
    variant: Optional[str] = typer.Option(None, "--variant", help="A recipe variant, e.g. 'fast'."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder holding the dataset files."),
    download: bool = typer.Option(False, "--download", help="Download the dataset if it is not found."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory [default: runs/NAME]."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Override train.epochs."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last epoch."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start over in a non-empty --out, replacing its run files."
    ),
    overrides: List[str] = typer.Option([], "--set", help="Override a recipe value: section.key=value (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch log lines."),
) -> None:
    """Train a zoo recipe. Under `torchrun --nproc_per_node N` it trains with DistributedDataParallel.

    Every epoch writes state.pt (resume with --resume), metrics.jsonl, and the best-on-val weights as
    model.safetensors + config.json; the test split is evaluated once, at the end. The run holds OUT/.lock while it
    runs: a second training on the same --out is refused. A loss that turns NaN or infinite stops the run with
    exit code 1, keeping the files of the last finite epoch.
    """
    import logging
    import os

    from cifarzoo.training.loop import train
    from cifarzoo.training.recipe import recipe_for_run

    if not quiet and int(os.environ.get("RANK", "0")) == 0:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    extra = list(overrides) + ([f"train.epochs={epochs}"] if epochs else [])
    loaded, run_dir = recipe_for_run(recipe, variant=variant, overrides=extra, out=out, resume=resume)
    result = train(
        loaded, run_dir, data_dir=data_dir, device=device, resume=resume, overwrite=overwrite, download=download
    )
    if int(os.environ.get("RANK", "0")) == 0:
        write_json({"run_dir": str(result.run_dir), "best_epoch": result.best_epoch, "metrics": result.metrics})

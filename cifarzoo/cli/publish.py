"""``cifarzoo publish``: a run directory -> a Hugging Face model repo, in one commit."""

from __future__ import annotations

from typing import Optional

import typer


def publish_command(
    run_dir: str = typer.Argument(..., help="A run directory or checkpoint folder (model.safetensors + config.json)."),
    repo_id: str = typer.Option(..., "--repo-id", help="USER/NAME: the Hub model repo (created if needed)."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Build the folder into --out and upload nothing."),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", help="Build into this new or empty folder and keep it [default: a temporary folder]."
    ),
    int8: bool = typer.Option(
        True,
        "--int8/--no-int8",
        help="Include model.int8.onnx (needs the model's dataset to calibrate; left out if its parity fails).",
    ),
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", help="Folder holding the model's dataset, for int8 calibration."
    ),
    space_app: bool = typer.Option(
        False, "--space-app", help="Add app.py: a Gradio demo of the model, to run as a Hugging Face Space."
    ),
) -> None:
    """Publish a trained model to the Hugging Face Hub: safetensors + config.json, ONNX (fp32, int8),
    TorchScript (all parity-checked against torch), the run's curves and metrics, and a model card.

    The repo ends up holding exactly these files, uploaded in one commit. The token comes from HF_TOKEN or
    `hf auth login`; cifarzoo never reads, prints or stores it."""
    import logging
    import warnings

    from cifarzoo.engines.publish import publish

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore")  # tracer and exporter chatter; real problems raise
    result = publish(
        run_dir, repo_id, private=private, out=out, dry_run=dry_run, int8=int8, data_dir=data_dir, space_app=space_app
    )
    built = result.folder
    for note in built.notes:
        typer.echo(f"note: {note}")
    if result.upload is None:
        typer.echo(f"dry run: built {built.path} ({', '.join(built.files)}); nothing uploaded")
        return
    typer.echo(
        f"uploaded {len(built.files)} files ({', '.join(built.files)}) to {result.upload.repo_url} in one commit"
    )
    typer.echo(f"commit: {result.upload.commit_url}")
    typer.echo(f"revision: {result.upload.revision}")

"""``cifarzoo compare``: overlay several runs' curves and tabulate what each reached."""

from __future__ import annotations

from typing import List, Optional

import typer

from cifarzoo.cli._common import write_json


def compare_command(
    runs: List[str] = typer.Argument(..., help="Run directories (each with metrics.jsonl)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Write the comparison figure here (PNG, SVG, PDF)."),
    table: bool = typer.Option(False, "--table", help="Print a markdown table (the default when there is no --out)."),
    target: Optional[float] = typer.Option(
        None, "--target", help="Accuracy for the 'epochs to X% val' column [default: the best every run reached]."
    ),
    title: Optional[str] = typer.Option(None, "--title", help="A title over the figure."),
    as_json: bool = typer.Option(False, "--json", help="Print the table's numbers as JSON instead."),
) -> None:
    """Compare training runs: loss/accuracy curves (and per-stage gradient norms when the runs logged them with
    --set train.log_grad_norms=true), final and best accuracy, epochs to a target accuracy and training time.
    Works on runs that are still training."""
    from cifarzoo.engines.compare import default_target, load_runs, markdown_table, plot_comparison, summarize

    loaded = load_runs(runs)
    rows = summarize(loaded, default_target(loaded) if target is None else target)
    if out:
        path = plot_comparison(loaded, out, title)
        typer.echo(f"wrote {path}", err=as_json or table)
    if as_json:
        write_json(rows)
    elif table or not out:
        typer.echo(markdown_table(rows))

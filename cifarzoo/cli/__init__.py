"""The ``cifarzoo`` command line: thin typer commands that parse, call one library function and print.

Each command lives in its own module and imports heavy libraries (torch) only inside its body, so
``cifarzoo list`` and ``cifarzoo info`` never import torch.
"""

from __future__ import annotations

import typer

from cifarzoo.cli import (
    benchmark,
    calibrate,
    compare,
    convert,
    demo,
    evaluate,
    explain,
    export,
    models,
    predict,
    publish,
    train,
)
from cifarzoo.cli._common import FriendlyErrorsGroup

app = typer.Typer(
    name="cifarzoo",
    cls=FriendlyErrorsGroup,
    help="A model zoo for small-image classification: list, inspect and run CIFAR/Fashion-MNIST models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("list")(models.list_command)
app.command("info")(models.info_command)
app.command("predict")(predict.predict_command)
app.command("eval")(evaluate.eval_command)
app.command("calibrate")(calibrate.calibrate_command)
app.command("train")(train.train_command)
app.command("export")(export.export_command)
app.command("publish")(publish.publish_command)
app.command("convert")(convert.convert_command)
app.command("compare")(compare.compare_command)
app.command("explain")(explain.explain_command)
app.command("demo")(demo.demo_command)
app.command("benchmark")(benchmark.benchmark_command)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from cifarzoo import __version__

        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def main() -> None:
    """Console-script entry point."""
    app()

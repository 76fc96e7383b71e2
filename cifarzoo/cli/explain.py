"""``cifarzoo explain``: a Grad-CAM heatmap over one image, for its top class or a chosen one."""

from __future__ import annotations

from typing import Optional

import typer

from cifarzoo.cli._common import echo, write_json
from cifarzoo.registry import DEFAULT_MODEL


def explain_command(
    image: str = typer.Argument(..., help="An image file."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="A zoo name, checkpoint or run directory."),
    out: str = typer.Option("cam.png", "--out", "-o", help="Where to write the image | overlay PNG."),
    class_name: Optional[str] = typer.Option(
        None, "--class", "-c", help="Explain this class (a name or an index) instead of the top one."
    ),
    layer: Optional[str] = typer.Option(
        None, "--layer", help="A module name (e.g. stages.2) for a finer map [default: the last feature map]."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write a Grad-CAM overlay: which pixels raised the score of the top (or the given) class.

    The left half is the image as the model sees it (after its resize policy), the right half the heatmap
    over it. Needs the torch weights (model.safetensors).
    """
    from cifarzoo.engines.explain import explain

    result = explain(model, image, out=out, class_name=class_name, layer=layer, device=device)
    if as_json:
        write_json(result.to_dict())
    else:
        echo(f"{result.out}: Grad-CAM for {result.title}")  # escaped: the title holds a class name

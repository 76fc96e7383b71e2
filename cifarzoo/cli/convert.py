"""``cifarzoo convert``: a foreign .pth/.pt state dict -> a cifarzoo checkpoint folder."""

from __future__ import annotations

import typer


def convert_command(
    checkpoint: str = typer.Argument(
        ..., help="A .pth/.pt file: a state_dict, or a dict with it under state_dict, model or net."
    ),
    arch: str = typer.Option(..., "--arch", help="The arch the weights belong to: resnet26, plain50, tv_resnet50, ..."),
    dataset: str = typer.Option(..., "--dataset", help="c10, c100 or fm: the classes and preprocessing."),
    out: str = typer.Option(..., "--out", "-o", help="The checkpoint folder to write (new or empty)."),
) -> None:
    """Convert a checkpoint saved by another CIFAR codebase into a cifarzoo folder (model.safetensors +
    config.json). It is read with torch.load(weights_only=True), so a file that would run code is refused;
    DataParallel 'module.' prefixes are removed, and a key mismatch is reported by name."""
    from cifarzoo.engines.convert import convert_checkpoint

    folder = convert_checkpoint(checkpoint, arch=arch, dataset=dataset, out=out)
    # A relative path is written ./NAME: a bare NAME that is also a zoo name would load the zoo entry instead.
    ref = str(folder) if folder.is_absolute() or str(folder).startswith(".") else f"./{folder}"
    typer.echo(f"wrote {folder} (model.safetensors + config.json); load it with cifarzoo.load({ref!r})")

"""``cifarzoo predict``: top-k labels for image files, folders and globs."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, List

import typer

from cifarzoo.cli._common import choice_enum, echo, format_table, print_error, write_json
from cifarzoo.registry import DEFAULT_MODEL
from cifarzoo.runtime.backends import BACKENDS

if TYPE_CHECKING:
    Backend = Enum
else:
    Backend = choice_enum("Backend", BACKENDS)


def predict_command(
    images: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="A zoo name or a checkpoint directory."),
    topk: int = typer.Option(5, "--topk", "-k", min=1, help="How many labels to report per image."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of a table."),
    backend: Backend = typer.Option(
        Backend("auto"),
        "--backend",
        help="auto: onnx when the model folder has model.onnx (no torch import), else torch.",
    ),
    trust_code: bool = typer.Option(
        False, "--trust-code", help="Allow TorchScript files, which run code stored in them as they load."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N, or auto (CUDA when available)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Images per forward pass."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Say on stderr which model was used: zoo entry, Hub snapshot, folder or file."
    ),
) -> None:
    """Predict labels for images.

    Images of another size than the model's input (32x32 for CIFAR, 28x28 for Fashion-MNIST) are resized by
    the model's resize policy (see `cifarzoo info`). Real photos shrunk to 32x32 lose most of their detail and
    classify worse than the test set suggests. Unreadable files (and FIFOs or devices named like images, which
    are never opened) are reported one per line on stderr; the rest are still predicted, and the exit code is 1
    if any file failed.
    """
    from cifarzoo.api import load
    from cifarzoo.data.files import collect_images
    from cifarzoo.runtime.predictor import predict_images

    collected = collect_images(images)
    predictor = load(model, device=device, backend=backend.value, trust_code=trust_code)
    source = predictor.source.to_dict() if predictor.source is not None else None
    if verbose and predictor.source is not None:
        echo(f"model: {predictor.source.describe()}; backend: {predictor.describe_backend()}", err=True)
    result = predict_images(predictor.logits, predictor.config, collected.paths, topk=topk, batch_size=batch_size)

    if as_json:
        write_json([{**p.to_dict(), "model": source, "backend": predictor.backend} for p in result.predictions])
    elif result.predictions:
        rows = [
            (p.path, p.label, f"{p.prob:.3f}", ", ".join(f"{label} {prob:.3f}" for label, prob in p.topk[1:]))
            for p in result.predictions
        ]
        typer.echo(format_table(["image", "label", "prob", "next"], rows, right=(2,)))
    # print_error and format_table escape control characters: file and class names reach the terminal inert.
    for item, reason in [*collected.missing, *collected.skipped]:
        print_error(f"{item}: {reason}")
    for failure in result.failures:
        print_error(str(failure))
    failed = len(collected.missing) + len(collected.skipped) + len(result.failures)
    if failed:
        print_error(f"{failed} input(s) failed; {len(result.predictions)} predicted")
        raise typer.Exit(1)

"""``cifarzoo explain``: a Grad-CAM heatmap over one image, for its top class or a chosen one."""

from __future__ import annotations

from typing import Optional

import typer

from cifarzoo.cli._common import write_json
from cifarzoo.errors import CifarzooError
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
    import numpy as np
    import torch

    from cifarzoo.api import load
    from cifarzoo.data.preprocess import load_uint8, normalize
    from cifarzoo.data.testsets import ClassMatcher
    from cifarzoo.engines.explain import grad_cam, save_explanation
    from cifarzoo.model import ZooModel

    zoo_model = load(model, device=device, backend="torch")
    if not isinstance(zoo_model, ZooModel):
        raise CifarzooError(f"{model}: explain needs the torch weights (a folder with model.safetensors), not an export")
    config = zoo_model.config
    class_index = None
    if class_name is not None:
        class_index = ClassMatcher(config.classes)(class_name)
        if class_index is None:
            raise CifarzooError(f"--class {class_name!r} is not one of the model's classes: {', '.join(config.classes)}")
    pixels = load_uint8(image, config.preprocess)
    device_of = next(zoo_model.net.parameters()).device
    x = torch.from_numpy(normalize(pixels[None], config.preprocess)).to(device_of)
    result = grad_cam(zoo_model.net, x, class_index, layer)
    explained, top = int(result.class_indices[0]), int(np.argmax(result.probs[0]))
    probs = result.probs[0]
    title = f"{config.classes[explained]} (p={probs[explained]:.3f})"
    if explained != top:
        title += f"; top class {config.classes[top]} (p={probs[top]:.3f})"
    path = save_explanation(out, pixels, result.heatmaps[0], title)
    summary = {
        "image": image,
        "out": str(path),
        "class": config.classes[explained],
        "prob": float(probs[explained]),
        "top_class": config.classes[top],
        "top_prob": float(probs[top]),
        "layer": layer or "forward_features",
    }
    if as_json:
        write_json(summary)
    else:
        typer.echo(f"{path}: Grad-CAM for {title}")

"""From what the user typed (a zoo name, an ``hf://`` id or a folder) to a checkpoint folder on disk. Torch-free."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from cifarzoo.errors import NoWeightsError, UnknownModelError
from cifarzoo.io.hub import HubModel, download, download_entry, is_hub_id
from cifarzoo.io.integrity import verify_sha256
from cifarzoo.models.specs import ARCHS
from cifarzoo.registry import ZooEntry, get_entry


def resolve_model_dir(model: str | os.PathLike, backend: str = "torch") -> Path:
    """A checkpoint folder: ``model`` itself if it is a folder, else the released weights of a zoo name, else
    the snapshot of an ``hf://USER/REPO[@rev]`` id in the Hugging Face cache.

    ``backend`` (``torch``, ``onnx``, ``torchscript`` or ``auto``) decides which files a Hub download fetches;
    local folders are returned as they are.
    """
    directory = Path(model)
    if directory.is_dir():
        return directory
    name = os.fspath(model)
    if is_hub_id(name):
        return download(HubModel.parse(name), backend)
    if name in ARCHS:
        raise UnknownModelError(
            f"{name!r} is an architecture, not a trained model: pick a zoo name (`cifarzoo list`) or use "
            f"cifarzoo.create_model({name!r}) for an untrained one"
        )
    if os.sep in name or name.startswith("."):
        raise UnknownModelError(f"{name}: no such checkpoint directory")
    return resolve_weights(get_entry(name), backend)


def resolve_weights(entry: ZooEntry, backend: str = "torch") -> Path:
    """The folder holding an entry's released weights, checked against the registry's sha256 pins.

    Hub weights are fetched at the registry's pinned revision, only the files ``backend`` needs.
    """
    if entry.weights.kind == "bundled":
        directory = Path(str(resources.files("cifarzoo") / "weights" / (entry.weights.location or entry.name)))
        for name, expected in entry.weights.sha256.items():
            verify_sha256(directory / name, expected)
        return directory
    if entry.weights.kind == "hub":
        return download_entry(entry, backend)
    raise NoWeightsError(
        f"{entry.name} has no released weights yet; train them with `cifarzoo train {entry.name}`, or get an "
        f"untrained model with cifarzoo.create_model({entry.name!r})"
    )

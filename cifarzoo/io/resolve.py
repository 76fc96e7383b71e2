"""From what the user typed (a zoo name or a folder) to a checkpoint folder on disk. Torch-free."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from cifarzoo.errors import NoWeightsError, UnknownModelError
from cifarzoo.io.integrity import verify_sha256
from cifarzoo.models.specs import ARCHS
from cifarzoo.registry import ZooEntry, get_entry


def resolve_model_dir(model: str | os.PathLike) -> Path:
    """A checkpoint folder: ``model`` itself if it is a folder, else the released weights of a zoo name."""
    directory = Path(model)
    if directory.is_dir():
        return directory
    name = str(model)
    if name in ARCHS:
        raise UnknownModelError(
            f"{name!r} is an architecture, not a trained model: pick a zoo name (`cifarzoo list`) or use "
            f"cifarzoo.create_model({name!r}) for an untrained one"
        )
    if os.sep in name or name.startswith("."):
        raise UnknownModelError(f"{name}: no such checkpoint directory")
    return resolve_weights(get_entry(name))


def resolve_weights(entry: ZooEntry) -> Path:
    """The folder holding an entry's released weights, checked against the registry's sha256 pins."""
    if entry.weights.kind == "bundled":
        directory = Path(str(resources.files("cifarzoo") / "weights" / (entry.weights.location or entry.name)))
        for name, expected in entry.weights.sha256.items():
            verify_sha256(directory / name, expected)
        return directory
    raise NoWeightsError(
        f"{entry.name} has no released weights yet; train them with `cifarzoo train {entry.name}`, or get an "
        f"untrained model with cifarzoo.create_model({entry.name!r})"
    )

"""One resolver for every way a user names a model: a zoo name, a folder, one exported file or an ``hf://`` id.
Torch-free.

:func:`resolve` turns what the user typed into a :class:`ModelSource`: where the files are and what kind of
reference it was. Everything that takes a model by name goes through it: ``cifarzoo.load`` (so predict and eval),
``ZooModel.from_pretrained``, export, explain, benchmarks and distillation teachers. ``cifarzoo publish`` does
not: it takes a run or checkpoint folder, which it reads directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from cifarzoo.errors import NoWeightsError, UnknownModelError
from cifarzoo.io.hub import HubModel, download, download_entry, is_hub_id
from cifarzoo.io.integrity import verify_sha256
from cifarzoo.io.layout import EXPORT_SUFFIXES
from cifarzoo.models.specs import ARCHS
from cifarzoo.registry import ZOO, ZooEntry, get_entry

SourceKind = Literal["folder", "file", "zoo", "hub"]


@dataclass(frozen=True)
class ModelSource:
    """A resolved model reference.

    Attributes:
        kind: ``folder`` (a local checkpoint folder), ``file`` (one exported ``.onnx``/``.pt`` file), ``zoo`` (a
            zoo entry's pinned, sha256-checked weights) or ``hub`` (an ``hf://`` snapshot in the HF cache).
        path: the folder, or the file for ``kind == "file"``.
        ref: what the user typed.
        pinned: the files checked against a sha256 pin from the registry (a zoo entry's); only these may be
            code-bearing formats that load without the user's explicit trust.
    """

    kind: SourceKind
    path: Path
    ref: str
    pinned: frozenset[str] = frozenset()

    @property
    def directory(self) -> Path:
        """The folder holding the model's files (a lone file's parent)."""
        return self.path.parent if self.kind == "file" else self.path

    def describe(self) -> str:
        """One line for people: ``zoo resnet26-fm: /.../weights/resnet26-fm (sha256-pinned: config.json, ...)``."""
        pins = f" (sha256-pinned: {', '.join(sorted(self.pinned))})" if self.pinned else ""
        return f"{self.kind} {self.ref}: {self.path}{pins}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``--json``): kind, what was typed, the resolved path and the pinned file names."""
        return {"kind": self.kind, "ref": self.ref, "path": str(self.path), "pinned": sorted(self.pinned)}


def resolve(ref: str | os.PathLike, *, backend: str = "torch") -> ModelSource:
    """Where the model named by ``ref`` lives.

    ``ref`` is a zoo name (its released weights, checked against the registry's sha256 pins), an
    ``hf://USER/REPO[@rev]`` id (downloaded into the Hugging Face cache), a checkpoint folder or one exported file
    (``model.onnx``, ``model.int8.onnx``, ``model.torchscript.pt``). A zoo name always means the zoo entry, even
    when a folder of that name sits in the current directory: write ``./resnet26-fm`` for the folder.
    ``backend`` (``torch``, ``onnx``, ``torchscript`` or ``auto``) decides which files a Hub download fetches;
    local paths are used as they are.
    """
    path = Path(ref)
    name = os.fspath(ref)
    if isinstance(ref, str) and name in ZOO:
        entry = get_entry(name)
        return ModelSource("zoo", resolve_weights(entry, backend), name, frozenset(entry.weights.sha256))
    if path.is_dir():
        return ModelSource("folder", path, name)
    if path.is_file() and path.suffix in EXPORT_SUFFIXES:
        return ModelSource("file", path, name)
    if is_hub_id(name):
        return ModelSource("hub", download(HubModel.parse(name), backend), name)
    if name in ARCHS:
        raise UnknownModelError(
            f"{name!r} is an architecture, not a trained model: pick a zoo name (`cifarzoo list`) or use "
            f"cifarzoo.create_model({name!r}) for an untrained one"
        )
    if path.is_file():  # a .pth/.bin/.ckpt from another codebase: weights that cifarzoo reads only through convert
        raise UnknownModelError(
            f"{name}: not a model folder or an exported file ({', '.join(EXPORT_SUFFIXES)}); a checkpoint from "
            f"another codebase converts with `cifarzoo convert {name} --arch ARCH --dataset DATASET --out DIR`"
        )
    if os.sep in name or name.startswith(".") or path.suffix in EXPORT_SUFFIXES:
        raise UnknownModelError(f"{name}: no such checkpoint directory or exported file")
    entry = get_entry(name)  # an unknown name raises here, naming the closest zoo names
    return ModelSource("zoo", resolve_weights(entry, backend), name, frozenset(entry.weights.sha256))


def resolve_model_dir(ref: str | os.PathLike, *, backend: str = "torch") -> Path:
    """The folder holding the model named by ``ref`` (see :func:`resolve`)."""
    return resolve(ref, backend=backend).directory


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

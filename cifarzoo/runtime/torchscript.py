"""The TorchScript backend: a traced module (``model.torchscript.pt``) with its config stored inside the file."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarzoo.config import ModelConfig
from cifarzoo.errors import CheckpointError, UntrustedCodeError
from cifarzoo.io.layout import CONFIG_NAME, TORCHSCRIPT_NAME
from cifarzoo.runtime.onnx import parse_device
from cifarzoo.runtime.predictor import Predictor
from cifarzoo.runtime.torch_runner import TorchRunner, torch_device


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True when ``path`` is a TorchScript archive: a zip with the module's ``code/`` folder (what
    ``torch.jit.save`` writes). A plain ``torch.save`` checkpoint has tensors and a pickle but no code. Only the
    zip's table of contents is read, so this runs nothing from the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any("/code/" in name or name.startswith("code/") for name in names)


class TorchScriptModel(Predictor):
    """A traced TorchScript module (``model.torchscript.pt``), with its config stored inside the file."""

    file_name = TORCHSCRIPT_NAME
    export_format = "torchscript"
    backend = "torchscript"

    def __init__(self, module: Any, config: ModelConfig, device: str = "auto"):
        self.module = module
        self.config = config
        self.runner = TorchRunner(module, device=torch_device(device), owns_module=True)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "auto", *, trust_code: bool = False) -> TorchScriptModel:
        """Load a TorchScript file. It is a program: loading runs code stored in it (``__setstate__``), so it
        is refused unless ``trust_code`` says the user trusts the file (or the registry pinned its sha256).

        ``device`` defaults to ``auto``, as for every backend and for :meth:`from_dir`."""
        path = Path(path)
        parse_device(device)
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found")
        if not is_torchscript_archive(path):
            # A .pt/.pth from another codebase: torch.save's pickle, which cifarzoo reads only through convert.
            raise CheckpointError(
                f"{path}: not a TorchScript file (no code inside; it looks like a torch.save checkpoint); convert "
                f"it into a model folder with `cifarzoo convert {path} --arch ARCH --dataset DATASET --out DIR`"
            )
        if not trust_code:
            raise UntrustedCodeError(
                f"{path}: TorchScript runs code stored in the file when it loads; pass --trust-code "
                "(trust_code=True) only for a file you trust, or use the ONNX or safetensors files"
            )
        device = torch_device(device)  # a missing GPU is found before the file's code runs
        extra = {CONFIG_NAME: ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises RuntimeError and others for a bad archive
            lines = str(exc).strip().splitlines()
            raise CheckpointError(
                f"{path}: cannot load TorchScript ({type(exc).__name__}: {lines[0] if lines else 'no details'})"
            ) from None
        if not extra[CONFIG_NAME]:
            raise CheckpointError(f"{path}: no {CONFIG_NAME} inside; export it with `cifarzoo export`")
        config = ModelConfig.from_json(extra[CONFIG_NAME], f"{path} ({CONFIG_NAME} inside)")
        beside = path.parent / CONFIG_NAME
        if beside.is_file():
            # As for ONNX, the folder's config.json wins: it carries a calibration fitted after the export.
            config = ModelConfig.load(beside)
        return cls(module, config, device)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.runner(batch)

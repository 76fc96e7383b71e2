"""The TorchScript backend: a traced module (``model.torchscript.pt``) with its config stored inside the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarzoo.config import ModelConfig
from cifarzoo.errors import CheckpointError, UntrustedCodeError
from cifarzoo.io.layout import CONFIG_NAME, TORCHSCRIPT_NAME
from cifarzoo.runtime.predictor import Predictor
from cifarzoo.runtime.torch_runner import TorchRunner, torch_device


class TorchScriptModel(Predictor):
    """A traced TorchScript module (``model.torchscript.pt``), with its config stored inside the file."""

    file_name = TORCHSCRIPT_NAME
    export_format = "torchscript"

    def __init__(self, module: Any, config: ModelConfig, device: str = "cpu"):
        self.module = module
        self.config = config
        self.runner = TorchRunner(module, device=torch_device(device), owns_module=True)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "cpu", *, trust_code: bool = False) -> TorchScriptModel:
        """Load a TorchScript file. It is a program: loading runs code stored in it (``__setstate__``), so it
        is refused unless ``trust_code`` says the user trusts the file (or the registry pinned its sha256)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found")
        if not trust_code:
            raise UntrustedCodeError(
                f"{path}: TorchScript runs code stored in the file when it loads; pass --trust-code "
                "(trust_code=True) only for a file you trust, or use the ONNX or safetensors files"
            )
        extra = {CONFIG_NAME: ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises RuntimeError and others for a bad archive
            raise CheckpointError(f"{path}: cannot load TorchScript ({type(exc).__name__}: {exc})") from None
        if not extra[CONFIG_NAME]:
            raise CheckpointError(f"{path}: no {CONFIG_NAME} inside; export it with `cifarzoo export`")
        return cls(module, ModelConfig.from_dict(json.loads(extra[CONFIG_NAME])), device)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.runner(batch)

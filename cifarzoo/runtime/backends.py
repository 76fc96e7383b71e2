"""The inference backends, declared once: the library validates against them and the CLI offers them."""

from __future__ import annotations

from typing import Literal, get_args

# auto: onnx when the model folder has model.onnx (no torch import), else torch.
Backend = Literal["auto", "torch", "onnx", "torchscript"]
BACKENDS: tuple[str, ...] = get_args(Backend)

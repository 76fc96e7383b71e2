"""Inference backends besides the torch module: ONNX (onnxruntime, torch-free) and TorchScript.

Each is a :class:`~cifarzoo.engines.predict.Predictor`: ``.predict``, ``.classes``, ``.config``, ``.logits``.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cifarzoo.config import ModelConfig
from cifarzoo.engines.predict import Predictor
from cifarzoo.errors import CheckpointError, CifarzooError

from cifarzoo.io.layout import CONFIG_NAME, ONNX_NAME, TORCHSCRIPT_NAME

# The ONNX metadata key that carries the model config, so a lone .onnx file still describes itself.
ONNX_CONFIG_KEY = "cifarzoo.config"


def cuda_usable() -> bool:
    """True when the CUDA driver loads and sees a device (checked without torch and without onnxruntime's
    error messages, which a CPU-only machine would otherwise print when the CUDA provider is requested)."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return libcuda.cuInit(0) == 0 and libcuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def onnx_providers(device: str) -> list[Any]:
    """onnxruntime providers for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    import onnxruntime as ort

    wants_cuda = device.startswith("cuda") or (device == "auto" and cuda_usable())
    if wants_cuda:
        if "CUDAExecutionProvider" not in ort.get_available_providers() or not cuda_usable():
            raise CifarzooError(f"device {device!r} asked for CUDA, but no usable CUDA device/provider was found")
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxModel(Predictor):
    """An ONNX model on onnxruntime. Uses IOBinding on CUDA so outputs are fetched in one copy."""

    def __init__(self, path: str | os.PathLike, config: ModelConfig, device: str = "auto"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = _cpu_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.config = config
        try:
            self.session = ort.InferenceSession(str(path), options, providers=onnx_providers(device))
        except Exception as exc:  # onnxruntime raises its own types for unreadable or invalid files
            raise CheckpointError(f"{path}: cannot load ONNX model ({type(exc).__name__}: {exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.on_cuda = self.session.get_providers()[0] == "CUDAExecutionProvider"

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "auto") -> OnnxModel:
        """Load ``path``; the config comes from a ``config.json`` beside it, else from the file's metadata."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found")
        beside = path.parent / CONFIG_NAME
        if beside.is_file():
            return cls(path, ModelConfig.load(beside), device)
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if ONNX_CONFIG_KEY not in meta:
            raise CheckpointError(f"{path}: no {CONFIG_NAME} beside it and no {ONNX_CONFIG_KEY} metadata inside")
        return cls(path, ModelConfig.from_dict(json.loads(meta[ONNX_CONFIG_KEY])), device)

    @classmethod
    def from_dir(cls, directory: Path, device: str = "auto") -> OnnxModel:
        if not (directory / ONNX_NAME).is_file():
            raise CheckpointError(
                f"{directory}: no {ONNX_NAME}; create it with `cifarzoo export {directory} --format onnx`"
            )
        return cls(directory / ONNX_NAME, ModelConfig.load(directory / CONFIG_NAME), device)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.on_cuda:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class TorchScriptModel(Predictor):
    """A traced TorchScript module (``model.torchscript.pt``), with its config stored inside the file."""

    def __init__(self, module: Any, config: ModelConfig, device: str = "cpu"):
        from cifarzoo.engines.predict import TorchRunner

        self.module = module
        self.config = config
        self.runner = TorchRunner(module, device=torch_device(device))

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "cpu") -> TorchScriptModel:
        import torch

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found")
        extra = {CONFIG_NAME: ""}
        try:
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises RuntimeError and others for a bad archive
            raise CheckpointError(f"{path}: cannot load TorchScript ({type(exc).__name__}: {exc})") from None
        if not extra[CONFIG_NAME]:
            raise CheckpointError(f"{path}: no {CONFIG_NAME} inside; export it with `cifarzoo export`")
        return cls(module, ModelConfig.from_dict(json.loads(extra[CONFIG_NAME])), device)

    @classmethod
    def from_dir(cls, directory: Path, device: str = "cpu") -> TorchScriptModel:
        if not (directory / TORCHSCRIPT_NAME).is_file():
            raise CheckpointError(
                f"{directory}: no {TORCHSCRIPT_NAME}; create it with `cifarzoo export {directory} --format torchscript`"
            )
        return cls.from_file(directory / TORCHSCRIPT_NAME, device)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.runner(batch)


def torch_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"

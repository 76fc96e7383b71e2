"""The ONNX backend: onnxruntime, numpy and PIL only, never torch, so ``cifarzoo predict`` starts fast.

:class:`OnnxModel` is a :class:`~cifarzoo.runtime.predictor.Predictor`: ``.predict``, ``.classes``,
``.config``, ``.logits``.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from cifarzoo.config import ModelConfig
from cifarzoo.errors import CheckpointError, CifarzooError
from cifarzoo.io.layout import CONFIG_NAME, ONNX_CONFIG_KEY, ONNX_NAME
from cifarzoo.runtime.predictor import Predictor


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

    file_name = ONNX_NAME
    export_format = "onnx"

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
    def from_file(cls, path: str | os.PathLike, device: str = "auto", *, trust_code: bool = False) -> OnnxModel:
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

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.on_cuda:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

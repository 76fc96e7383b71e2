"""The ONNX backend: onnxruntime, numpy and PIL only, never torch, so ``cifarzoo predict`` starts fast.

:class:`OnnxModel` is a :class:`~cifarzoo.runtime.predictor.Predictor`: ``.predict``, ``.classes``,
``.config``, ``.logits``.
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from cifarzoo.config import ModelConfig
from cifarzoo.errors import CheckpointError, CifarzooError
from cifarzoo.io.layout import CONFIG_NAME, ONNX_CONFIG_KEY, ONNX_NAME
from cifarzoo.runtime.predictor import Predictor

# What ``--device`` accepts, for every backend: ``auto`` (CUDA when usable), ``cpu``, ``cuda`` or ``cuda:N``.
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_DEVICE_PATTERN = re.compile(r"(auto|cpu|cuda)(?::(\d{1,4}))?")


def parse_device(device: str) -> tuple[str, int | None]:
    """``device`` as ``(kind, index)``: ``("cuda", 1)`` for ``cuda:1``, ``("cpu", None)`` for ``cpu``.

    Anything but ``auto``, ``cpu``, ``cuda`` and ``cuda:N`` is a one-line :class:`CifarzooError`, checked before
    any file is read; whether the device exists is each backend's check. Torch-free, so the ONNX path uses it too.
    """
    match = _DEVICE_PATTERN.fullmatch(device) if isinstance(device, str) else None
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise CifarzooError(f"unknown device {device!r}; choose {DEVICE_CHOICES}")
    index = match.group(2)
    return match.group(1), None if index is None else int(index)


def cuda_device_count() -> int:
    """CUDA devices the driver sees (0 without a driver), checked without torch and without onnxruntime's error
    messages, which a CPU-only machine would otherwise print when the CUDA provider is requested."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return max(0, count.value)


def cuda_usable() -> bool:
    """True when the CUDA driver loads and sees a device (see :func:`cuda_device_count`)."""
    return cuda_device_count() > 0


def onnx_providers(device: str) -> list[Any]:
    """onnxruntime providers for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    import onnxruntime as ort

    kind, index = parse_device(device)
    count = cuda_device_count() if kind != "cpu" else 0
    if kind == "cuda" or (kind == "auto" and count > 0):
        if "CUDAExecutionProvider" not in ort.get_available_providers() or count == 0:
            raise CifarzooError(f"device {device!r} asked for CUDA, but no usable CUDA device/provider was found")
        if (index or 0) >= count:
            raise CifarzooError(
                f"device {device!r} does not exist: {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})"
            )
        return [("CUDAExecutionProvider", {"device_id": index or 0}), "CPUExecutionProvider"]
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
    backend = "onnx"

    def __init__(self, path: str | os.PathLike, config: ModelConfig, device: str = "auto"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = _cpu_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.config = config
        providers = onnx_providers(device)  # a bad --device is the user's one-line error, not the file's
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for unreadable or invalid files
            raise CheckpointError(
                f"{path}: cannot load ONNX model ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.on_cuda = self.session.get_providers()[0] == "CUDAExecutionProvider"
        self._check_shapes()

    def _check_shapes(self) -> None:
        """Refuse a graph whose fixed input or output sizes disagree with the config: it would fail (or, for the
        class count, mislabel) on the first batch instead of here."""
        cfg = self.config
        size = cfg.preprocess.input_size
        got_in = tuple(self.session.get_inputs()[0].shape)
        got_out = tuple(self.session.get_outputs()[0].shape)
        if _disagrees(got_in, (None, cfg.in_chans, size, size)) or _disagrees(got_out, (None, cfg.num_classes)):
            source = self.path.parent / CONFIG_NAME if (self.path.parent / CONFIG_NAME).is_file() else "its config"
            raise CheckpointError(
                f"{self.path}: the ONNX model takes {_dims(got_in)} input and gives {_dims(got_out)} logits, but "
                f"{source} describes {cfg.in_chans}x{size}x{size} images and {cfg.num_classes} classes: the file and "
                "the config belong to different models"
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "auto", *, trust_code: bool = False) -> OnnxModel:
        """Load ``path``; the config comes from a ``config.json`` beside it, else from the file's metadata."""
        path = Path(path)
        parse_device(device)
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found")
        beside = path.parent / CONFIG_NAME
        if beside.is_file():
            return cls(path, ModelConfig.load(beside), device)
        import onnx

        try:
            meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as exc:  # protobuf's DecodeError and friends for a file that is not an ONNX model
            raise CheckpointError(
                f"{path}: not a readable ONNX model ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        if ONNX_CONFIG_KEY not in meta:
            raise CheckpointError(f"{path}: no {CONFIG_NAME} beside it and no {ONNX_CONFIG_KEY} metadata inside")
        return cls(path, ModelConfig.from_json(meta[ONNX_CONFIG_KEY], f"{path} ({ONNX_CONFIG_KEY} metadata)"), device)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.on_cuda:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def _disagrees(got: tuple[Any, ...], expected: tuple[int | None, ...]) -> bool:
    """True when ``got`` has another rank than ``expected`` or a fixed size that differs from it. Symbolic
    dimensions (``"batch"``) and ``None`` match any size."""
    return len(got) != len(expected) or any(
        isinstance(g, int) and e is not None and g != e for g, e in zip(got, expected)
    )


def _dims(shape: tuple[Any, ...]) -> str:
    return "x".join(str(d) if isinstance(d, int) else "N" for d in shape) or "a scalar"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "no details"

"""Export a model to ONNX (fp32, fp16, int8) or TorchScript, and check the result against torch.

Every file is written atomically. Exported files carry the model config (ONNX metadata / TorchScript extra
file), so they describe themselves even without the ``config.json`` beside them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from cifarzoo.atomic import atomic_path
from cifarzoo.config import ModelConfig
from cifarzoo.data.preprocess import normalize
from cifarzoo.io.layout import CONFIG_NAME, ONNX_CONFIG_KEY, ExportDtype

log = logging.getLogger(__name__)

Dtype = ExportDtype
DEFAULT_OPSET = 18


@dataclass
class ExportResult:
    path: Path
    exporter: str  # "dynamo" (torch.export-based), "torchscript" (legacy ONNX exporter) or "trace"


def _example_input(config: ModelConfig, batch: int = 2) -> torch.Tensor:
    size = config.preprocess.input_size
    return torch.randn(batch, config.in_chans, size, size)


def export_onnx(
    net: nn.Module,
    config: ModelConfig,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    *,
    fp16_storage: bool = False,
) -> ExportResult:
    """fp32 ONNX with a dynamic batch axis (input ``input``, output ``logits``).

    Uses the torch.export-based exporter; falls back to the TorchScript-based one only if that fails, and
    says which it used.

    ``fp16_storage`` halves the file of a model whose weights are fp16 values (a checkpoint saved in fp16, as the
    bundled releases are) without changing a single output: BatchNorm is kept as its own node instead of being
    folded into the convolution (the folded weights are no longer fp16 values), every initializer that fp16
    represents exactly is stored as fp16 behind a Cast to float, and the rest stay fp32. Compute stays fp32:
    onnxruntime folds the casts and the BatchNorms into the convolutions when it loads the file, so it runs the
    same graph as the default export.
    """
    import onnx

    net = net.eval().to("cpu").to(memory_format=torch.contiguous_format)
    x = _example_input(config)
    with atomic_path(path) as tmp:
        try:
            program = torch.onnx.export(
                net, (x,), dynamo=True, input_names=["input"], output_names=["logits"], opset_version=opset,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},), verbose=False,
                optimize=not fp16_storage,  # its optimiser folds BatchNorm; _fold_keeping_batchnorm does the rest
            )
            if program is None:  # dynamo=True always returns a program; None would be an exporter bug
                raise RuntimeError("torch.onnx.export returned no program")
            program.save(str(tmp))
            exporter = "dynamo"
        except OSError:
            raise  # a full disk or a read-only folder: the other exporter would fail the same way
        except Exception as exc:  # the new exporter raises many types on unsupported graphs
            log.warning("torch.export-based ONNX export failed (%s: %s); using the TorchScript-based exporter",
                        type(exc).__name__, exc)
            torch.onnx.export(
                net, (x,), str(tmp), dynamo=False, input_names=["input"], output_names=["logits"],
                opset_version=min(opset, 17), dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
            exporter = "torchscript"
        model = onnx.load(str(tmp))
        if fp16_storage:
            model = _store_exact_fp16(_fold_keeping_batchnorm(model) if exporter == "dynamo" else model)
        _set_metadata(model, config, exporter)
        onnx.save(model, str(tmp))
    return ExportResult(Path(path), exporter)


def _fold_keeping_batchnorm(model: Any) -> Any:
    """The unoptimised torch.export graph with its constants folded and dead nodes removed, but BatchNorm left
    in place (the exporter's own optimiser would fold it into the convolutions)."""
    from onnxscript import ir, optimizer

    graph = ir.serde.deserialize_model(model)
    optimizer.fold_constants(graph)
    optimizer.remove_unused_nodes(graph)
    return ir.serde.serialize_model(graph)


def _store_exact_fp16(model: Any) -> Any:
    """Store every float32 initializer whose values fp16 represents exactly as fp16, behind a Cast to float32
    under its old name; the others are left as they are. Lossless by construction."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers, casts = [], []
    for tensor in graph.initializer:
        values = numpy_helper.to_array(tensor)
        half = values.astype(np.float16) if values.dtype == np.float32 and values.size > 1 else None
        if half is None or not np.array_equal(half.astype(np.float32), values):
            initializers.append(tensor)  # scalars gain nothing; inexact values would change the outputs
            continue
        stored = numpy_helper.from_array(half, f"{tensor.name}.fp16")
        initializers.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [tensor.name], to=TensorProto.FLOAT,
                                      name=f"{tensor.name}.to_fp32"))
    nodes = casts + list(graph.node)  # the casts first: the node list must stay topologically sorted
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(initializers)
    graph.node.extend(nodes)
    return model


def _set_metadata(model: Any, config: ModelConfig, exporter: str) -> None:
    import onnx

    entries = {ONNX_CONFIG_KEY: json.dumps(config.to_dict()), "cifarzoo.exporter": exporter}
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept + [onnx.StringStringEntryProto(key=k, value=v) for k, v in entries.items()])


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """An fp16 copy of an ONNX model for GPUs; inputs and outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return Path(dst)


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel int8 weights, uint8 activations) calibrated on
    ``calibration``: normalised float32 ``(N, C, H, W)`` inputs, about 512 of them."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.chunks = iter(np.array_split(calibration, max(1, len(calibration) // 64)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.chunks, None)
            return None if chunk is None else {"input": np.ascontiguousarray(chunk, dtype=np.float32)}

    with atomic_path(Path(dst).with_suffix(".pre.onnx")) as prepared, atomic_path(dst) as tmp:
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(tmp), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
        )
        import onnx

        model = onnx.load(str(tmp))
        meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
        _set_metadata(
            model,
            ModelConfig.from_dict(json.loads(meta[ONNX_CONFIG_KEY])),
            meta.get("cifarzoo.exporter", "?") + "+int8",
        )
        onnx.save(model, str(tmp))
    Path(dst).with_suffix(".pre.onnx").unlink(missing_ok=True)
    return Path(dst)


def export_torchscript(net: nn.Module, config: ModelConfig, path: str | os.PathLike) -> ExportResult:
    """A traced TorchScript module (traces are checked against eager on fresh inputs), config inside."""
    net = net.eval().to("cpu").to(memory_format=torch.contiguous_format)
    x = _example_input(config)
    with torch.no_grad():
        traced = torch.jit.trace(net, x, check_trace=True, check_inputs=[(_example_input(config, 3),)])
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={CONFIG_NAME: json.dumps(config.to_dict())})
    return ExportResult(Path(path), "trace")


# ----------------------------------------------------------------------------------------------------------
# Parity


@dataclass
class Parity:
    """How an exported model's logits compare with torch's on the same inputs."""

    n: int
    max_abs_diff: float
    relative_diff: float  # max |a - b| / max |a|: the tolerance is relative to the logits' scale
    top1_agreement: float  # fraction of inputs with the same top-1 class

    def passes(self, dtype: Dtype) -> bool:
        if dtype == "fp32":
            return self.relative_diff <= 1e-4 and self.top1_agreement == 1.0
        if dtype == "fp16":
            return self.relative_diff <= 2e-2 and self.top1_agreement >= 0.99
        return self.top1_agreement >= 0.99

    def describe(self) -> str:
        return (f"n={self.n}, max |diff| {self.max_abs_diff:.2e} ({self.relative_diff:.2e} of the logit scale), "
                f"top-1 agreement {self.top1_agreement:.2%}")


def parity_inputs(config: ModelConfig, images: np.ndarray | None = None, n: int = 256, seed: int = 0) -> np.ndarray:
    """Normalised inputs for parity checks: real images when given, else random uint8 images."""
    if images is None:
        size = config.preprocess.input_size
        images = np.random.default_rng(seed).integers(0, 256, (n, size, size, config.in_chans), dtype=np.uint8)
    return normalize(images[:n], config.preprocess)


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    scale = max(float(np.abs(reference).max()), 1e-12)
    agree = float((reference.argmax(1) == candidate.argmax(1)).mean())
    return Parity(len(reference), float(diff.max()), float(diff.max()) / scale, agree)


def check_parity(
    reference_fn: Any, candidate_fn: Any, inputs: Iterable[np.ndarray] | np.ndarray, batch: int = 128
) -> Parity:
    """Run both logit functions over ``inputs`` in batches and compare."""
    inputs = np.asarray(inputs, dtype=np.float32)
    ref = np.concatenate([reference_fn(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])
    cand = np.concatenate([candidate_fn(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])
    return compare_logits(ref, cand)

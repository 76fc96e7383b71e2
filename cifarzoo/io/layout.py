"""The file names of a model folder, in one place. Torch-free.

A checkpoint folder holds ``config.json`` and ``model.safetensors``; exports add the ONNX and TorchScript
files beside them; a training run adds its log and curves. Every reader and writer (checkpoints, runtime
backends, export, Hub download and publish, training) takes the names from here.
"""

from __future__ import annotations

from typing import Literal, get_args

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ONNX_NAME = "model.onnx"
TORCHSCRIPT_NAME = "model.torchscript.pt"
# ONNX file per dtype: fp32 is the default backend file, the others sit beside it.
ONNX_FILES = {"fp32": ONNX_NAME, "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
METRICS_NAME = "metrics.jsonl"
CURVES_NAME = "curves.png"
RECIPE_NAME = "recipe.json"  # a training run's full recipe
# The ONNX metadata key that carries the model config, so a lone .onnx file still describes itself.
ONNX_CONFIG_KEY = "cifarzoo.config"
# Suffixes of single exported files that load on their own (their config is embedded).
EXPORT_SUFFIXES = (".onnx", ".pt")
STATE_NAME = "state.pt"  # a training run's resumable state (optimiser, schedule, EMA, RNG)
LOCK_NAME = ".lock"  # held by the training process writing a run folder (its pid and host), like git's index.lock
CARD_NAME = "README.md"  # a Hub repo's model card

# An eval report folder (`cifarzoo eval --report DIR`).
REPORT_JSON_NAME = "report.json"
REPORT_PREDICTIONS_NAME = "predictions.csv"
REPORT_CONFUSION_NAME = "confusion.png"
REPORT_RELIABILITY_NAME = "reliability.png"
REPORT_MISCLASSIFIED_NAME = "misclassified.png"
REPORT_HTML_NAME = "index.html"  # the whole report as one offline page
# With --corruptions: the corruption x severity grid (`cifarzoo eval --corruptions ... --report DIR`).
REPORT_ROBUSTNESS_JSON_NAME = "corruptions.json"
REPORT_ROBUSTNESS_NAME = "corruptions.png"

# Export formats and ONNX precisions: `cifarzoo export --format/--dtype` and the exporters take them from here.
ExportFormat = Literal["onnx", "torchscript"]
ExportDtype = Literal["fp32", "fp16", "int8"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
EXPORT_DTYPES: tuple[str, ...] = get_args(ExportDtype)

"""Inference speed of one model per backend, precision and batch size: timm's ``benchmark.py`` as a library
call (``cifarzoo benchmark`` prints it).

Every backend runs the same weights on the same normalised input. The ONNX and TorchScript files are exported
into a private temporary folder, so benchmarking never writes into the model's own folder, and the
TorchScript file loaded back is the one this process just wrote (no untrusted code runs). Achieved GFLOP/s is
the network's forward matrix work (:func:`~cifarzoo.models.factory.count_flops`) times images per second,
reported against the dense matmul peak measured on the same device in the same run: machines differ (AMD
EPYC and Intel Xeon have both been seen here), so only figures from one run compare.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch

from cifarzoo.errors import ConfigError
from cifarzoo.io.checkpoint import load_checkpoint
from cifarzoo.io.export import export_onnx, export_torchscript, parity_inputs, quantize_int8
from cifarzoo.io.resolve import resolve
from cifarzoo.models.factory import count_flops
from cifarzoo.runtime.onnx import OnnxModel
from cifarzoo.runtime.torch_runner import TorchRunner, torch_device
from cifarzoo.runtime.torchscript import TorchScriptModel

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
# The concrete backends (the library's "auto" picks one of these).
TimedBackend = Literal["torch", "onnx", "torchscript"]
TIMED_BACKENDS: tuple[TimedBackend, ...] = get_args(TimedBackend)
# What each backend can run. bf16 is torch autocast; int8 is onnxruntime's static QDQ quantisation.
SUPPORTED: dict[TimedBackend, tuple[Precision, ...]] = {
    "torch": ("fp32", "bf16"),
    "onnx": ("fp32", "int8"),
    "torchscript": ("fp32",),
}
DEFAULT_BATCH_SIZES = (1, 32, 256)
CALIBRATION_IMAGES = 256  # int8 is calibrated on this many synthetic inputs: enough for speed, not for accuracy

LogitsFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BenchmarkRow:
    """One backend at one precision and batch size: median latency of a batch and the throughput it gives."""

    backend: str
    precision: str
    batch_size: int
    ms_per_batch: float
    img_per_s: float
    gflops: float  # achieved forward matrix work
    peak_fraction: float  # of the measured matmul peak at the same precision (int8: of the fp32 peak)


@dataclass(frozen=True)
class BenchmarkResult:
    """A benchmark run: the model, the machine and its measured peaks, and one row per configuration."""

    model: str
    device: str
    machine: str
    flops_per_image: int
    peak_gflops: dict[str, float]
    repeats: int
    rows: list[BenchmarkRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_description() -> str:
    """The CPU model, core count, torch version and its thread count (and the GPU, when there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def matmul_peak_gflops(dtype: torch.dtype, *, n: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """Measured dense matmul throughput: the practical ceiling for conv/linear work on this device."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b  # warm-up: first-call allocation and kernel selection
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def parse_int_list(text: str, *, what: str) -> tuple[int, ...]:
    """``"1,32,256"`` -> ``(1, 32, 256)``; a one-line :class:`ConfigError` for anything else."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected positive integers separated by commas, e.g. 1,32,256") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{what} {text!r}: expected positive integers separated by commas, e.g. 1,32,256")
    return values


def parse_choices(text: str, *, choices: Sequence[str], what: str) -> tuple[str, ...]:
    """``"onnx,torch"`` -> ``("onnx", "torch")``, each checked against ``choices``."""
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [v for v in values if v not in choices]
    if unknown or not values:
        raise ConfigError(f"{what} {text!r}: choose from {', '.join(choices)} (comma-separated)")
    return values


def configurations(backends: Sequence[str], precisions: Sequence[str]) -> list[tuple[TimedBackend, Precision]]:
    """The (backend, precision) pairs to run: every requested pair a backend supports."""
    pairs = [(b, p) for b in TIMED_BACKENDS for p in SUPPORTED[b] if b in backends and p in precisions]
    if not pairs:
        supported = "; ".join(f"{b}: {', '.join(ps)}" for b, ps in SUPPORTED.items())
        raise ConfigError(f"no backend runs the precisions {', '.join(precisions)} ({supported})")
    return pairs


def median_seconds(fn: Callable[[], object], *, repeats: int, warmups: int = 2) -> float:
    """The median wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmups`` untimed ones (they pay
    for allocation, kernel selection and, in onnxruntime, per-shape planning)."""
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _runners(
    net: torch.nn.Module, config: Any, pairs: Sequence[tuple[str, str]], device: str, work: Path
) -> dict[tuple[str, str], LogitsFn]:
    runners: dict[tuple[str, str], LogitsFn] = {}
    for backend, precision in pairs:
        if backend == "torch":
            dtype = torch.bfloat16 if precision == "bf16" else None
            # A private copy the runner may keep in eval mode and channels_last (the exports below put ``net``
            # back in contiguous format), so each call times the forward pass, not a layout round trip.
            runners[backend, precision] = TorchRunner(copy.deepcopy(net), device=device, dtype=dtype, owns_module=True)
        elif backend == "onnx":
            fp32 = work / "model.onnx"
            if not fp32.exists():
                export_onnx(net, config, fp32)
            path = fp32
            if precision == "int8":
                calibration = parity_inputs(config, n=CALIBRATION_IMAGES, seed=1)
                path = quantize_int8(fp32, work / "model.int8.onnx", calibration)
            runners[backend, precision] = OnnxModel(path, config, device).logits
        else:
            path = work / "model.torchscript.pt"
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; the format is still what we time
                warnings.simplefilter("ignore", FutureWarning)
                export_torchscript(net, config, path)
                # Trusted: this process traced and wrote the file a moment ago, in its own temporary folder.
                runners[backend, precision] = TorchScriptModel.from_file(path, device, trust_code=True).logits
    return runners


def benchmark(
    model: str | os.PathLike,
    *,
    backends: Sequence[str] = TIMED_BACKENDS,
    precisions: Sequence[str] = ("fp32", "bf16"),
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    repeats: int = 10,
    device: str = "cpu",
) -> BenchmarkResult:
    """Time ``model`` (a zoo name, checkpoint folder or ``hf://`` id) on every supported pair of ``backends``
    and ``precisions``, at each batch size: the median of ``repeats`` timed batches after two warm-ups.

    The input is normalised random data of the model's own geometry (speed does not depend on pixel values).
    """
    if repeats < 1:
        raise ConfigError(f"--repeats {repeats}: must be at least 1")
    pairs = configurations(backends, precisions)
    source = resolve(model)
    if source.kind == "file":
        raise ConfigError(f"{model}: benchmark a checkpoint folder or zoo name, not an exported file")
    net, config = load_checkpoint(source.path)
    flops = count_flops(net, config.preprocess.input_size, config.in_chans)
    run_on = str(torch_device(device))
    peak_device = "cuda" if run_on.startswith("cuda") else "cpu"
    peaks = {
        "fp32": matmul_peak_gflops(torch.float32, device=peak_device),
        "bf16": matmul_peak_gflops(torch.bfloat16, device=peak_device),
    }
    peaks["int8"] = peaks["fp32"]  # no int8 matmul peak from torch: int8 is reported against fp32
    rows = []
    with tempfile.TemporaryDirectory(prefix="cifarzoo-benchmark-") as tmp:
        runners = _runners(net, config, pairs, run_on, Path(tmp))
        for batch_size in batch_sizes:
            x = parity_inputs(config, n=batch_size)
            for (backend, precision), fn in runners.items():
                # fn returns host numpy logits, so a CUDA run is synchronised by the copy.
                seconds = median_seconds(lambda: fn(x), repeats=repeats)  # noqa: B023 (timed here)
                rate = batch_size / seconds
                achieved = rate * flops / 1e9
                rows.append(BenchmarkRow(backend, precision, batch_size, seconds * 1000, rate, achieved,
                                         achieved / peaks[precision]))
    return BenchmarkResult(model=str(model), device=run_on, machine=machine_description(), flops_per_image=flops,
                           peak_gflops=peaks, repeats=repeats, rows=rows)

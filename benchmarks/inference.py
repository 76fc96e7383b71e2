"""Inference speed per backend and precision on this machine, relative to torch eager fp32, and the CLI's cold start.

    python benchmarks/inference.py [--archs resnet26 resnet34 resnet50] [--fm-model resnet26-fm]

A thin caller of ``cifarzoo benchmark`` (:func:`cifarzoo.engines.benchmark.benchmark`) for each arch (CIFAR-10
geometry, 32x32x3, random weights: speed does not depend on the values): latency at batch 1 (median of 50
runs) and throughput at batch 256 (median of 5) for torch fp32/bf16 channels_last, TorchScript, ONNX fp32 and
ONNX int8, next to the baseline the engine does not run: torch eager fp32 in NCHW. With ``--fm-model``, the
int8 model's accuracy change on the Fashion-MNIST test set is measured too, and the cold start of
``cifarzoo predict one.png`` is timed for the onnx and torch backends.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, print_table  # noqa: E402

import cifarzoo  # noqa: E402
from cifarzoo.engines.benchmark import benchmark  # noqa: E402
from cifarzoo.engines.export import export  # noqa: E402
from cifarzoo.io.checkpoint import load_checkpoint  # noqa: E402
from cifarzoo.io.export import parity_inputs  # noqa: E402
from cifarzoo.io.resolve import resolve_model_dir  # noqa: E402
from cifarzoo.runtime.onnx import OnnxModel  # noqa: E402
from cifarzoo.runtime.torch_runner import TorchRunner  # noqa: E402

BATCHES = {1: 50, 256: 5}  # batch size -> timed repeats
PRECISIONS = ("fp32", "bf16", "int8")


def seconds(fn: TorchRunner, x: np.ndarray, repeats: int) -> float:
    """The median wall time of ``fn(x)`` after two warm-ups (the engine's rule, for the eager baseline)."""
    fn(x)
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_start(folder: Path, image: Path, backend: str, repeats: int = 3) -> float:
    exe = shutil.which("cifarzoo", path=str(Path(sys.executable).parent)) or "cifarzoo"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([exe, "predict", str(image), "--model", str(folder), "--backend", backend],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="*", default=["resnet26", "resnet34", "resnet50"])
    parser.add_argument("--fm-model", default=None, help="a trained Fashion-MNIST model: int8 accuracy + cold start")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cifarzoo-bench-"))
    from PIL import Image

    rng = np.random.default_rng(0)
    rows: list[list[object]] = []
    for arch in args.archs:
        folder = work / arch
        cifarzoo.create_model(f"{arch}-c10").save_pretrained(folder)
        # The baseline the table is relative to: torch eager fp32 in NCHW, what a plain PyTorch user runs.
        net, config = load_checkpoint(folder)
        eager = TorchRunner(net, channels_last=False, owns_module=True)
        base = {n: n / seconds(eager, parity_inputs(config, n=n), repeats) for n, repeats in BATCHES.items()}
        for batch_size, repeats in BATCHES.items():
            result = benchmark(folder, precisions=PRECISIONS, batch_sizes=(batch_size,), repeats=repeats)
            if not rows:
                print(f"measured matmul peak: fp32 {result.peak_gflops['fp32']:.0f} GFLOP/s, "
                      f"bf16 {result.peak_gflops['bf16']:.0f} GFLOP/s\n")
            rows.append([arch, "torch eager fp32 NCHW", batch_size, f"{1000 * batch_size / base[batch_size]:.1f}",
                         f"{base[batch_size]:.0f}", "1.00x", ""])
            rows += [[arch, f"{r.backend} {r.precision}", batch_size, f"{r.ms_per_batch:.1f}", f"{r.img_per_s:.0f}",
                      f"{r.img_per_s / base[batch_size]:.2f}x", f"{r.gflops:.0f} ({r.peak_fraction:.0%})"]
                     for r in result.rows]
    print_table(["arch", "backend", "batch", "ms/batch", "img/s", "vs eager fp32", "GFLOP/s (of peak)"], rows)

    if args.fm_model:
        fm = work / "fm"
        shutil.copytree(resolve_model_dir(args.fm_model), fm)
        export(fm, fmt="onnx")
        int8 = export(fm, fmt="onnx", dtype="int8", check=True)
        assert int8.parity is not None  # check=True always measures it
        fp32_acc = cifarzoo.evaluate(OnnxModel.from_dir(fm, device="cpu"), "fashion-mnist").top1
        int8_acc = cifarzoo.evaluate(OnnxModel.from_file(int8.path, device="cpu"), "fashion-mnist").top1
        print(f"\nint8 on {args.fm_model} (Fashion-MNIST test, 10,000 images): fp32 {fp32_acc:.2f}% -> int8 "
              f"{int8_acc:.2f}% ({int8_acc - fp32_acc:+.2f} points); top-1 agreement with torch on 256 held-out "
              f"training images {int8.parity.top1_agreement:.2%}")
        image = work / "one.png"
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(image)
        print("\ncold start of `cifarzoo predict one.png` (best of 3, wall clock):")
        for backend in ("onnx", "torch"):
            print(f"  --backend {backend}: {cold_start(fm, image, backend):.2f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Inference speed per backend and dtype on this machine, and the CLI's cold start.

    python benchmarks/inference.py [--archs resnet26 resnet34 resnet50] [--fm-model resnet26-fm]

For each arch (CIFAR-10 geometry, 32x32x3, random weights: speed does not depend on the values): latency at
batch 1 (median of 50 runs) and throughput at batch 256 (median of 5), for torch eager fp32 NCHW (the
baseline), torch fp32/bf16 channels_last, TorchScript, ONNX fp32 and ONNX int8. Achieved GFLOP/s is against
the measured matmul peak of the same precision (int8 against the fp32 peak). With ``--fm-model``, the int8
model's accuracy change on the Fashion-MNIST test set is measured too, and the cold start of
``cifarzoo predict one.png`` is timed for the onnx and torch backends.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, matmul_peak_gflops, print_table  # noqa: E402

import cifarzoo  # noqa: E402
from cifarzoo.engines.export import export  # noqa: E402
from cifarzoo.io.export import parity_inputs  # noqa: E402
from cifarzoo.io.resolve import resolve_model_dir  # noqa: E402
from cifarzoo.models.factory import count_flops  # noqa: E402
from cifarzoo.runtime.onnx import OnnxModel  # noqa: E402
from cifarzoo.runtime.torch_runner import TorchRunner  # noqa: E402
from cifarzoo.runtime.torchscript import TorchScriptModel  # noqa: E402


def timed(fn, x: np.ndarray, repeats: int) -> float:
    fn(x)
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def backends(folder: Path, calib_dir: Path) -> dict:
    model = cifarzoo.load(folder, device="cpu")
    eager = cifarzoo.load(folder, device="cpu")
    export(folder, fmt="onnx")
    export(folder, fmt="torchscript")
    export(folder, fmt="onnx", dtype="int8", calib_dir=str(calib_dir))
    return {
        "torch eager fp32 NCHW": ("fp32", TorchRunner(eager.net, channels_last=False, owns_module=True)),
        "torch fp32 channels_last": ("fp32", TorchRunner(model.net, owns_module=True)),
        "torch bf16 channels_last": (
            "bf16", TorchRunner(cifarzoo.load(folder, device="cpu").net, dtype=torch.bfloat16, owns_module=True)
        ),
        "torchscript fp32": ("fp32", TorchScriptModel.from_dir(folder, device="cpu", trust_code=True).logits),
        "onnx fp32": ("fp32", OnnxModel.from_dir(folder, device="cpu").logits),
        "onnx int8": ("int8", OnnxModel.from_file(folder / "model.int8.onnx", device="cpu").logits),
    }


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
    peak = {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16)}
    peak["int8"] = peak["fp32"]
    print(f"measured matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s\n")
    work = Path(tempfile.mkdtemp(prefix="cifarzoo-bench-"))
    calib = work / "calib"
    calib.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(calib / f"{i}.png")

    rows = []
    for arch in args.archs:
        folder = work / arch
        cifarzoo.create_model(f"{arch}-c10").save_pretrained(folder)
        config = cifarzoo.load(folder).config
        flops = count_flops(cifarzoo.load(folder).net, 32, 3)
        x1, x256 = parity_inputs(config, n=1), parity_inputs(config, n=256)
        base = None
        for name, (precision, fn) in backends(folder, calib).items():
            latency = timed(fn, x1, 50)
            rate = 256 / timed(fn, x256, 5)
            base = base or rate
            rows.append([arch, name, f"{latency * 1000:.1f}", f"{rate:.0f}", f"{rate / base:.2f}x",
                         f"{rate * flops / 1e9:.0f} ({rate * flops / 1e9 / peak[precision]:.0%})"])
    print_table(["arch", "backend", "batch-1 ms", "batch-256 img/s", "vs eager fp32", "GFLOP/s (of peak)"], rows)

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

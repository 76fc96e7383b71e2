"""Turn a finished run into the package's bundled offline default, and print its registry entry.

    python train/bundle.py runs/resnet26-fm

Writes ``cifarzoo/weights/<name>/``: fp16 safetensors (half the size; loading casts back to fp32), the fp32
ONNX export (parity-checked against torch, so ``cifarzoo predict`` takes the torch-free path) and a
config.json whose metrics are re-measured on the bundled files with ``cifarzoo.evaluate`` through the same
default backend as the CLI -- so ``cifarzoo eval --dataset fashion-mnist --split test --model <name>``
reproduces them exactly. The torch backend is measured too and must agree.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import cifarzoo
from cifarzoo.engines.export import export
from cifarzoo.engines.runtime import ONNX_NAME
from cifarzoo.atomic import atomic_write_text
from cifarzoo.io.checkpoint import CONFIG_NAME, WEIGHTS_NAME
from cifarzoo.io.integrity import file_sha256

PACKAGE_WEIGHTS = Path(cifarzoo.__file__).parent / "weights"
SIZE_LIMIT = 25_000_000  # bytes: everything bundled in the package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()

    trained = cifarzoo.load(args.run_dir, device="cpu")
    name, dataset = trained.config.name, trained.config.dataset
    dest = PACKAGE_WEIGHTS / name
    trained.save_pretrained(dest, dtype=torch.float16)
    onnx_export = export(dest, "onnx", check=True)
    print(f"ONNX parity vs torch: {onnx_export.parity.describe()}")

    default = cifarzoo.load(dest, device="cpu", backend="auto")  # what the CLI uses: ONNX here
    torch_model = cifarzoo.load(dest, device="cpu", backend="torch")
    test = cifarzoo.evaluate(default, dataset, "test")
    test_torch = cifarzoo.evaluate(torch_model, dataset, "test")
    if test_torch.top1 != test.top1:
        raise SystemExit(f"backends disagree on the test set: onnx {test.top1} vs torch {test_torch.top1}")
    test_flip = cifarzoo.evaluate(default, dataset, "test", tta="flip")
    val = cifarzoo.evaluate(default, dataset, "val")
    run_metrics = trained.config.metrics
    metrics = {
        "test_top1": test.top1,
        "test_top5": test.top5,
        "test_top1_flip_tta": test_flip.top1,
        "val_top1": val.top1,
        "test_ece": test.ece,
        "best_epoch": run_metrics["best_epoch"],
        "epochs": run_metrics["epochs"],
    }
    # Record the metrics in config.json, and re-export so the ONNX file's embedded config carries them too;
    # then check once more that the final files reproduce the recorded test accuracy.
    atomic_write_text(dest / CONFIG_NAME, json.dumps(torch_model.config.replace(metrics=metrics).to_dict(), indent=2) + "\n")
    export(dest, "onnx", check=True)
    final = cifarzoo.evaluate(cifarzoo.load(dest, device="cpu", backend="auto"), dataset, "test")
    if final.top1 != test.top1:
        raise SystemExit(f"re-exported ONNX gives {final.top1}, not the recorded {test.top1}")
    size = sum(p.stat().st_size for p in dest.iterdir())
    if size > SIZE_LIMIT:
        raise SystemExit(f"{dest} is {size / 1e6:.1f} MB, over the {SIZE_LIMIT / 1e6:.0f} MB bundle limit")
    pins = {f: file_sha256(dest / f) for f in (WEIGHTS_NAME, ONNX_NAME)}
    print(f"wrote {dest} ({size / 1e6:.1f} MB): {json.dumps(metrics)}")
    print("\nregistry entry (cifarzoo/registry.py, _RELEASES):")
    print(f'    "{name}": (\n        WeightsSource(kind="bundled", location="{name}", sha256={json.dumps(pins)}),'
          f"\n        {json.dumps(metrics)},\n    ),")


if __name__ == "__main__":
    main()

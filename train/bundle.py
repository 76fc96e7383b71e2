"""Turn a finished run into the package's bundled offline default, and print its registry entry.

    python train/bundle.py runs/resnet26-fm

Writes ``cifarzoo/weights/<name>/`` with fp16 safetensors (half the size; loading casts back to fp32) and a
config.json whose metrics are re-measured on the bundled weights with ``cifarzoo.evaluate`` -- the same code
path as ``cifarzoo eval --dataset fashion-mnist --split test --model <name>``, which therefore reproduces them
exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

import cifarzoo
from cifarzoo.io.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_checkpoint

PACKAGE_WEIGHTS = Path(cifarzoo.__file__).parent / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()

    trained = cifarzoo.load(args.run_dir)
    name, dataset = trained.config.name, trained.config.dataset
    dest = PACKAGE_WEIGHTS / name
    trained.save_pretrained(dest, dtype=torch.float16)

    bundled = cifarzoo.load(dest)
    test = cifarzoo.evaluate(bundled, dataset, "test")
    test_flip = cifarzoo.evaluate(bundled, dataset, "test", tta="flip")
    val = cifarzoo.evaluate(bundled, dataset, "val")
    run_metrics = trained.config.metrics
    metrics = {
        "test_top1": test.top1,
        "test_top5": test.top5,
        "test_top1_flip_tta": test_flip.top1,
        "val_top1": val.top1,
        "ece": test.ece,
        "best_epoch": run_metrics["best_epoch"],
        "epochs": run_metrics["epochs"],
    }
    save_checkpoint(bundled.net.state_dict(), bundled.config.replace(metrics=metrics), dest, dtype=torch.float16)
    digest = hashlib.sha256((dest / WEIGHTS_NAME).read_bytes()).hexdigest()
    size = sum(p.stat().st_size for p in dest.iterdir())
    print(f"wrote {dest} ({size / 1e6:.1f} MB): {json.dumps(metrics)}")
    print("\nregistry entry (cifarzoo/registry.py, _RELEASES):")
    print(f'    "{name}": (\n        WeightsSource(kind="bundled", location="{name}", sha256={{"{WEIGHTS_NAME}": "{digest}"}}),'
          f"\n        {json.dumps(metrics)},\n    ),")
    assert (dest / CONFIG_NAME).is_file()


if __name__ == "__main__":
    main()

"""Re-export a bundled release's ONNX file with its weights stored as fp16: half the file, the same outputs.

    python train/compact_release.py resnet34-fm

A release's weights are fp16 values (``bundle.py`` saves them in fp16), so storing the ONNX file's weights as
fp16 too loses nothing (``cifarzoo.io.export.export_onnx(fp16_storage=True)``: BatchNorm stays unfolded and
onnxruntime folds it, and the casts, when it loads the file). The claim is checked, not assumed: the new file
must pass the fp32 parity check against torch, its logits on the whole test split are compared with the old
file's, and its test top-1 must be the recorded one exactly. Only then does it replace the old file, and the
release's sha256 pins are rewritten (``cifarzoo/_releases.py``, generated). Nothing else changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np

import cifarzoo
from cifarzoo._releases import RELEASES
from cifarzoo.data.datasets import load_dataset
from cifarzoo.data.preprocess import normalize
from cifarzoo.engines.export import export
from cifarzoo.io.export import compare_logits
from cifarzoo.io.integrity import file_sha256
from cifarzoo.io.layout import ONNX_NAME
from cifarzoo.io.resolve import resolve_weights
from cifarzoo.registry import ZOO
from cifarzoo.releases import write_releases_module
from cifarzoo.runtime.onnx import OnnxModel


def test_logits(path: Path, images: np.ndarray) -> np.ndarray:
    model = OnnxModel.from_file(path, device="cpu")
    inputs = normalize(images, model.config.preprocess)
    return np.concatenate([model.logits(inputs[i : i + 500]) for i in range(0, len(inputs), 500)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a bundled release that ships an ONNX file, e.g. resnet34-fm")
    args = parser.parse_args()

    release = RELEASES.get(args.name)
    if release is None or release.source.kind != "bundled" or ONNX_NAME not in release.source.sha256:
        raise SystemExit(f"{args.name}: not a bundled release with an {ONNX_NAME} file")
    folder = resolve_weights(ZOO[args.name])  # the registry's folder, every pinned file checked first
    recorded = release.metrics["test"]["top1"]
    dataset = OnnxModel.from_file(folder / ONNX_NAME, device="cpu").config.dataset
    if dataset is None:
        raise SystemExit(f"{args.name}: its config names no dataset to check the new file on")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / args.name
        shutil.copytree(folder, work)
        compact = export(work, fmt="onnx", check=True, fp16_storage=True)  # raises outside fp32 parity
        assert compact.parity is not None
        test = load_dataset(dataset, "test")
        old, new = test_logits(folder / ONNX_NAME, test.images), test_logits(compact.path, test.images)
        top1 = round(100.0 * float((new.argmax(1) == test.labels).mean()), 2)
        print(f"{args.name}: {compact.path.stat().st_size / 1e6:.1f} MB instead of "
              f"{(folder / ONNX_NAME).stat().st_size / 1e6:.1f}; parity vs torch {compact.parity.describe()}; "
              f"test logits vs the old file: {compare_logits(old, new).describe()}; test top-1 {top1} "
              f"(recorded {recorded})")
        if top1 != recorded:
            raise SystemExit(f"{args.name}: the compact file gives {top1}%, not the recorded {recorded}%; "
                             "nothing changed")
        shutil.copyfile(compact.path, folder / ONNX_NAME)
    # The cross-check above is independent of cifarzoo.evaluate; the release's own path must agree too.
    result = cifarzoo.evaluate(cifarzoo.load(folder, device="cpu", backend="onnx"), dataset, split="test")
    if round(result.top1, 2) != recorded:
        raise SystemExit(f"{args.name}: cifarzoo.evaluate gives {result.top1:.2f}% through the new file")
    pins = {**release.source.sha256, ONNX_NAME: file_sha256(folder / ONNX_NAME)}
    module = write_releases_module(
        {**RELEASES, args.name: dataclasses.replace(release, source=dataclasses.replace(release.source, sha256=pins))}
    )
    print(f"{args.name}: replaced {folder / ONNX_NAME}, rewrote {module}")


if __name__ == "__main__":
    main()

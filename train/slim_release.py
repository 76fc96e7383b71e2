"""Drop a bundled release's ONNX file, keeping its weights, config and measured metrics.

    python train/slim_release.py resnet26-fm

The package's bundled models share one size budget (``bundle.SIZE_LIMIT``). An ONNX file doubles a release's
size (about as large as its fp16 safetensors when its weights are stored as fp16, ``train/compact_release.py``;
twice that in fp32), so when a new model needs the room, an older one that is not the offline default gives up its
ONNX file, as ``bundle.py --no-onnx`` would have made it: ``--backend onnx/auto`` then exports it into the user's
cache on first use. Retraining or re-measuring the whole release is not needed (its weights do not change), but
the claim is checked: the test split is evaluated again through the default backend, from a fresh cache (so
through the ONNX file exported there), and must give the recorded top-1 exactly. Then the file is removed and the
release's sha256 pins are rewritten (``cifarzoo/_releases.py``, generated). Refuses the offline default, which
``cifarzoo predict`` runs without torch and so must ship its ONNX file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import cifarzoo
from cifarzoo._releases import RELEASES
from cifarzoo.io.layout import ONNX_NAME
from cifarzoo.io.resolve import resolve_weights
from cifarzoo.registry import DEFAULT_MODEL, ZOO
from cifarzoo.releases import write_releases_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a bundled release, e.g. resnet26-fm")
    args = parser.parse_args()

    release = RELEASES.get(args.name)
    if release is None or release.source.kind != "bundled":
        raise SystemExit(f"{args.name}: not a bundled release ({', '.join(sorted(RELEASES))})")
    if args.name == DEFAULT_MODEL:
        raise SystemExit(f"{args.name} is the offline default; `cifarzoo predict` needs its ONNX file")
    if ONNX_NAME not in release.source.sha256:
        raise SystemExit(f"{args.name}: the release ships no {ONNX_NAME}")
    folder = resolve_weights(ZOO[args.name])  # the registry's folder, every pinned file checked first
    recorded = release.metrics["test"]["top1"]

    # Move the file aside first, so the evaluation below cannot use it: it must export afresh, as a user would.
    # It comes back unless the cache-exported model reproduces the recorded top-1.
    aside = Path(tempfile.mkdtemp()) / ONNX_NAME
    shutil.move(folder / ONNX_NAME, aside)
    reproduced = False
    try:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["CIFARZOO_CACHE"] = cache  # read when the model is loaded
            # By folder: by name, the registry would still pin the file moved aside.
            model = cifarzoo.load(folder, device="cpu", backend="auto")
            result = cifarzoo.evaluate(model, model.config.dataset, split="test")
        reproduced = round(result.top1, 2) == recorded
    finally:
        if not reproduced:
            shutil.move(aside, folder / ONNX_NAME)
    if not reproduced:
        raise SystemExit(f"{args.name}: the cache-exported model gives {result.top1:.2f}%, not the recorded "
                         f"{recorded}%; {ONNX_NAME} kept")
    aside.unlink()
    pins = {f: sha for f, sha in release.source.sha256.items() if f != ONNX_NAME}
    slim = dataclasses.replace(release, source=dataclasses.replace(release.source, sha256=pins))
    module = write_releases_module({**RELEASES, args.name: slim})
    print(f"{args.name}: test top-1 {result.top1:.2f}% through a cache-exported {ONNX_NAME} (recorded {recorded}); "
          f"removed {folder / ONNX_NAME}, rewrote {module}")


if __name__ == "__main__":
    main()

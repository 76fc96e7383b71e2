"""Measure the corruption grid of a release bundled with ``bundle.py --skip-corruptions``, and add it.

    python train/add_robustness.py resnet50-fm

The grid (15 corruptions x 5 severities of the test split, seed 0) is measured on the bundled files through the
default backend, exactly as ``bundle.py`` measures it, and its clean pass must reproduce the release's recorded
test top-1. It is written to ``docs/robustness/<name>/``; ``test_mca`` and ``test_mca_relative`` join the release's
metrics in its config.json (and in its ONNX file's embedded config, when it ships one), and the release's sha256
pins are rewritten in the generated ``cifarzoo/_releases.py``. The weights do not change.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bundle import ROBUSTNESS_DOCS, measure_corruptions, write_final_files

import cifarzoo
from cifarzoo._releases import RELEASES
from cifarzoo.io.layout import ONNX_NAME
from cifarzoo.io.resolve import resolve_weights
from cifarzoo.registry import ZOO
from cifarzoo.releases import write_releases_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a bundled release, e.g. resnet50-fm")
    parser.add_argument("--robustness-dir", type=Path, default=ROBUSTNESS_DOCS,
                        help="Where the corruption grid goes, as <dir>/<name>/corruptions.{json,png}.")
    args = parser.parse_args()

    release = RELEASES.get(args.name)
    if release is None or release.source.kind != "bundled":
        raise SystemExit(f"{args.name}: not a bundled release ({', '.join(sorted(RELEASES))})")
    if "mca" in release.metrics["test"]:
        raise SystemExit(f"{args.name}: the release already records its corruption grid (mCA "
                         f"{release.metrics['test']['mca']}%)")
    folder = resolve_weights(ZOO[args.name])  # the registry's folder, every pinned file checked first
    model = cifarzoo.load(folder, device="cpu", backend="auto")
    grid = measure_corruptions(model, release.metrics["test"]["top1"], args.robustness_dir)
    measured = dataclasses.replace(release, metrics={**release.metrics, "test": {**release.metrics["test"], **grid}})
    config = model.config.replace(metrics=measured.flat_metrics())
    pins = write_final_files(folder, config, ship_onnx=ONNX_NAME in release.source.sha256)
    module = write_releases_module(
        {**RELEASES, args.name: dataclasses.replace(measured, source=dataclasses.replace(release.source, sha256=pins))}
    )
    print(f"{args.name}: recorded mCA {grid['mca']:.2f}% in {folder / 'config.json'} and {module}")


if __name__ == "__main__":
    main()

"""Turn a finished run into the package's bundled offline default, and record its release.

    python train/bundle.py runs/resnet26-fm
    python train/bundle.py runs/resnet26-c10-fast --variant fast     # how the run was trained, if not plain
    python train/bundle.py runs/plain26-fm --no-onnx                 # weights only: ONNX from the user's cache

Writes ``cifarzoo/weights/<name>/``: fp16 safetensors (half the size; loading casts back to fp32), the fp32
ONNX export (its weights stored as the same fp16 values, which halves the file and changes no output:
``fp16_storage``; parity-checked against torch, so ``cifarzoo predict`` takes the torch-free path; with
``--no-onnx`` it is exported into the user's cache on first use instead, which keeps the package small) and
a config.json with the temperature fitted on the validation split (temperature scaling, on the fp16 weights
as shipped) and the metrics re-measured on the bundled files with ``cifarzoo.evaluate`` through the same
default backend as the CLI -- so ``cifarzoo eval --dataset fashion-mnist --split test --model <name>``
reproduces them exactly. The torch backend is measured too and must agree. The mean corruption accuracy
(``test_mca``: the 15 CIFAR-10-C corruptions x 5 severities, seed 0, ``cifarzoo.evaluate_corruptions``) and
``test_mca_relative`` (mCA / clean top-1) are measured the same way, and the whole grid is written to
``docs/robustness/<name>/`` (``corruptions.json`` and the heatmap), which
``cifarzoo eval --model <name> --dataset fashion-mnist --split test --corruptions all --json`` reproduces.
The grid is the slow part (76 passes over the test set): ``--skip-corruptions`` releases without it, and
``train/add_robustness.py <name>`` measures it later on the bundled files and adds it to the release.

A released folder is a valid run folder too (its config keeps the recipe and epochs), so a release can be
re-measured from its own weights: copy ``cifarzoo/weights/<name>`` out and pass the copy.

The release -- sha256 pins of every bundled file, the metrics by split, license, recipe, epochs -- is then
written into the generated ``cifarzoo/_releases.py`` (:func:`cifarzoo.releases.write_releases_module`), which
the registry reads; that file is never edited by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

import cifarzoo
from cifarzoo._releases import RELEASES
from cifarzoo.atomic import atomic_write_text
from cifarzoo.engines.export import export
from cifarzoo.engines.robustness import write_robustness_report
from cifarzoo.io.integrity import file_sha256
from cifarzoo.io.layout import CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME
from cifarzoo.releases import (
    DEFAULT_LICENSE,
    RecipeRef,
    Release,
    WeightsSource,
    write_releases_module,
)
from cifarzoo.training.recipe import recipe_differences

PACKAGE_WEIGHTS = Path(cifarzoo.__file__).parent / "weights"
SIZE_LIMIT = 64_000_000  # bytes: every bundled model together (the package's wheel stays small)
ROBUSTNESS_DOCS = Path(__file__).resolve().parents[1] / "docs" / "robustness"
CORRUPTION_SEED = 0


def check_recipe(recipe: RecipeRef, recorded: object) -> None:
    """Fail unless ``recipe`` (name, variant, overrides) rebuilds the recipe the run recorded, so a release
    never claims a recipe it was not trained with."""
    if not isinstance(recorded, dict):
        raise SystemExit("the run's config.json records no recipe; cannot say what it was trained with")
    differ = recipe_differences(recipe, recorded)
    if differ:
        lines = "\n".join(f"  {key}: the run has {a!r}, the recipe gives {b!r}" for key, (a, b) in differ.items())
        raise SystemExit(f"the run was not trained with `cifarzoo train {recipe.command()}`; "
                         f"pass its --variant/--set:\n{lines}")


def measure_corruptions(model: Any, clean_top1: float, robustness_dir: Path) -> dict[str, float]:
    """The release's corruption grid on its test split: written to ``<robustness_dir>/<name>/``, summarised as
    the ``mca`` and ``mca_relative`` test metrics. ``clean_top1`` is the release's own test top-1, which the grid's
    clean pass must reproduce (one decode path, one network)."""
    config = model.config
    started = time.perf_counter()
    robustness = cifarzoo.evaluate_corruptions(model, config.dataset, split="test", corruptions="all",
                                               severities="1-5", seed=CORRUPTION_SEED)
    if round(robustness.clean_top1, 2) != round(clean_top1, 2):
        raise SystemExit(f"the corruption run's clean top-1 {robustness.clean_top1} is not eval's {clean_top1}")
    print(f"corruptions: mCA {robustness.mean_corruption_accuracy:.2f}% "
          f"({robustness.relative_robustness:.4f} of clean) in {time.perf_counter() - started:.0f} s")
    write_robustness_report(robustness, robustness_dir / config.name)
    return {"mca": robustness.mean_corruption_accuracy, "mca_relative": robustness.relative_robustness}


def write_final_files(dest: Path, config: Any, ship_onnx: bool) -> dict[str, str]:
    """Write ``config`` (carrying the release's metrics) into ``dest``, re-export its ONNX file when it ships one
    (the file embeds the config), and return the sha256 pins of every bundled file. config.json is pinned too:
    it carries the preprocessing and class names the model is used with."""
    atomic_write_text(dest / CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")
    if ship_onnx:
        export(dest, fmt="onnx", check=True, fp16_storage=True)
    return {f: file_sha256(dest / f) for f in (WEIGHTS_NAME, ONNX_NAME, CONFIG_NAME) if (dest / f).is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--variant", default=None, help="The recipe variant the run was trained with.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="A --set override the run was trained with (repeat for several, in order).")
    parser.add_argument("--license", default=DEFAULT_LICENSE, help="The weights' license, an SPDX id.")
    parser.add_argument("--no-onnx", action="store_true",
                        help="Bundle the weights and config only; --backend onnx/auto exports into the user's cache.")
    parser.add_argument("--skip-corruptions", action="store_true",
                        help="Release without the corruption grid (the slow part); add it later with "
                             "train/add_robustness.py NAME.")
    parser.add_argument("--robustness-dir", type=Path, default=ROBUSTNESS_DOCS,
                        help="Where the corruption grid goes, as <dir>/<name>/corruptions.{json,png}.")
    args = parser.parse_args()

    trained = cifarzoo.load(args.run_dir, device="cpu", backend="torch")
    if args.run_dir.resolve() == (PACKAGE_WEIGHTS / trained.config.name).resolve():
        raise SystemExit(f"{args.run_dir} is the folder this script rewrites; pass a copy of it")
    name, dataset = trained.config.name, trained.config.dataset
    recipe = RecipeRef(name=name, variant=args.variant, overrides=tuple(args.overrides))
    check_recipe(recipe, trained.config.recipe)  # before the slow part: a wrong claim fails at once
    dest = PACKAGE_WEIGHTS / name
    shutil.rmtree(dest, ignore_errors=True)  # a stale model.onnx must not outlive a --no-onnx release
    trained.save_pretrained(dest, dtype=torch.float16)
    calibration = cifarzoo.calibrate(dest, dataset, split="val", device="cpu").calibration
    print(f"temperature {calibration.temperature} fitted on {calibration.fitted_on}: "
          f"ECE {calibration.ece_before} -> {calibration.ece_after}")
    if not args.no_onnx:
        parity = export(dest, fmt="onnx", check=True, fp16_storage=True).parity
        assert parity is not None  # check=True always measures it
        print(f"ONNX parity vs torch: {parity.describe()}")

    default = cifarzoo.load(dest, device="cpu", backend="auto")  # what the CLI uses: ONNX here
    torch_model = cifarzoo.load(dest, device="cpu", backend="torch")
    test = cifarzoo.evaluate(default, dataset, split="test")
    test_torch = cifarzoo.evaluate(torch_model, dataset, split="test")
    if test_torch.top1 != test.top1:
        raise SystemExit(f"backends disagree on the test set: onnx {test.top1} vs torch {test_torch.top1}")
    test_flip = cifarzoo.evaluate(default, dataset, split="test", tta="flip")
    val = cifarzoo.evaluate(default, dataset, split="val")
    if args.skip_corruptions:  # an earlier release's grid must not pass for this one's
        shutil.rmtree(args.robustness_dir / name, ignore_errors=True)
    robustness = {} if args.skip_corruptions else measure_corruptions(default, test.top1, args.robustness_dir)
    run_metrics = trained.config.metrics
    # The Release rounds the metrics to their reported precision (top-1 to 2 decimals: exact on 10,000 test
    # images; ECE to 4). Its sha256 pins are filled in once the files are final, below.
    measured = Release(
        source=WeightsSource(kind="bundled", location=name),
        metrics={
            "test": {"top1": test.top1, "top5": test.top5, "top1_flip_tta": test_flip.top1, "ece": test.ece,
                     "uncalibrated_ece": (test.uncalibrated or {"ece": test.ece})["ece"], **robustness},
            "val": {"top1": val.top1},
        },
        license=args.license,
        recipe=recipe,
        epochs=int(run_metrics["epochs"]),
        best_epoch=int(run_metrics["best_epoch"]),
    )
    metrics = measured.flat_metrics()  # the same numbers the registry will show
    # Record the metrics in config.json, and re-export so the ONNX file's embedded config carries them too;
    # then check once more that the final files reproduce the recorded test accuracy.
    pins = write_final_files(dest, torch_model.config.replace(metrics=metrics), ship_onnx=not args.no_onnx)
    final = cifarzoo.evaluate(cifarzoo.load(dest, device="cpu", backend="auto"), dataset, split="test")
    if final.top1 != test.top1:
        raise SystemExit(f"re-exported ONNX gives {final.top1}, not the recorded {test.top1}")
    size = sum(p.stat().st_size for p in dest.iterdir())
    total = sum(p.stat().st_size for p in PACKAGE_WEIGHTS.rglob("*") if p.is_file())
    if total > SIZE_LIMIT:
        raise SystemExit(f"{PACKAGE_WEIGHTS} holds {total / 1e6:.1f} MB with {name}, over the "
                         f"{SIZE_LIMIT / 1e6:.0f} MB bundle limit")
    release = dataclasses.replace(measured, source=dataclasses.replace(measured.source, sha256=pins))
    print(f"wrote {dest} ({size / 1e6:.1f} MB): {json.dumps(metrics)}")
    module = write_releases_module({**RELEASES, name: release})
    print(f"recorded the release in {module}: {recipe.command()}, {args.license}")


if __name__ == "__main__":
    main()

"""Rebuild every zoo entry's Hugging Face repo folder from its run directory, and upload it when asked.

    python export/release.py --namespace USER                               # build build/hub/NAME, no upload
    python export/release.py --namespace USER --only 'resnet*-fm' --upload  # and publish each as USER/NAME

For each zoo entry with a trained run in ``--runs`` (``runs/NAME``, as ``cifarzoo train NAME`` writes it),
this builds the repo folder exactly like ``cifarzoo publish``: safetensors + config.json, ONNX fp32 and int8,
TorchScript (each parity-checked against torch; int8 is left out, with a note, when calibration data is
missing or its parity fails), the run's curves and metrics, and the model card rendered from MODEL_CARD.md.
With ``--upload`` each folder goes to ``NAMESPACE/NAME`` in one commit, and the script records the release
that pins it (commit sha + every file's sha256, metrics by split, license, recipe) in the generated
``cifarzoo/_releases.py`` (:func:`cifarzoo.releases.write_releases_module`), which the registry reads. Pass
``--variant``/``--set`` as the runs were trained with: each run's recorded recipe is checked against them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", required=True, help="Hub user or organisation: repos are NAMESPACE/NAME.")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="Folder of run directories, one per zoo name.")
    parser.add_argument("--out", type=Path, default=Path("build/hub"), help="Where the repo folders are (re)built.")
    parser.add_argument("--only", default="*", help="Shell-style filter on zoo names, e.g. 'resnet*-fm'.")
    parser.add_argument("--upload", action="store_true",
                        help="Upload each folder (token: HF_TOKEN or `hf auth login`).")
    parser.add_argument("--private", action="store_true", help="Create new repos as private.")
    parser.add_argument("--no-int8", action="store_true", help="Leave the int8 ONNX file out.")
    parser.add_argument("--data-dir", default=None, help="Folder holding the datasets, for int8 calibration.")
    parser.add_argument("--variant", default=None, help="The recipe variant the runs were trained with.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="A --set override the runs were trained with (repeat for several, in order).")
    parser.add_argument("--license", default=None, help="The weights' license, an SPDX id (default: the package's).")
    args = parser.parse_args(argv)

    from cifarzoo.config import ModelConfig
    from cifarzoo.engines.publish import build_hub_folder
    from cifarzoo.errors import CifarzooError
    from cifarzoo.io.hub import upload_folder
    from cifarzoo.io.integrity import file_sha256
    from cifarzoo.registry import RELEASES, list_models
    from cifarzoo.releases import (
        DEFAULT_LICENSE,
        RecipeRef,
        Release,
        WeightsSource,
        write_releases_module,
    )
    from cifarzoo.training.recipe import recipe_differences

    names = list_models(args.only)
    if not names:
        print(f"error: no zoo name matches {args.only!r} (see `cifarzoo list`)", file=sys.stderr)
        return 2
    failed = []
    releases = dict(RELEASES)  # updated and rewritten after each upload, so a later failure loses nothing
    for name in names:
        run = args.runs / name
        if not (run / "model.safetensors").is_file():
            print(f"skip {name}: no trained run in {run} (`cifarzoo train {name} --out {run}` makes one)")
            continue
        repo_id = f"{args.namespace}/{name}"
        out = args.out / name
        try:
            run_config = ModelConfig.load(run / "config.json")
            if run_config.name != name:
                raise CifarzooError(f"{run} holds {run_config.name or 'an unnamed model'}, not {name}")
            recipe = RecipeRef(name=name, variant=args.variant, overrides=tuple(args.overrides))
            if not isinstance(run_config.recipe, dict):
                raise CifarzooError(f"{run}/config.json records no recipe; cannot say what it was trained with")
            differ = recipe_differences(recipe, run_config.recipe)
            if differ:  # checked before building: a release must not claim a recipe it was not trained with
                raise CifarzooError(f"not trained with `cifarzoo train {recipe.command()}`: "
                                    + ", ".join(f"{key} is {a!r}, not {b!r}" for key, (a, b) in differ.items()))
            shutil.rmtree(out, ignore_errors=True)  # the script owns build/hub/NAME: every release starts clean
            # The card's front matter takes Hub license ids: SPDX ids in lower case.
            card_license = {"license": args.license.lower()} if args.license else {}
            built = build_hub_folder(run, out, repo_id, int8=not args.no_int8, data_dir=args.data_dir, **card_license)
            upload = upload_folder(out, repo_id, private=args.private,
                                   commit_message=f"release {name} from {run}") if args.upload else None
        except CifarzooError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        for note in built.notes:
            print(f"note: {name}: {note}")
        if upload is None:
            print(f"built {out} ({', '.join(built.files)}); not uploaded (pass --upload)")
            continue
        print(f"uploaded {name}: {upload.commit_url}")
        pins = {path.name: file_sha256(path) for path in sorted(out.iterdir())}
        source = WeightsSource(kind="hub", location=repo_id, revision=upload.revision, sha256=pins)
        try:
            # Non-finite metrics (NaN for a split the run did not measure) are left out of the release.
            releases[name] = Release.from_flat_metrics(built.config.metrics, source=source,
                                                       license=args.license or DEFAULT_LICENSE, recipe=recipe)
        except ValueError as exc:  # uploaded, but not releasable as recorded: say so, keep the other names going
            print(f"error: {name}: uploaded, but not recorded as a release: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        module = write_releases_module(releases)
        print(f"recorded {name} ({recipe.command()}) in {module}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

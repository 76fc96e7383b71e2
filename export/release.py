"""Rebuild every zoo entry's Hugging Face repo folder from its run directory, and upload it when asked.

    python export/release.py --namespace USER                               # build build/hub/NAME, no upload
    python export/release.py --namespace USER --only 'resnet*-fm' --upload  # and publish each as USER/NAME

For each zoo entry with a trained run in ``--runs`` (``runs/NAME``, as ``cifarzoo train NAME`` writes it),
this builds the repo folder exactly like ``cifarzoo publish``: safetensors + config.json, ONNX fp32 and int8,
TorchScript (each parity-checked against torch; int8 is left out, with a note, when calibration data is
missing or its parity fails), the run's curves and metrics, and the model card rendered from MODEL_CARD.md.
With ``--upload`` each folder goes to ``NAMESPACE/NAME`` in one commit, and the script prints the registry
entry that pins it (commit sha + every file's sha256) for ``_RELEASES`` in ``cifarzoo/registry.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", required=True, help="Hub user or organisation: repos are NAMESPACE/NAME.")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="Folder of run directories, one per zoo name.")
    parser.add_argument("--out", type=Path, default=Path("build/hub"), help="Where the repo folders are (re)built.")
    parser.add_argument("--only", default="*", help="Shell-style filter on zoo names, e.g. 'resnet*-fm'.")
    parser.add_argument("--upload", action="store_true", help="Upload each folder (token: HF_TOKEN or `hf auth login`).")
    parser.add_argument("--private", action="store_true", help="Create new repos as private.")
    parser.add_argument("--no-int8", action="store_true", help="Leave the int8 ONNX file out.")
    parser.add_argument("--data-dir", default=None, help="Folder holding the datasets, for int8 calibration.")
    args = parser.parse_args(argv)

    from cifarzoo.config import ModelConfig
    from cifarzoo.engines.publish import build_hub_folder
    from cifarzoo.errors import CifarzooError
    from cifarzoo.io.hub import upload_folder
    from cifarzoo.io.integrity import file_sha256
    from cifarzoo.registry import list_models

    names = list_models(args.only)
    if not names:
        print(f"error: no zoo name matches {args.only!r} (see `cifarzoo list`)", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        run = args.runs / name
        if not (run / "model.safetensors").is_file():
            print(f"skip {name}: no trained run in {run} (`cifarzoo train {name} --out {run}` makes one)")
            continue
        repo_id = f"{args.namespace}/{name}"
        out = args.out / name
        try:
            trained = ModelConfig.load(run / "config.json").name
            if trained != name:
                raise CifarzooError(f"{run} holds {trained or 'an unnamed model'}, not {name}")
            shutil.rmtree(out, ignore_errors=True)  # the script owns build/hub/NAME: every release starts clean
            built = build_hub_folder(run, out, repo_id, int8=not args.no_int8, data_dir=args.data_dir)
            upload = upload_folder(out, repo_id, private=args.private,
                                   commit_message=f"release {name} from {run}") if args.upload else None
        except CifarzooError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        for note in built.notes:
            print(f"note: {name}: {note}")
        pins = {path.name: file_sha256(path) for path in sorted(out.iterdir())}
        metrics = {k: v for k, v in built.config.metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if upload is None:
            print(f"built {out} ({', '.join(built.files)}); not uploaded (pass --upload)")
            continue
        print(f"uploaded {name}: {upload.commit_url}")
        print(
            f'    "{name}": (\n'
            f'        WeightsSource(kind="hub", location="{repo_id}", revision="{upload.revision}",\n'
            f"                      sha256={json.dumps(pins)}),\n"
            f"        {json.dumps(metrics)},\n"
            f"    ),"
        )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

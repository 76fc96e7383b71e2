#!/usr/bin/env bash
# Train one zoo entry and release it in one unattended chain, for a session whose cores have nothing else to do:
#
#   nohup train/release_run.sh resnet50-fm --set train.log_grad_norms=true > runs/resnet50-fm.out 2>&1 &
#
# 1. `cifarzoo train NAME --out $RUNS/NAME [--set ...]`, resuming when the run folder holds a state.pt;
# 2. the run's evidence (metrics.jsonl, config.json, recipe.json, curves.png, train.log) into docs/runs/NAME/;
# 3. `train/bundle.py` on the run with the same --set overrides (so the release records the recipe it was
#    trained with) and $BUNDLE_ARGS, by default `--no-onnx --skip-corruptions`: weights only, and the
#    corruption grid (~30 min for a ResNet-50) left for `train/add_robustness.py NAME`;
# 4. `train/verify_zoo.py NAME`: the release against an independent measurement.
# Each step starts the moment the one before ends; what is left to do by hand is to read the output and commit.
# Only --set KEY=VALUE options are taken (the release script rebuilds the recipe from them).
set -euo pipefail
name=${1:?usage: train/release_run.sh NAME [--set KEY=VALUE ...]}
shift
overrides=()
while [ $# -gt 0 ]; do
  [ "$1" = --set ] && [ $# -ge 2 ] || { echo "release_run.sh: only --set KEY=VALUE options, got '$1'" >&2; exit 2; }
  overrides+=(--set "$2")
  shift 2
done
PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-runs}
read -r -a bundle_args <<<"${BUNDLE_ARGS-"--no-onnx --skip-corruptions"}"  # set, even empty: used as given
run="$RUNS/$name"
log="$RUNS/$name.train.log"  # beside the run folder: `cifarzoo train` wants a new run's folder empty
mkdir -p "$RUNS"
resume=()
[ -f "$run/state.pt" ] && resume=(--resume)

echo "== $(date -u +%FT%TZ) train $name ${overrides[*]} ${resume[*]}"
"$PYTHON" -m cifarzoo train "$name" --out "$run" "${overrides[@]}" "${resume[@]}" 2>&1 | tee -a "$log"

echo "== $(date -u +%FT%TZ) evidence -> docs/runs/$name"
mkdir -p "docs/runs/$name"
cp "$run"/{metrics.jsonl,config.json,recipe.json,curves.png} "docs/runs/$name/"
cp "$log" "docs/runs/$name/train.log"

echo "== $(date -u +%FT%TZ) bundle ${bundle_args[*]}"
"$PYTHON" train/bundle.py "$run" "${overrides[@]}" "${bundle_args[@]}"

echo "== $(date -u +%FT%TZ) verify"
"$PYTHON" train/verify_zoo.py "$name"
echo "== $(date -u +%FT%TZ) done: commit cifarzoo/weights/$name, cifarzoo/_releases.py and docs/runs/$name"

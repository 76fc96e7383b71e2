#!/usr/bin/env bash
# Reproduce the Fashion-MNIST studies in docs/studies.md on a CPU (about 90 minutes on 2 cores).
# A finished run is one whose metrics are in $DOCS/runs (what the tables and figures are drawn from): it is
# skipped, so delete that folder (or set DOCS=elsewhere) to run everything again. A cut-off run resumes from
# its last epoch in $OUT.
set -euo pipefail
OUT=${OUT:-runs/studies}
DOCS=${DOCS:-docs/studies}
mkdir -p "$OUT" "$DOCS/runs"

train() {  # train RECIPE RUN_NAME [cifarzoo train options...]
  local recipe=$1 name=$2; shift 2
  local dir="$OUT/$name"
  if grep -qs "\"test_top1\"" "$DOCS/runs/$name/config.json"; then echo "$name: finished, skipped"; return; fi
  local resume=()
  if [ -f "$dir/state.pt" ]; then resume=(--resume); fi
  cifarzoo train "$recipe" --out "$dir" "$@" "${resume[@]}"
  # Keep what the tables and figures are drawn from (not the weights) beside the docs.
  mkdir -p "$DOCS/runs/$name"
  cp "$dir/metrics.jsonl" "$dir/config.json" "$dir/recipe.json" "$DOCS/runs/$name/"
}

# 1. Knowledge distillation: a ResNet-26 student on 5k images, from scratch vs distilled from the bundled
#    resnet26-fm teacher (trained on the full training split), same recipe otherwise; two seeds.
for seed in 0 1; do
  sfx=$([ "$seed" = 0 ] && echo "" || echo "-seed$seed")
  train resnet26-fm "resnet26-fm-scratch-5k$sfx" --set data.train_subset=5000 --set train.seed=$seed --epochs 15
  train resnet26-fm "resnet26-fm-distilled-5k$sfx" --set data.train_subset=5000 --set train.seed=$seed --variant distill --epochs 15
done
cifarzoo compare "$DOCS"/runs/resnet26-fm-scratch-5k "$DOCS"/runs/resnet26-fm-distilled-5k \
  --out "$DOCS/distill-resnet26-fm-5k.png" \
  --title "Fashion-MNIST, 5k training images: ResNet-26 from scratch vs distilled from resnet26-fm"
cifarzoo compare "$DOCS"/runs/resnet26-fm-{scratch,distilled}-5k{,-seed1} --table --target 80 >"$DOCS/distill-table.md"

# 2. Residual vs plain: ResNet-50 and plain-50 (the same net without skips), same recipe, 10k images, 10 epochs,
#    with per-stage gradient norms logged every epoch.
for net in resnet50-fm plain50-fm; do
  train "$net" "$net" --set data.train_subset=10000 --set train.log_grad_norms=true --epochs 10
done
cifarzoo compare "$DOCS/runs/resnet50-fm" "$DOCS/runs/plain50-fm" --out "$DOCS/plain50-vs-resnet50-fm.png" --table \
  --title "Fashion-MNIST, 10k training images, 10 epochs, same recipe: ResNet-50 vs plain-50" >"$DOCS/plain-vs-residual-table.md"

# 3. Grad-CAM on the bundled resnet26-fm (the figures docs/studies.md shows).
cifarzoo explain examples/test00000_ankle-boot.png --model resnet26-fm --out "$DOCS/gradcam-ankle-boot.png"
cifarzoo explain examples/test00000_ankle-boot.png --model resnet26-fm --class sandal --out "$DOCS/gradcam-ankle-boot-as-sandal.png"
cifarzoo explain examples/test00002_trouser.png --model resnet26-fm --layer stages.2 --out "$DOCS/gradcam-trouser-stages2.png"
cifarzoo explain examples/test00018_bag.png --model resnet26-fm --out "$DOCS/gradcam-bag.png"

# 4. Optimisers: the same ResNet-26 on 5k images (seed 0), each study variant against the default recipe
#    (SGD Nesterov, weight decay with BatchNorm/bias exempt: run 1's scratch student, not trained again).
for v in sgd-l2 adam-wd adamw plateau; do
  train resnet26-fm "resnet26-fm-5k-$v" --set data.train_subset=5000 --variant "$v" --epochs 15
done
cifarzoo compare "$DOCS"/runs/resnet26-fm-scratch-5k "$DOCS"/runs/resnet26-fm-5k-{sgd-l2,adam-wd,adamw,plateau} \
  --out "$DOCS/optimisers-resnet26-fm-5k.png" --table --target 80 \
  --title "Fashion-MNIST, 5k training images, ResNet-26, 15 epochs: optimiser variants" >"$DOCS/optimiser-table.md"

# 5. Depth on the full data (hours per run on 2 cores; set DEPTH=1 to include it): the six -fm entries, 55k/5k,
#    25 epochs, one recipe and seed, grad norms logged. Evidence goes to docs/runs/<name>/ like the releases',
#    except ResNet-34's: its release is a longer (35-epoch) run, so its 25-epoch depth run is kept apart.
if [ "${DEPTH:-0}" = 1 ]; then
  depth_runs=(docs/runs/resnet26-fm docs/runs/plain26-fm docs/studies/runs/resnet34-fm-25ep docs/runs/plain34-fm
              docs/runs/resnet50-fm docs/runs/plain50-fm)
  for dir in "${depth_runs[@]}"; do
    name=$(basename "$dir")
    OUT="$OUT/full" DOCS=$(dirname "$(dirname "$dir")") train "${name%-25ep}" "$name" --epochs 25 --set train.log_grad_norms=true
    cp "$OUT/full/$name/curves.png" "$dir/" 2>/dev/null || true
  done
  runs=()
  for dir in "${depth_runs[@]}"; do
    [ -f "$dir/metrics.jsonl" ] && runs+=("$dir")
  done
  cifarzoo compare "${runs[@]}" --out "$DOCS/depth-fm.png" --table --target 93 \
    --title "Fashion-MNIST, 55k training images, 25 epochs, same recipe and seed: ResNet vs plain by depth" \
    >"$DOCS/depth-table.md"
fi

# 6. Time to 94% validation: ResNet-26 on the full data with a 7-epoch budget (~25 min each on 2 cores; set
#    ABLATION=1 to include it). The default recipe cut to 7 epochs, the same with a shorter EMA (0.99), the
#    `fast` variant (batch 256, lr 0.2, one-cycle, label smoothing 0.2, cutout 12), and it with cutout off.
#    Measured on the validation split; the test split is only evaluated once at each run's end.
if [ "${ABLATION:-0}" = 1 ]; then
  train resnet26-fm resnet26-fm-7ep --epochs 7
  train resnet26-fm resnet26-fm-7ep-ema99 --epochs 7 --set train.ema_decay=0.99
  train resnet26-fm resnet26-fm-7ep-fast --variant fast --epochs 7
  train resnet26-fm resnet26-fm-7ep-fast-nocutout --variant fast --epochs 7 --set data.cutout=0
  cifarzoo compare "$DOCS"/runs/resnet26-fm-7ep{,-ema99,-fast,-fast-nocutout} --out "$DOCS/time-to-94-fm.png" \
    --table --target 94 --title "Fashion-MNIST, 55k training images, ResNet-26, 7 epochs: recipe ablation" >"$DOCS/time-to-94-table.md"
fi

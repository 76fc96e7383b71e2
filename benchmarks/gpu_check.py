"""GPU readiness: one short epoch of each CIFAR recipe on CUDA, printing img/s.

    python benchmarks/gpu_check.py [--steps 50] [--recipes resnet26-c10 resnet50-c100] [--no-compile]

Runs the real Trainer with bf16 autocast, channels_last and torch.compile, inside a single-rank NCCL process
group (so the DDP code path is exercised), on random CIFAR-shaped data kept on the GPU. Needs CUDA.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, matmul_peak_gflops, print_table  # noqa: E402

from cifarzoo.data.specs import get_dataset_spec  # noqa: E402
from cifarzoo.models.factory import build_model, count_flops  # noqa: E402
from cifarzoo.training.distributed import DistContext  # noqa: E402
from cifarzoo.training.loop import TrainData, Trainer  # noqa: E402
from cifarzoo.training.recipe import list_recipes, load_recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--recipes", nargs="*", default=[r for r in list_recipes() if r.endswith(("-c10", "-c100"))])
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check needs a CUDA device")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    torch.distributed.init_process_group("nccl")
    print(f"machine: {machine()}, {torch.cuda.get_device_name()}")
    peak = matmul_peak_gflops(torch.bfloat16, n=8192, device="cuda")
    print(f"measured bf16 matmul peak: {peak / 1000:.0f} TFLOP/s")
    ctx = DistContext(0, 1, 0, torch.device("cuda", 0))
    rows = []
    for name in args.recipes:
        recipe = load_recipe(name, variant="fast", overrides=["train.epochs=3", "schedule.warmup_epochs=0",
                                                              f"train.compile={not args.no_compile}"])
        spec = get_dataset_spec(recipe.data.dataset)
        n = args.steps * recipe.train.batch_size
        gen = torch.Generator(device="cuda").manual_seed(0)
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device="cuda", generator=gen)
        labels = torch.randint(0, spec.num_classes, (n,), device="cuda", generator=gen)
        data = TrainData(images, labels, images[:1024], labels[:1024], None, None, spec.classes,
                         spec.preprocess_config(), spec.tag)
        trainer = Trainer(recipe, Path("/nonexistent"), data, ctx, progress=False)
        trainer.model = torch.nn.parallel.DistributedDataParallel(trainer.net, device_ids=[0])
        if recipe.train.compile:
            trainer.model = torch.compile(trainer.model)  # type: ignore[assignment]
        trainer.train_epoch(1)  # compile + warm-up
        stats = trainer.train_epoch(2)
        flops = 3 * count_flops(build_model(recipe.model.arch, spec.num_classes), 32, 3)
        rows.append([name, recipe.train.batch_size, f"{stats['img_per_s']:.0f}",
                     f"{stats['img_per_s'] * flops / 1e12:.1f} ({stats['img_per_s'] * flops / 1e9 / peak:.0%})"])
    print_table(["recipe (fast)", "batch", "img/s", "TFLOP/s (of peak)"], rows)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

"""Training throughput on this machine: cifarzoo's engine vs the loop typical CIFAR repositories write.

    python benchmarks/train_throughput.py [--arch resnet50] [--steps 20] [--run runs/resnet26-fm] [--profile]

- ours: the real Trainer (data as one uint8 tensor on the device, batched crop/flip/cutout, bf16 autocast,
  channels_last), timed over whole epochs of ``--steps`` steps.
- reference: torchvision DataLoader (2 workers) over PIL images with RandomCrop/RandomHorizontalFlip/
  ToTensor/Normalize, fp32, NCHW, eager -- the kuangliu/pytorch-cifar style loop.
Both train the same arch with SGD Nesterov at batch 128 on 32x32x3 inputs. Achieved GFLOP/s counts a
training step as 3x the forward FLOPs. With ``--run``, it also reports time-to-93% validation accuracy on
Fashion-MNIST from a finished run's metrics.jsonl (ours, measured) and the reference loop's time for the same
number of epochs at its measured Fashion-MNIST throughput (an estimate: it assumes the reference recipe needs
as many epochs). With ``--compile``, ours is also timed with ``train.compile=true``. With ``--profile``, one
epoch of each loop also runs under ``torch.profiler`` and the top-10 operators by self CPU time are printed:
the reference loop (before) and ours (after). With ``--breakdown``, it prints where one step of ours goes (the
augmentation, forward and backward, the optimiser step, the EMA) and what the memory-bound operators of the
first stage's activations cost against a plain copy of the same bytes, eager and compiled.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, matmul_peak_gflops, median_seconds, print_table  # noqa: E402

from cifarzoo.data.specs import CIFAR10, FASHION_MNIST, DatasetSpec  # noqa: E402
from cifarzoo.models.factory import build_model, count_flops  # noqa: E402
from cifarzoo.training.distributed import DistContext  # noqa: E402
from cifarzoo.training.loop import TrainData, Trainer  # noqa: E402
from cifarzoo.training.recipe import load_recipe  # noqa: E402

BATCH = 128


def _random_split(spec: DatasetSpec, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    channels = 1 if spec.color_mode == "L" else 3
    images = rng.integers(0, 256, (n, spec.input_size, spec.input_size, channels), dtype=np.uint8)
    return images, rng.integers(0, spec.num_classes, n)


def ours_trainer(arch: str, spec: DatasetSpec, steps: int, epochs: int = 2, compile: bool = False) -> Trainer:
    """The real Trainer on ``steps`` batches of random images, its kernels warmed up (and with ``compile``, the
    model compiled) by one epoch."""
    images, labels = _random_split(spec, steps * BATCH)
    to_t = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())  # noqa: E731
    data = TrainData(to_t(images), torch.from_numpy(labels), to_t(images[:BATCH]), torch.from_numpy(labels[:BATCH]),
                     None, None, spec.classes, spec.preprocess_config(), spec.tag)
    recipe = load_recipe(f"{arch}-{spec.tag}", overrides=[f"train.batch_size={BATCH}", f"train.epochs={epochs + 1}",
                                                          "schedule.warmup_epochs=0", f"train.compile={compile}"])
    trainer = Trainer(recipe, Path("/nonexistent"), data, DistContext(), progress=False)
    trainer.train_epoch(1)  # warm-up: oneDNN picks and caches its kernels
    return trainer


def ours_img_per_s(arch: str, spec: DatasetSpec, steps: int, epochs: int = 2, compile: bool = False) -> float:
    trainer = ours_trainer(arch, spec, steps, epochs, compile)
    rates = [trainer.train_epoch(e)["img_per_s"] for e in range(2, epochs + 2)]
    return float(np.median(rates))


def table_row(label: str, ours: float, ref: float, flops: float, peak_bf16: float, ref_cell: str) -> list[str]:
    """One row of the throughput table: ours against the reference, and ours' achieved GFLOP/s."""
    return [label, f"{ours:.0f}", f"{ref:.0f}", f"{ours / ref:.2f}x",
            f"{ours * flops / 1e9:.0f} ({ours * flops / 1e9 / peak_bf16:.0%} of bf16 peak)", ref_cell]


def reference_epoch(arch: str, spec: DatasetSpec, steps: int) -> Callable[[], float]:
    """One epoch of the reference loop as a function returning its img/s, after a warm-up epoch."""
    from PIL import Image
    from torchvision import transforms

    images, labels = _random_split(spec, steps * BATCH)
    pil = [Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img) for img in images]
    tf = transforms.Compose([
        transforms.RandomCrop(spec.input_size, padding=4 if spec.input_size == 32 else 2),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(spec.mean, spec.std),
    ])

    class PILDataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(pil)

        def __getitem__(self, i: int):
            return tf(pil[i]), int(labels[i])

    loader = torch.utils.data.DataLoader(PILDataset(), batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True,
                                         persistent_workers=True)
    model = build_model(arch, spec.num_classes, 1 if spec.color_mode == "L" else 3).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    crit = nn.CrossEntropyLoss()

    def epoch() -> float:
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            opt.zero_grad()
            crit(model(x), y).backward()
            opt.step()
            seen += len(y)
        return seen / (time.perf_counter() - start)

    epoch()  # warm-up, worker start
    return epoch


def reference_img_per_s(arch: str, spec: DatasetSpec, steps: int) -> float:
    epoch = reference_epoch(arch, spec, steps)
    return float(np.median([epoch() for _ in range(2)]))


def profile_table(run_epoch: Callable[[], object], rows: int = 10) -> str:
    """The top ``rows`` operators of one epoch by self CPU time (``torch.profiler``, CPU activity only: the
    reference loop's DataLoader workers are other processes, so its wait for them shows as the iterator's
    ``__next__``)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_epoch()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48)


def _ms(fn: Callable[[], object]) -> float:
    """Median milliseconds of ``fn`` over 10 calls, after three warm-up calls."""
    return median_seconds(fn, repeats=10, warmups=3) * 1e3


def step_breakdown(arch: str, spec: DatasetSpec) -> None:
    """Where one training step of ours goes, part by part, on one fixed batch."""
    trainer = ours_trainer(arch, spec, steps=4)
    indices = torch.arange(BATCH)
    gen = torch.Generator().manual_seed(0)
    x = trainer.augment(indices, gen).contiguous(memory_format=trainer.memory_format)
    y = trainer.data.train_labels[indices]

    def forward_backward() -> None:
        trainer._forward_backward(x, y)
        trainer.optimizer.zero_grad(set_to_none=True)

    times = {
        "augmentation (crop, flip, cutout on uint8, to bf16)":
            _ms(lambda: trainer.augment(indices, gen).contiguous(memory_format=trainer.memory_format)),
        "forward + backward": _ms(forward_backward),
    }
    trainer._forward_backward(x, y)  # gradients for the optimiser step to apply (it leaves them in place)
    times["optimiser step"] = _ms(trainer.optimizer.step)
    if trainer.ema is not None:
        ema = trainer.ema
        times["EMA update"] = _ms(lambda: ema.update(trainer.net))
    step = _ms(lambda: trainer.train_step(x, y))
    rows = [[name, f"{ms:.1f}", f"{ms / step:.1%}"] for name, ms in times.items()]
    rows.append(["whole train_step (the above, less augmentation)", f"{step:.1f}", "100%"])
    print(f"one step of ours, {arch} {spec.title}, batch {BATCH}:")
    print_table(["part", "ms", "of the step"], rows)


def _activation_op_rows(x: torch.Tensor, layout: str) -> list[list[object]]:
    """Copy, ReLU and training-mode BatchNorm forward and backward on ``x`` in its memory format."""
    channels = x.shape[1]
    weight, bias = torch.ones(channels), torch.zeros(channels)
    mean, var = torch.zeros(channels), torch.ones(channels)
    grad = torch.randn_like(x)
    _, saved_mean, saved_invstd = torch.native_batch_norm(x, weight, bias, mean, var, True, 0.1, 1e-5)
    ops: dict[str, tuple[Callable[[], object], int]] = {
        "copy": (lambda: x.clone(), 2),
        "relu": (lambda: torch.relu(x), 2),
        "BatchNorm forward": (lambda: torch.native_batch_norm(x, weight, bias, mean, var, True, 0.1, 1e-5), 3),
        "BatchNorm backward": (lambda: torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, mean, var, saved_mean, saved_invstd, True, 1e-5, [True, True, True]), 5),
    }
    rows: list[list[object]] = []
    for name, (fn, passes) in ops.items():
        ms = _ms(fn)
        rows.append([f"{name}, {layout}", f"{ms:.2f}", passes, f"{passes * x.nbytes / ms / 1e6:.1f}"])
    return rows


def memory_bound_ops(channels: int = 128, size: int = 32) -> None:
    """The activation-sized operators of resnet50's first stage (bf16, batch 128) against a copy of the same
    bytes: BatchNorm in channels_last (what the convolutions want) and in NCHW, and BatchNorm + ReLU compiled.
    GB/s counts the passes over the tensor each operator needs at least: BatchNorm's forward reads the input for
    the statistics and again to normalise it, then writes (3); its backward reads the input and the gradient for
    the sums, reads both again and writes the input's gradient (5)."""
    import torch.nn.functional as F

    from cifarzoo.runtime.host_memory import reuse_freed_memory

    reuse_freed_memory()
    x = torch.randn(BATCH, channels, size, size).to(torch.bfloat16)
    rows = _activation_op_rows(x.contiguous(memory_format=torch.channels_last), "channels_last")
    rows += _activation_op_rows(x.contiguous(), "NCHW")
    xl = x.contiguous(memory_format=torch.channels_last)
    bn = nn.BatchNorm2d(channels).train()
    bn_relu = torch.compile(lambda t: F.relu(bn(t)))
    for label, fn, passes in (("torch.compile", bn_relu, 3), ("eager", lambda t: F.relu(bn(t)), 5)):
        ms = _ms(lambda: fn(xl))  # noqa: B023 (called before the loop moves on)
        rows.append([f"BatchNorm + ReLU forward, channels_last, {label}", f"{ms:.2f}", passes,
                     f"{passes * xl.nbytes / ms / 1e6:.1f}"])
    print(f"\nmemory-bound operators on one {BATCH}x{channels}x{size}x{size} bf16 activation "
          f"({x.nbytes / 1e6:.1f} MB); GB/s counts the passes over it each operator needs at least:")
    print_table(["operator", "ms", "passes", "GB/s"], rows)


def time_to(run_dir: Path, target: float) -> tuple[int, float] | None:
    """The first epoch whose validation top-1 reaches ``target``, and the run's seconds up to it."""
    from cifarzoo.training.run_files import read_metrics

    elapsed = 0.0
    for row in read_metrics(run_dir):
        elapsed += row["seconds"]
        if row["val_top1"] >= target:
            return row["epoch"], elapsed
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--steps", type=int, default=20, help="steps of batch 128 per timed epoch")
    parser.add_argument("--run", type=Path, help="a finished Fashion-MNIST run directory, for time-to-93%%")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one epoch of each loop (--arch, CIFAR-shaped) and print the top-10 ops")
    parser.add_argument("--compile", action="store_true",
                        help="also time ours with train.compile=true (the one-time compile is in the warm-up epoch)")
    parser.add_argument("--breakdown", action="store_true",
                        help="only break one step of ours into its parts, and time the memory-bound operators")
    parser.add_argument("--profile-reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.breakdown:
        print(f"machine: {machine()}\n")
        step_breakdown(args.arch, CIFAR10)
        step_breakdown("resnet26", FASHION_MNIST)  # its recipe keeps a weight EMA
        memory_bound_ops()
        return
    if args.profile_reference:
        print(profile_table(reference_epoch(args.arch, CIFAR10, args.steps)))
        return

    print(f"machine: {machine()}")
    peak_bf16, peak_fp32 = matmul_peak_gflops(torch.bfloat16), matmul_peak_gflops(torch.float32)
    print(f"measured matmul peak: bf16 {peak_bf16:.0f} GFLOP/s, fp32 {peak_fp32:.0f} GFLOP/s\n")

    specs = (CIFAR10,) + ((FASHION_MNIST,) if args.run else ())
    archs = {spec: args.arch if spec is CIFAR10 else "resnet26" for spec in specs}
    # Every reference first: the trainer switches glibc to reusing freed memory for the rest of the process
    # (runtime/host_memory.py), and the reference loop must run with the defaults a plain script gets.
    refs = {spec: reference_img_per_s(archs[spec], spec, args.steps) for spec in specs}
    rows = []
    for spec in specs:
        arch, ref = archs[spec], refs[spec]
        flops = 3 * count_flops(build_model(arch, spec.num_classes, 1 if spec.color_mode == "L" else 3),
                                spec.input_size, 1 if spec.color_mode == "L" else 3)
        ours = ours_img_per_s(arch, spec, args.steps)
        ref_cell = f"{ref * flops / 1e9:.0f} ({ref * flops / 1e9 / peak_fp32:.0%} of fp32 peak)"
        rows.append(table_row(f"{arch} {spec.title}", ours, ref, flops, peak_bf16, ref_cell))
        if spec is FASHION_MNIST:
            fm_ours, fm_ref = ours, ref
        if args.compile:
            compiled = ours_img_per_s(arch, spec, args.steps, compile=True)
            rows.append(table_row(f"{arch} {spec.title}, torch.compile", compiled, ref, flops, peak_bf16, ""))
    print_table(
        ["model / data", "ours img/s", "reference img/s", "speed-up", "ours GFLOP/s", "reference GFLOP/s"], rows
    )

    if args.profile:
        # The allocator is already switched by the timed runs above, so the reference is profiled in a fresh
        # process that never builds a Trainer.
        print(f"\nprofile, before: the reference loop, one epoch of {args.steps} steps ({args.arch}, CIFAR-10 shape)")
        print(subprocess.run([sys.executable, __file__, "--profile-reference", "--arch", args.arch,
                              "--steps", str(args.steps)], check=True, capture_output=True, text=True).stdout)
        trainer = ours_trainer(args.arch, CIFAR10, args.steps)
        print(f"profile, after: ours, one epoch of {args.steps} steps ({args.arch}, CIFAR-10 shape)")
        print(profile_table(lambda: trainer.train_epoch(2)))

    if args.run:
        reached = time_to(args.run, 93.0)
        if reached is None:
            print(f"\n{args.run} never reached 93% validation accuracy")
            return
        epoch, seconds = reached
        from cifarzoo.training.run_files import read_metrics

        train_images = read_metrics(args.run)[0]["img_per_s"] * read_metrics(args.run)[0]["seconds"]
        print(f"\ntime to 93% val top-1 on Fashion-MNIST, run {args.run} (reached at epoch {epoch}):")
        print(f"  ours, wall clock of the run as it happened: {seconds / 60:.1f} min")
        print(f"  ours, {epoch} epochs at the throughput measured above: {epoch * train_images / fm_ours / 60:.1f} min")
        print(f"  reference loop, {epoch} epochs at its throughput: {epoch * train_images / fm_ref / 60:.1f} min "
              f"(estimate: assumes its recipe needs as many epochs)")


if __name__ == "__main__":
    main()

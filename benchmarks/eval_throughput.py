"""Throughput and peak memory of ``cifarzoo eval --custom-dir`` against a plain torchvision loop.

    python benchmarks/eval_throughput.py [--n 10000] [--model DIR] [--batch-size 256] [--repeats 2] [--keep]

Generates ``--n`` 32x32 PNGs in class subfolders of a temp dir (named by CIFAR-10's classes), then times, each
as a fresh subprocess with its start-up included:

- ``cifarzoo eval --custom-dir DIR --model M --json`` with the default backend (``auto``: a checkpoint folder with
  no ``model.onnx`` is exported once into the ONNX cache, parity-checked, and run on onnxruntime; thread-pool
  decoding overlapped with batched inference), timed twice: on an empty cache, so the one-time export counts,
  and with the cache warm;
- the reference: torchvision ``ImageFolder`` + ``ToTensor``/``Normalize`` + ``DataLoader(num_workers=2)`` and the
  same network in eager fp32 NCHW (``model.net``, no channels_last), the loop most CIFAR repositories use.

It reports img/s for both (total wall time, and the reference's loop alone), the ratio (the goal is 3x or
more) and the peak RSS of each. Peak RSS comes from ``/usr/bin/time -v`` when present, else from the
``ru_maxrss`` of a wrapper's child; either way it is the largest *single* process, so the reference's two
DataLoader worker processes are not added to its figure. The model defaults to an untrained resnet26-c10:
speed does not depend on the weights. Both runs see the same files, so their top-1 must agree (a sanity check).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

GNU_TIME = "/usr/bin/time"
# Runs a command and prints the child's peak RSS: the fallback when GNU time is not installed.
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(f'PEAK_RSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def make_images(root: Path, n: int, classes: tuple[str, ...], seed: int = 0) -> None:
    """``n`` 32x32 RGB PNGs, round-robin over one folder per class: smooth gradients plus noise, so they
    compress roughly like real CIFAR images rather than like pure noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 32, dtype=np.float32)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = rng.uniform(0, 255, 3).astype(np.float32)
        slope = rng.uniform(-120, 120, (2, 3)).astype(np.float32)
        image = base + ramp[:, None, None] * slope[0] + ramp[None, :, None] * slope[1]
        image += rng.normal(0, 12, (32, 32, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / classes[i % len(classes)] / f"{i}.png")


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int | None, str]:
    """Wall seconds, peak RSS in KiB (or ``None``) and stdout of ``cmd`` run as a fresh process."""
    if os.access(GNU_TIME, os.X_OK):
        wrapped, pattern = [GNU_TIME, "-v", *cmd], r"Maximum resident set size \(kbytes\):\s*(\d+)"
    else:
        wrapped, pattern = [sys.executable, "-c", RSS_WRAPPER, *cmd], r"PEAK_RSS_KB=(\d+)"
    start = time.perf_counter()
    done = subprocess.run(wrapped, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    found = re.search(pattern, done.stderr)
    return wall, int(found.group(1)) if found else None, done.stdout


def best_of(cmd: list[str], repeats: int, env: dict[str, str] | None = None) -> tuple[float, int | None, str]:
    """The fastest of ``repeats`` runs (the first also warms the page cache), with that run's RSS."""
    runs = [measure(cmd, env) for _ in range(repeats)]
    return min(runs, key=lambda r: r[0])


def run_reference(root: str, model_dir: str, batch_size: int, workers: int) -> None:
    """The reference loop, run in its own process; prints ``{"n", "seconds", "top1"}`` as JSON."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    import cifarzoo

    model = cifarzoo.load(model_dir, device="cpu")
    net = model.net.eval()  # eager fp32, default (NCHW) memory format
    cfg = model.config.preprocess
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(cfg.mean, cfg.std)])
    dataset = datasets.ImageFolder(root, transform=transform)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    correct = seen = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for x, y in loader:
            correct += int((net(x).argmax(1) == y).sum())
            seen += len(y)
    seconds = time.perf_counter() - start
    print(json.dumps({"n": seen, "seconds": seconds, "top1": 100.0 * correct / max(seen, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="images to generate")
    parser.add_argument("--model", default=None, help="a checkpoint folder (default: untrained resnet26-c10)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="runs per contender; the fastest counts")
    parser.add_argument("--keep", action="store_true", help="keep the generated images and model")
    parser.add_argument("--reference", metavar="ROOT", help=argparse.SUPPRESS)  # internal: run the reference loop
    parser.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        run_reference(args.reference, args.model, args.batch_size, args.workers)
        return

    from _common import machine, print_table

    import cifarzoo
    from cifarzoo.data.specs import CIFAR10

    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="cifarzoo-evalbench-"))
    try:
        model_dir = Path(args.model) if args.model else work / "resnet26-c10"
        if not args.model:
            cifarzoo.create_model("resnet26-c10").save_pretrained(model_dir)
        root = work / "images"
        start = time.perf_counter()
        make_images(root, args.n, CIFAR10.classes)
        print(f"generated {args.n} PNGs in {time.perf_counter() - start:.1f}s under {root}\n")

        ours_cmd = [sys.executable, "-m", "cifarzoo", "eval", "--model", str(model_dir), "--custom-dir", str(root),
                    "--batch-size", str(args.batch_size), "--json"]
        ref_cmd = [sys.executable, __file__, "--reference", str(root), "--model", str(model_dir),
                   "--batch-size", str(args.batch_size), "--workers", "2"]
        # First with an empty ONNX cache each time (the one-time export counts), then with the cache warm.
        first = min((measure(ours_cmd, {"CIFARZOO_CACHE": tempfile.mkdtemp(dir=work, prefix="cache-")})
                     for _ in range(args.repeats)), key=lambda r: r[0])
        warm_cache = {"CIFARZOO_CACHE": str(work / "cache-warm")}
        ours_wall, ours_rss, ours_out = best_of(ours_cmd, args.repeats + 1, warm_cache)
        ref_wall, ref_rss, ref_out = best_of(ref_cmd, args.repeats)
        ours, ours_first, ref = json.loads(ours_out), json.loads(first[2]), json.loads(ref_out)
        if ours["n"] != args.n or ref["n"] != args.n:
            raise SystemExit(f"expected {args.n} images, cifarzoo saw {ours['n']} and the reference {ref['n']}")
        print(f"cifarzoo's backend: {ours.get('backend', 'n/a')}\n")

        def mib(kb: int | None) -> str:
            return f"{kb / 1024:.0f} MiB" if kb else "n/a"

        rows = [
            ["cifarzoo eval --custom-dir, first run (export included)", f"{first[0]:.2f}", f"{args.n / first[0]:.0f}",
             "", mib(first[1]), f"{ours_first['top1']:.2f}"],
            ["cifarzoo eval --custom-dir, cache warm", f"{ours_wall:.2f}", f"{args.n / ours_wall:.0f}", "",
             mib(ours_rss), f"{ours['top1']:.2f}"],
            ["ImageFolder + DataLoader(2) + eager fp32", f"{ref_wall:.2f}", f"{args.n / ref_wall:.0f}",
             f"{ref['n'] / ref['seconds']:.0f}", mib(ref_rss), f"{ref['top1']:.2f}"],
        ]
        print_table(["contender", "wall s", "img/s (wall)", "img/s (loop only)", "peak RSS", "top-1"], rows)
        for label, wall in (("first run, export included", first[0]), ("cache warm", ours_wall)):
            ratio = ref_wall / wall
            print(f"speed-up, {label} (wall, start-up included): {ratio:.2f}x  (goal: >= 3x)  "
                  f"{'OK' if ratio >= 3 else 'BELOW GOAL'}")
        for label, result in (("first run", ours_first), ("cache warm", ours)):
            gap = abs(result["top1"] - ref["top1"])
            print(f"top-1 vs the fp32 reference, {label}: {result['top1']:.2f} vs {ref['top1']:.2f} "
                  f"({'within' if gap <= 0.1 else 'OUTSIDE'} 0.1 points)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

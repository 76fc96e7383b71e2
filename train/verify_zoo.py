"""Check each released Fashion-MNIST entry's recorded test top-1 against an independent measurement.

    python train/verify_zoo.py                    # every -fm entry with weights
    python train/verify_zoo.py resnet34-fm        # some of them

Independent of the release script's path: the 10,000 test images and labels are read here straight from the
idx files Debian's ``dataset-fashion-mnist`` installs (not through ``cifarzoo.data``'s loader), and each model is
loaded by name with ``cifarzoo.load(name)`` (torch backend, fp32) and asked for ``predict(images, topk=1)``,
the way a user would. The table gives the recorded and the measured top-1 and their difference; the script
exits 1 when any differs by more than 0.15 points (the zoo's tolerance).
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

import cifarzoo
from cifarzoo.data.datasets import SYSTEM_FASHION_MNIST
from cifarzoo.registry import ZOO

TOLERANCE = 0.15  # percentage points


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format): a big-endian header of dimensions, then uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="zoo names (default: every -fm entry with weights)")
    args = parser.parse_args()
    names = args.names or [n for n, e in ZOO.items() if e.dataset.tag == "fm" and e.weights.available]
    images = read_idx(SYSTEM_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SYSTEM_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
    print(f"{len(images)} test images from {SYSTEM_FASHION_MNIST}\n")
    print("| model | recorded test top-1 | measured (load(name).predict) | difference |")
    print("|---|---|---|---|")
    failed = False
    for name in names:
        model = cifarzoo.load(name, device="cpu")
        predicted = np.array([p.index for p in model.predict(list(images), topk=1)])
        measured = float((predicted == labels).mean() * 100)
        recorded = ZOO[name].top1
        diff = measured - recorded if recorded is not None else float("nan")
        failed |= not abs(diff) <= TOLERANCE
        print(f"| {name} | {recorded} | {measured:.2f} | {diff:+.2f} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

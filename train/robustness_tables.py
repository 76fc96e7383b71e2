"""Print docs/robustness.md's two tables from the released models' recorded grids.

    python train/robustness_tables.py              # every release with a grid in docs/robustness/
    python train/robustness_tables.py resnet34-fm plain34-fm

The numbers come from the files the release script wrote, never typed by hand: each model's 75-cell grid
(``docs/robustness/<name>/corruptions.json``), its release metrics (``cifarzoo/_releases.py``) and its fitted
temperature (the bundled ``config.json``). Paste the output over the tables in docs/robustness.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cifarzoo._releases import RELEASES
from cifarzoo.io.layout import CONFIG_NAME
from cifarzoo.io.resolve import resolve_weights
from cifarzoo.registry import ZOO

GRIDS = Path(__file__).resolve().parents[1] / "docs" / "robustness"


def severity_mean(grid: dict, severity: int) -> float:
    """Mean top-1 over the corruptions at one severity."""
    return statistics.mean(grid["top1"][name][str(severity)] for name in grid["names"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="released models (default: every one with a recorded grid)")
    args = parser.parse_args()
    names = args.names or [name for name in RELEASES if (GRIDS / name / "corruptions.json").is_file()]
    grids = {name: json.loads((GRIDS / name / "corruptions.json").read_text())["corruptions"] for name in names}

    print("| model | clean top-1 | mCA | mCA / clean | sev 1 | sev 3 | sev 5 | ECE (calibrated) "
          "| ECE (uncalibrated) | temperature |")
    print("|---|" + "---:|" * 9)
    for name in names:
        grid, test = grids[name], RELEASES[name].metrics["test"]
        config = json.loads((resolve_weights(ZOO[name]) / CONFIG_NAME).read_text())
        temperature = config["calibration"]["temperature"]
        print(f"| {name} | {grid['clean_top1']:.2f} | {test['mca']:.2f} | {test['mca_relative']:.4f} | "
              + " | ".join(f"{severity_mean(grid, s):.2f}" for s in (1, 3, 5))
              + f" | {test['ece']:.4f} | {test['uncalibrated_ece']:.4f} | {temperature:.3f} |")

    print("\n(sev N: the mean top-1 over the 15 corruptions at that severity.)\n")
    print("Per corruption, mean over severities 1-5, then severities 1 / 3 / 5:\n")
    print("| corruption | " + " | ".join(names) + " | " + " | ".join(f"{n} sev 1 / 3 / 5" for n in names) + " |")
    print("|---|" + "---:|" * (2 * len(names)))
    for corruption in grids[names[0]]["names"]:
        cells = [grids[n]["top1"][corruption] for n in names]
        means = [f"{statistics.mean(cell.values()):.2f}" for cell in cells]
        severities = [" / ".join(f"{cell[s]:.2f}" for s in "135") for cell in cells]
        print(f"| {corruption} | " + " | ".join(means + severities) + " |")


if __name__ == "__main__":
    main()

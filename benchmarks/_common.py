"""Shared by the benchmark scripts: the machine and its matrix peak (from ``cifarzoo.engines.benchmark``) and a
plain markdown table printer."""

from __future__ import annotations

from collections.abc import Sequence

from cifarzoo.engines.benchmark import machine_description as machine
from cifarzoo.engines.benchmark import matmul_peak_gflops, median_seconds

__all__ = ["machine", "matmul_peak_gflops", "median_seconds", "print_table"]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")

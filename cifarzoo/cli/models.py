"""``cifarzoo list`` and ``cifarzoo info``: the registry, torch-free."""

from __future__ import annotations

from typing import Any, Optional

import typer

from cifarzoo.cli._common import format_table, write_json
from cifarzoo.registry import ZOO, get_entry, list_models


def _fmt_top1(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def list_command(
    pattern: str = typer.Argument("*", help="Shell-style filter on zoo names, e.g. 'resnet*-c10'."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset tag (c10, c100, fm)."),
    pretrained: bool = typer.Option(False, "--pretrained", help="Only models with released weights."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for programs instead of a table."),
) -> None:
    """List zoo models: name, parameters, GFLOPs, test top-1 and where the weights are."""
    rows = [ZOO[name].summary() for name in list_models(pattern, dataset=dataset, pretrained=pretrained)]
    if as_json:
        write_json(rows)
        return
    table = [
        (r["name"], f"{r['params'] / 1e6:.2f}M", f"{r['gflops']:.3f}", _fmt_top1(r["top1"]), r["weights"])
        for r in rows
    ]
    typer.echo(format_table(["name", "params", "GFLOPs", "top-1 %", "weights"], table, right=(1, 2, 3)))


def info_command(
    name: str = typer.Argument(..., help="A zoo name, e.g. resnet50-c10."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show one zoo entry in full: architecture, classes, preprocessing, costs, metrics, weights, recipe."""
    info = get_entry(name).describe()
    if as_json:
        write_json(info)
        return
    arch = info["architecture"]
    pre = info["preprocess"]
    lines: list[tuple[str, Any]] = [
        ("name", info["name"]),
        ("arch", f"{info['arch']}: {arch['block']} blocks, depths {arch['depths']}, widths {arch['widths']}"
                 f" (out {arch['out_channels']}), {'residual' if arch['residual'] else 'plain (no skip connections)'}"),
        ("stem", arch["stem"]),
        ("dataset", f"{info['dataset_name']} ({info['dataset']}), {info['num_classes']} classes"),
        ("classes", ", ".join(info["classes"])),
        ("input", f"{pre['input_size']}x{pre['input_size']} {pre['color_mode']}, resize policy {pre['resize']}"
                  f" ({pre['interpolation']}) for other sizes"),
        ("mean / std", f"{pre['mean']} / {pre['std']}"),
        ("params", f"{info['params']:,}"),
        ("GFLOPs", f"{info['gflops']:.3f} per image"),
        ("metrics", ", ".join(f"{k}={v:.4g}" for k, v in info["metrics"].items()) or "not measured yet"),
        ("weights", info["weights"]),
        ("recipe", info["recipe"]),
    ]
    if "input_policy" in arch:
        lines.insert(3, ("input policy", arch["input_policy"]))
    width = max(len(k) for k, _ in lines)
    typer.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines))

"""``cifarzoo benchmark``: inference speed of one model per backend, precision and batch size."""

from __future__ import annotations

import typer

from cifarzoo.cli._common import format_table, write_json


def benchmark_command(
    model: str = typer.Argument(..., help="A zoo name, checkpoint folder or hf:// id."),
    backends: str = typer.Option("torch,onnx,torchscript", "--backends", help="Comma-separated backends to time."),
    precisions: str = typer.Option(
        "fp32,bf16", "--precisions",
        help="Comma-separated precisions: fp32, bf16 (torch autocast), int8 (onnx, calibrated on synthetic inputs)."
    ),
    batch_sizes: str = typer.Option("1,32,256", "--batch-sizes", help="Comma-separated batch sizes."),
    repeats: int = typer.Option(10, "--repeats", help="Timed batches per configuration (the median is reported)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
    as_csv: bool = typer.Option(False, "--csv", help="Print the rows as CSV."),
) -> None:
    """Time a model's inference on every requested backend and precision at each batch size, like timm's
    benchmark.py: ms per batch and img/s (median of --repeats after two warm-ups), and the achieved GFLOP/s
    against the matmul peak measured on the same device in the same run."""
    from cifarzoo.engines.benchmark import PRECISIONS, TIMED_BACKENDS, benchmark, parse_choices, parse_int_list

    result = benchmark(
        model,
        backends=parse_choices(backends, choices=TIMED_BACKENDS, what="--backends"),
        precisions=parse_choices(precisions, choices=PRECISIONS, what="--precisions"),
        batch_sizes=parse_int_list(batch_sizes, what="--batch-sizes"),
        repeats=repeats,
        device=device,
    )
    if as_json:
        write_json(result.to_dict())
        return
    if as_csv:
        import csv
        import sys

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["backend", "precision", "batch_size", "ms_per_batch", "img_per_s", "gflops", "peak_fraction"])
        for row in result.rows:
            writer.writerow([row.backend, row.precision, row.batch_size, f"{row.ms_per_batch:.3f}",
                             f"{row.img_per_s:.1f}", f"{row.gflops:.2f}", f"{row.peak_fraction:.4f}"])
        return
    peaks = ", ".join(f"{name} {value:.0f}" for name, value in result.peak_gflops.items() if name != "int8")
    typer.echo(f"model: {result.model}, {result.flops_per_image / 1e6:.0f} MFLOP per image (forward)")
    typer.echo(f"machine: {result.machine}; device {result.device}")
    typer.echo(f"measured matmul peak (GFLOP/s): {peaks}; int8 is reported against fp32")
    typer.echo(f"median of {result.repeats} batches after 2 warm-ups\n")
    rows = [[r.backend, r.precision, r.batch_size, f"{r.ms_per_batch:.2f}", f"{r.img_per_s:.0f}",
             f"{r.gflops:.0f}", f"{r.peak_fraction:.0%}"] for r in result.rows]
    typer.echo(format_table(["backend", "precision", "batch", "ms/batch", "img/s", "GFLOP/s", "of peak"], rows,
                            right=(2, 3, 4, 5, 6)))

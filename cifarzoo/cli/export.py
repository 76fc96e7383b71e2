"""``cifarzoo export``: ONNX (fp32/fp16/int8) and TorchScript files with parity checks."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Optional

import typer

from cifarzoo.cli._common import choice_enum
from cifarzoo.io.layout import EXPORT_DTYPES, EXPORT_FORMATS

if TYPE_CHECKING:
    Format = Enum
    Dtype = Enum
else:
    Format = choice_enum("Format", EXPORT_FORMATS)
    Dtype = choice_enum("Dtype", EXPORT_DTYPES)


def export_command(
    model: str = typer.Argument(..., help="A zoo name, a checkpoint folder or a run folder."),
    fmt: Format = typer.Option(Format("onnx"), "--format", "-f", help="The file format."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output file [default: beside the checkpoint]."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset [default: 18]."),
    dtype: Dtype = typer.Option(
        Dtype("fp32"), "--dtype", help="fp32, fp16 (ONNX for GPUs) or int8 (ONNX, static QDQ)."
    ),
    check: bool = typer.Option(False, "--check", help="Compare with torch on 256 inputs; fail outside tolerance."),
    calib_dir: Optional[str] = typer.Option(
        None, "--calib-dir", help="int8: images to calibrate on [default: the model's dataset]."
    ),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder holding the model's dataset files."),
    fp16_storage: bool = typer.Option(
        False, "--fp16-storage",
        help="fp32 ONNX: store the weights fp16 represents exactly as fp16 (half the file for fp16-saved "
             "weights; the same outputs).",
    ),
) -> None:
    """Export a model to ONNX or TorchScript. ONNX uses the torch.export-based exporter, falling back to the
    TorchScript-based one (the output says which); both have a dynamic batch axis."""
    import logging
    import warnings

    from cifarzoo.engines.export import export

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore")  # tracer and exporter chatter; real problems raise
    result = export(
        model,
        fmt=fmt.value,
        out=out,
        dtype=dtype.value,
        opset=opset,
        check=check,
        calib_dir=calib_dir,
        data_dir=data_dir,
        fp16_storage=fp16_storage,
    )
    typer.echo(f"wrote {result.path} ({result.format} {result.dtype}, exporter: {result.exporter})")
    if result.parity is not None:
        typer.echo(f"parity vs torch: {result.parity.describe()}: ok")

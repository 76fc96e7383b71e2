"""``cifarzoo calibrate``: fit a model's temperature on a labelled set and store it with the model."""

from __future__ import annotations

from typing import Optional

import typer

from cifarzoo.cli._common import echo, write_json
from cifarzoo.registry import DEFAULT_MODEL


def calibrate_command(
    model: str = typer.Argument(DEFAULT_MODEL, help="A zoo name, a checkpoint folder or an hf:// id."),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", help="A built-in dataset (cifar10, cifar100, fashion-mnist); see --split."
    ),
    split: str = typer.Option(
        "val", "--split", help="With --dataset: val (default; the held-out training images), test or train."
    ),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="With --dataset: the folder holding its files."),
    download: bool = typer.Option(False, "--download", help="With --dataset: download it if it is not found."),
    custom_dir: Optional[str] = typer.Option(None, "--custom-dir", help="A folder with one subfolder per class."),
    labels: Optional[str] = typer.Option(None, "--labels", help="A CSV of path,label rows."),
    array: Optional[str] = typer.Option(None, "--array", help="A .npz/.npy of uint8 images with labels."),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help="Skip classes the model does not know."),
    out: Optional[str] = typer.Option(
        None, "--out",
        help="Write a calibrated copy of the model here (required for zoo entries and Hub models; a folder is "
             "otherwise updated in place).",
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Decoding threads."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the fitted calibration as JSON."),
) -> None:
    """Fit a temperature (Guo et al. 2017) so that the model's probabilities match its accuracy.

    The temperature divides the logits before the softmax and minimises the negative log-likelihood on the
    labelled set (exactly one of --dataset, --custom-dir, --labels or --array; fit on held-out images, never on
    the test set you report). It is stored in config.json (`calibration`) and in model.onnx's embedded config;
    predict, eval and every backend apply it. Top-1 does not change.
    """
    from cifarzoo.api import calibrate, check_one_testset

    check_one_testset(dataset=dataset, custom_dir=custom_dir, labels=labels, array=array)
    result = calibrate(
        model, dataset, split=split, data_dir=data_dir, download=download, custom_dir=custom_dir, labels=labels,
        array=array, ignore_unknown=ignore_unknown, out=out, batch_size=batch_size, workers=workers, device=device,
    )
    cal = result.calibration
    if as_json:
        write_json({"folder": str(result.folder), "calibration": cal.to_dict()})
        return
    echo(f"temperature {cal.temperature:.4f} fitted on {cal.fitted_on} (n={cal.n}): "
         f"ECE {cal.ece_before:.4f} -> {cal.ece_after:.4f}, NLL {cal.nll_before:.4f} -> {cal.nll_after:.4f}")
    echo(f"wrote {result.folder}")

"""``cifarzoo eval``: an accuracy report for a model on a dataset split, a folder, a labels CSV or an array."""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Any, Optional

import typer

from cifarzoo.cli._common import choice_enum, format_table, write_json
from cifarzoo.cli.predict import Backend
from cifarzoo.data.specs import VAL_SIZE
from cifarzoo.data.tta import TTA_MODES
from cifarzoo.errors import CifarzooError
from cifarzoo.registry import DEFAULT_MODEL

FULL_MATRIX_MAX_CLASSES = 20  # above this, the terminal shows the most confused pairs instead of the matrix
TOP_CONFUSIONS = 15
LISTED_SKIPS = 20  # skipped files listed on stderr; all of them are in --json and --report


if TYPE_CHECKING:
    Tta = Enum
else:
    Tta = choice_enum("Tta", TTA_MODES)


def eval_command(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="A zoo name or a checkpoint directory."),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", help="A built-in dataset: cifar10, cifar100 or fashion-mnist."
    ),
    split: str = typer.Option(
        "test", "--split", help=f"With --dataset: test, val (the held-out {VAL_SIZE:,} training images) or train."
    ),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="With --dataset: the folder holding its files."),
    download: bool = typer.Option(False, "--download", help="With --dataset: download it if it is not found."),
    custom_dir: Optional[str] = typer.Option(
        None, "--custom-dir",
        help="A folder with one subfolder per class (names matched to the model's classes ignoring case, with "
             "synonyms such as car=automobile), or a flat folder of images to predict (unlabeled).",
    ),
    labels: Optional[str] = typer.Option(
        None, "--labels", help="A CSV of path,label rows; paths relative to the CSV, labels class names or indices."
    ),
    array: Optional[str] = typer.Option(
        None, "--array",
        help="A .npz (images/data + labels) or .npy (+ *_labels.npy) of uint8 NxHxWxC images, like CIFAR-10.1.",
    ),
    ignore_unknown: bool = typer.Option(
        False, "--ignore-unknown", help="Skip class folders/labels the model does not know."
    ),
    out: Optional[str] = typer.Option(None, "--out", help="Write the predictions as an id,label CSV."),
    report_dir: Optional[str] = typer.Option(
        None, "--report",
        help="Write report.json, predictions.csv, confusion.png, reliability.png and misclassified.png to this folder.",
    ),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first unreadable file instead of skipping it."),
    tta: Tta = typer.Option(
        Tta("none"), "--tta", help="Test-time augmentation: none, flip, or flip-translate (+-2 px)."
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, help="Decoding threads (default: cores + 1, at most 8)."
    ),
    trust_code: bool = typer.Option(
        False, "--trust-code", help="Allow TorchScript files, which run code stored in them as they load."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    backend: Backend = typer.Option(
        Backend("auto"),
        "--backend",
        help="auto: onnx when the model folder has model.onnx (no torch import), else torch.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as one JSON document."),
) -> None:
    """Evaluate a model: top-1, top-5, loss, ECE, per-class precision/recall/F1 and a confusion matrix.

    The test set is exactly one of --dataset, --custom-dir, --labels or --array. Unreadable files (empty,
    truncated, not images, too large, no permission, ...) are listed and skipped, and the rest evaluated;
    --strict makes any of them an error. An unlabeled set (a flat folder, an array without labels) gives
    predictions: an id,label CSV to --out, or to stdout.

    Images of another size than the model's input are resized by its resize policy (see `cifarzoo info`):
    real photos shrunk to 32x32 lose most of their detail and score lower than the test set suggests.
    """
    from cifarzoo.api import evaluate, load
    from cifarzoo.engines.report import predictions_csv_text, write_predictions_csv, write_report

    sources = {"--dataset": dataset, "--custom-dir": custom_dir, "--labels": labels, "--array": array}
    given = [flag for flag, value in sources.items() if value is not None]
    if len(given) != 1:
        raise CifarzooError(f"give exactly one test set: {', '.join(sources)} (got {', '.join(given) or 'none'})")
    predictor = load(model, device=device, backend=backend.value, trust_code=trust_code)
    report = evaluate(
        predictor, dataset, split=split, data_dir=data_dir, download=download, batch_size=batch_size, tta=tta.value,
        custom_dir=custom_dir, labels=labels, array=array, ignore_unknown=ignore_unknown, strict=strict,
        progress=sys.stderr.isatty(), workers=workers,
    )
    if out:
        write_predictions_csv(report, out)
    if report_dir:
        write_report(report, report_dir)
    if as_json:
        write_json(report.to_dict(include_predictions=not report.labeled))
        return
    skipped = f"{len(report.skipped)} file{'s' if len(report.skipped) != 1 else ''} skipped"
    if report.labeled:
        typer.echo(f"{report.name}: n={report.n}  top-1 {report.top1:.2f}%  top-5 {report.top5:.2f}%  "
                   f"loss {report.loss:.4f}  ECE {report.ece:.4f}  tta {report.tta}  ({skipped})")
        rows = [(name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", m.support)
                for name, m in report.per_class.items()]
        typer.echo(format_table(["class", "precision", "recall", "F1", "n"], rows, right=(1, 2, 3, 4)))
        typer.echo("")
        typer.echo(confusion_text(report.classes, report.confusion))
    else:
        summary = f"{report.name}: {report.n} images predicted, unlabeled ({skipped})"
        if out or report_dir:
            typer.echo(summary)
        else:  # stdout carries the CSV, so `> preds.csv` works; the summary goes to stderr
            typer.echo(predictions_csv_text(report), nl=False)
            typer.echo(summary, err=True)
    for target in (t for t in (out, report_dir) if t):
        typer.echo(f"wrote {target}", err=True)
    _list_problems(report.skipped, report.ignored)


def confusion_text(classes: tuple[str, ...], confusion: list[list[int]]) -> str:
    """The confusion matrix as a table (rows: true class, columns: predicted class index); with many classes,
    the most frequent confusions instead."""
    import numpy as np

    matrix = np.asarray(confusion, dtype=np.int64)
    if matrix.size == 0:
        return ""
    if len(classes) <= FULL_MATRIX_MAX_CLASSES:
        headers = ["true \\ predicted", *[str(i) for i in range(len(classes))]]
        rows = [[f"{i} {name}", *matrix[i].tolist()] for i, name in enumerate(classes)]
        return format_table(headers, rows, right=tuple(range(1, len(classes) + 1)))
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:TOP_CONFUSIONS]
    pairs = [(classes[i], classes[j], int(off[i, j])) for i, j in zip(*np.unravel_index(flat, off.shape)) if off[i, j]]
    if not pairs:
        return "no confusions"
    return "most confused:\n" + format_table(["true", "predicted as", "n"], pairs, right=(2,))


def _list_problems(skipped: list[dict[str, Any]], ignored: list[dict[str, Any]]) -> None:
    for item in skipped[:LISTED_SKIPS]:
        typer.echo(f"warning: skipped {item['path']}: {item['reason']}", err=True)
    if len(skipped) > LISTED_SKIPS:
        typer.echo(f"warning: ... and {len(skipped) - LISTED_SKIPS} more skipped (--json and --report list all)",
                   err=True)
    if ignored:
        typer.echo(f"ignored {len(ignored)} input(s) on purpose, e.g. {ignored[0]['path']}: {ignored[0]['reason']}",
                   err=True)

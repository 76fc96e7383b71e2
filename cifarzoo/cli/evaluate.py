"""``cifarzoo eval``: an accuracy report for a model on a dataset split, a folder, a labels CSV or an array."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import typer

from cifarzoo.cli._common import choice_enum, echo, escape_text, format_table, write_json
from cifarzoo.cli.predict import Backend
from cifarzoo.data.specs import VAL_SIZE
from cifarzoo.data.tta import TTA_MODES
from cifarzoo.errors import CifarzooError, display_path
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
    out: Optional[str] = typer.Option(
        None, "--out", help="Write the predictions as an id,label CSV (never over an input of the evaluation)."
    ),
    report_dir: Optional[str] = typer.Option(
        None, "--report",
        help="Write index.html (the whole report as one offline page), report.json, predictions.csv, confusion.png, "
             "reliability.png and misclassified.png to this folder.",
    ),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first unreadable file instead of skipping it."),
    tta: Tta = typer.Option(
        Tta("none"), "--tta", help="Test-time augmentation: none, flip, or flip-translate (+-2 px)."
    ),
    corruptions: Optional[str] = typer.Option(
        None, "--corruptions",
        help="'all' or a comma-separated list of CIFAR-10-C corruptions (gaussian_noise, fog, ...), applied after the "
             "resize to the model's input size: report top-1 per corruption x severity, the mean corruption accuracy "
             "(mCA) and mCA / clean top-1. On --dataset cifar10 --split test this is CIFAR-10-C.",
    ),
    severity: Optional[str] = typer.Option(
        None, "--severity", help="With --corruptions: a level 1-5, a range such as 1-5 (the default) or a list 1,3."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="With --corruptions: the seed of their random draws."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1,
        help="Decoding threads (default: cores + 1, at most 8; fewer when memory is short: each may hold a 16 Mpx "
             "image).",
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
    verbose: bool = typer.Option(
        False, "--verbose", help="Say on stderr which model was used: zoo entry, Hub snapshot, folder or file."
    ),
) -> None:
    """Evaluate a model: top-1, top-5, loss, ECE, per-class precision/recall/F1 and a confusion matrix.

    The test set is exactly one of --dataset, --custom-dir, --labels or --array. Unreadable files (empty,
    truncated, not images, over the 16 Mpx pixel cap, FIFOs and devices, no permission, ...) are listed and
    skipped, and the rest evaluated; --strict makes any of them an error. An unlabeled set (a flat folder, an
    array without labels) gives predictions: an id,label CSV to --out, or to stdout. --out and --report never
    write over an input (the labels CSV, the array files, anything in the --custom-dir folder).

    Images of another size than the model's input are resized by its resize policy (see `cifarzoo info`):
    real photos shrunk to 32x32 lose most of their detail and score lower than the test set suggests.
    """
    if corruptions is not None or severity is not None:
        _eval_corruptions(
            corruptions, severity, seed, model=model, dataset=dataset, split=split, data_dir=data_dir,
            download=download, custom_dir=custom_dir, labels=labels, array=array, ignore_unknown=ignore_unknown,
            out=out, report_dir=report_dir, strict=strict, tta=tta.value, batch_size=batch_size, workers=workers,
            trust_code=trust_code, device=device, backend=backend, as_json=as_json, verbose=verbose,
        )
        return
    from cifarzoo.api import check_one_testset, evaluate, load
    from cifarzoo.engines.report import predictions_csv_text, write_predictions_csv, write_report

    check_one_testset(dataset=dataset, custom_dir=custom_dir, labels=labels, array=array)  # before the model loads
    refuse_overwriting_inputs(out=out, report_dir=report_dir, custom_dir=custom_dir, labels=labels, array=array)
    predictor = load(model, device=device, backend=backend.value, trust_code=trust_code)
    if verbose and predictor.source is not None:
        echo(f"model: {predictor.source.describe()}; backend: {predictor.describe_backend()}", err=True)
    report = evaluate(
        predictor, dataset, split=split, data_dir=data_dir, download=download, batch_size=batch_size, tta=tta.value,
        custom_dir=custom_dir, labels=labels, array=array, ignore_unknown=ignore_unknown, strict=strict,
        progress=sys.stderr.isatty(), workers=workers,
    )
    if out:
        write_predictions_csv(report, out)
    if report_dir:
        write_report(report, report_dir, model=predictor, command=["cifarzoo", *sys.argv[1:]])
    if as_json:
        source = predictor.source.to_dict() if predictor.source is not None else None
        write_json({**report.to_dict(include_predictions=not report.labeled), "model": source,
                    "backend": predictor.backend})
        return
    skipped = f"{len(report.skipped)} file{'s' if len(report.skipped) != 1 else ''} skipped"
    # Names come from files (folder names, config.json classes, CSV cells): every line goes out escaped.
    if report.labeled:
        echo(f"{report.name}: n={report.n}  top-1 {report.top1:.2f}%  top-5 {report.top5:.2f}%  "
             f"loss {report.loss:.4f}  ECE {report.ece:.4f}  tta {report.tta}  backend {predictor.backend}  "
             f"({skipped})")
        calibration = report.calibration_summary()
        if calibration is not None:
            before, after = calibration["before"], calibration["after"]
            echo(f"calibrated (temperature {calibration['temperature']:.4f}): ECE {before['ece']:.4f} -> "
                 f"{after['ece']:.4f}  NLL {before['nll']:.4f} -> {after['nll']:.4f}  Brier {before['brier']:.4f} -> "
                 f"{after['brier']:.4f}")
        rows = [(name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", m.support)
                for name, m in report.per_class.items()]
        typer.echo(format_table(["class", "precision", "recall", "F1", "n"], rows, right=(1, 2, 3, 4)))
        typer.echo("")
        typer.echo(confusion_text(report.classes, report.confusion))
    else:
        summary = f"{report.name}: {report.n} images predicted, unlabeled ({skipped})"
        if out or report_dir:
            echo(summary)
        else:  # stdout carries the CSV, so `> preds.csv` works (exact); on a terminal its cells are escaped
            escape = escape_text if sys.stdout.isatty() else None
            typer.echo(predictions_csv_text(report, escape=escape), nl=False)
            echo(summary, err=True)
    for target in (t for t in (out, report_dir) if t):
        echo(f"wrote {target}", err=True)
    _list_problems(report.skipped, report.ignored)


def _eval_corruptions(
    corruptions: str | None, severity: str | None, seed: int, *, model: str, out: str | None,
    report_dir: str | None, backend: Backend, device: str, trust_code: bool, as_json: bool, verbose: bool,
    **evaluation: Any,
) -> None:
    """``eval --corruptions``: the corruption x severity grid of top-1 (text, ``--json`` or ``--report``)."""
    from cifarzoo.api import check_one_testset, evaluate_corruptions, load
    from cifarzoo.engines.robustness import (
        resolve_corruptions,
        resolve_severities,
        robustness_file_names,
        write_robustness_report,
    )

    if corruptions is None:
        raise CifarzooError("--severity needs --corruptions (all, or a comma-separated list of names)")
    if out is not None:
        raise CifarzooError("--out writes clean predictions; run eval without --corruptions for them")
    # Every mistake is reported before the model loads (which may mean a download).
    names, levels = resolve_corruptions(corruptions), resolve_severities("1-5" if severity is None else severity)
    sources = {key: evaluation[key] for key in ("dataset", "custom_dir", "labels", "array")}
    check_one_testset(**sources)
    refuse_overwriting_inputs(out=None, report_dir=report_dir, custom_dir=sources["custom_dir"],
                              labels=sources["labels"], array=sources["array"], report_names=robustness_file_names())
    predictor = load(model, device=device, backend=backend.value, trust_code=trust_code)
    if verbose and predictor.source is not None:
        echo(f"model: {predictor.source.describe()}; backend: {predictor.describe_backend()}", err=True)
    report = evaluate_corruptions(
        predictor, corruptions=names, severities=levels, seed=seed, progress=sys.stderr.isatty(), **evaluation
    )
    if report_dir:
        write_robustness_report(report, report_dir)
    if as_json:
        source = predictor.source.to_dict() if predictor.source is not None else None
        write_json({**report.to_dict(), "model": source, "backend": predictor.backend})
    else:
        skipped = f"{len(report.skipped)} file{'s' if len(report.skipped) != 1 else ''} skipped"
        echo(f"{report.name}: n={report.n}  clean top-1 {report.clean_top1:.2f}%  "
             f"mCA {report.mean_corruption_accuracy:.2f}%  relative robustness {report.relative_robustness:.3f}  "
             f"seed {report.seed}  tta {report.tta}  backend {predictor.backend}  ({skipped})")
        headers = ["corruption", *[f"sev {s}" for s in report.severities], "mean"]
        rows = [[name, *[f"{report.top1[name][s]:.2f}" for s in report.severities],
                 f"{report.corruption_mean(name):.2f}"] for name in report.corruptions]
        rows.append(["mean", *[f"{report.severity_mean(s):.2f}" for s in report.severities],
                     f"{report.mean_corruption_accuracy:.2f}"])
        typer.echo(format_table(headers, rows, right=tuple(range(1, len(headers)))))
    if report_dir:
        echo(f"wrote {report_dir}", err=True)
    _list_problems(report.skipped, report.ignored)


def refuse_overwriting_inputs(
    *, out: str | None, report_dir: str | None, custom_dir: str | None, labels: str | None, array: str | None,
    report_names: Sequence[str] | None = None,
) -> None:
    """Refuse (one line) an ``--out`` or ``--report`` that would replace or pollute the test set: ``--out`` or a
    report file that is the ``--labels`` CSV, the ``--array`` file or its labels file (compared as files, so
    links count), or either one inside the ``--custom-dir`` folder (where it would become part of the set).
    ``report_names``: the files ``--report`` writes (default: the eval report's)."""
    from cifarzoo.data.testsets import label_sibling
    from cifarzoo.engines.report import report_file_names

    inputs: dict[str, str | None] = {
        "--labels": labels, "--array": array, "the --array labels": label_sibling(array) if array else None
    }
    targets = [("--out", out)] if out else []
    if report_dir:
        names = report_file_names() if report_names is None else report_names
        targets += [("--report", os.path.join(report_dir, name)) for name in names]
    for flag, target in targets:
        for what, source in inputs.items():
            if source and _same_file(target, source):
                raise CifarzooError(
                    f"{display_path(target)}: {flag} would overwrite {what} file {display_path(source)}, an input "
                    "of this evaluation; write it elsewhere"
                )
    if custom_dir:
        for flag, written in (("--out", out), ("--report", report_dir)):
            if written and _inside(written, custom_dir):
                raise CifarzooError(
                    f"{display_path(written)}: {flag} is inside the --custom-dir folder {display_path(custom_dir)}, "
                    "the test set itself; write it elsewhere"
                )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (yet): compare where they point
        return Path(a).resolve() == Path(b).resolve()


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies under it, after resolving symlinks."""
    target, root = Path(path).resolve(), Path(folder).resolve()
    return target == root or root in target.parents


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
        echo(f"warning: skipped {item['path']}: {item['reason']}", err=True)
    if len(skipped) > LISTED_SKIPS:
        echo(f"warning: ... and {len(skipped) - LISTED_SKIPS} more skipped (--json and --report list all)", err=True)
    if ignored:
        echo(f"ignored {len(ignored)} input(s) on purpose, e.g. {ignored[0]['path']}: {ignored[0]['reason']}",
             err=True)

"""``cifarzoo publish``: a run directory -> a Hugging Face model repo folder (weights in every format, parity
checked, with a model card), uploaded in one commit.

The folder holds ``model.safetensors`` + ``config.json`` (what ``cifarzoo.load`` reads), ``model.onnx``,
``model.int8.onnx`` (when calibration data is available and int8 parity holds), ``model.torchscript.pt``,
the run's ``curves.png`` and ``metrics.jsonl`` when it has them, and ``README.md``: the model card rendered
from ``MODEL_CARD.md`` (``cifarzoo/templates/MODEL_CARD.md``; the repository root links to it).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from cifarzoo._version import __version__
from cifarzoo.atomic import atomic_write_text
from cifarzoo.config import ModelConfig
from cifarzoo.data.specs import DATASETS, VAL_SIZE, DatasetSpec
from cifarzoo.engines.demo import SPACE_APP_NAME, write_space_app
from cifarzoo.engines.export import CALIBRATION_IMAGES, Exported, export
from cifarzoo.errors import CifarzooError
from cifarzoo.io.checkpoint import load_checkpoint, save_checkpoint
from cifarzoo.io.hub import HUB_PREFIX, Upload, check_repo_id, upload_folder
from cifarzoo.io.layout import (
    CARD_NAME,
    CONFIG_NAME,
    CURVES_NAME,
    METRICS_NAME,
    ONNX_FILES,
    ONNX_NAME,
    TORCHSCRIPT_NAME,
    WEIGHTS_NAME,
)
from cifarzoo.models.factory import count_flops, count_params
from cifarzoo.registry import ZOO
from cifarzoo.releases import metric_decimals

LICENSE = "apache-2.0"
TEMPLATE = "MODEL_CARD.md"
INT8_NAME = ONNX_FILES["int8"]
# Run files that travel with the weights when the run has them.
RUN_FILES: tuple[str, ...] = (CURVES_NAME, METRICS_NAME)


# ----------------------------------------------------------------------------------------------------------
# Metrics: config keys are "<evaluation set>_<metric>" (test_top1, val_loss, cifar10.1_top1, photos_n, ...);
# keys with no set (best_epoch, epochs, ece) are listed on their own.

# Tokens that start the metric part of a key; everything before the first one names the evaluation set.
METRIC_HEADS = frozenset({"top1", "top5", "loss", "n", "ece", "uncalibrated", "mca", "acc", "accuracy", "f1", "nll"})
SET_TITLES: Mapping[str, str] = MappingProxyType({
    "test": "test",
    "val": f"val ({VAL_SIZE:,} images held out from train; chose the best epoch)",
    "cifar10.1": "CIFAR-10.1",
    "cifar10_1": "CIFAR-10.1",
})
METRIC_TITLES: Mapping[str, str] = MappingProxyType({
    "top1": "top-1 %",
    "top5": "top-5 %",
    "top1_flip_tta": "top-1 % (flip TTA)",
    "loss": "loss",
    "n": "images",
    "ece": "ECE",
    "uncalibrated_ece": "ECE uncalibrated",
    "mca": "mCA % (15 corruptions x 5 severities)",
    "mca_relative": "mCA / clean top-1",
    "best_epoch": "best epoch (on val)",
    "epochs": "epochs",
})
# Accuracy metrics that go into the card's model-index: metric prefix -> (Hub metric type, title).
INDEX_METRICS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "top1": ("accuracy", "top-1 accuracy (%)"),
    "top5": ("top_5_accuracy", "top-5 accuracy (%)"),
})


def split_metric_key(key: str) -> tuple[str, str]:
    """``"test_top1"`` -> ``("test", "top1")``; ``"cifar10.1_top1"`` -> ``("cifar10.1", "top1")``;
    ``"best_epoch"`` -> ``("", "best_epoch")``."""
    parts = key.split("_")
    for i, part in enumerate(parts):
        if part in METRIC_HEADS:
            return "_".join(parts[:i]), "_".join(parts[i:])
    return "", key


def group_metrics(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Metrics by evaluation set (``""`` holds the rest), sets ordered test, val, then as they appear."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        group, metric = split_metric_key(key)
        groups.setdefault(group, {})[metric] = value
    order = list(groups)
    return dict(
        sorted(groups.items(), key=lambda kv: (kv[0] != "test", kv[0] != "val", kv[0] == "", order.index(kv[0])))
    )


def format_metric(metric: str, value: Any) -> str:
    """A metric value as the card's tables show it: accuracies with 2 decimals, counts with separators."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    if not math.isfinite(value):
        return "-"
    if metric.startswith(("top1", "top5")) or metric == "mca":
        return f"{value:.2f}"
    if float(value).is_integer() and metric_decimals(metric) < 4:  # fractions and losses keep their decimals
        return f"{int(value):,}"  # image counts, epochs
    return f"{value:.4f}"


# ----------------------------------------------------------------------------------------------------------
# The model card


def render_model_card(
    config: ModelConfig,
    repo_id: str,
    num_params: int,
    gflops: float,
    files: Mapping[str, str],
    left_out: tuple[str, ...] = (),
    license: str = LICENSE,
) -> str:
    """The model card (``README.md``) for ``config``'s model published as ``repo_id``.

    Args:
        config: the checkpoint's config: arch, classes, preprocessing, metrics and recipe come from it.
        repo_id: ``USER/NAME`` on the Hub.
        num_params: parameters of the real network; gflops: its forward GFLOPs per image.
        files: file name -> one-line description, for the files table (only files that are in the repo).
        left_out: sentences about formats that were not published, for the files section.
        license: an SPDX-style license id for the front matter.
    """
    spec = DATASETS.get(config.dataset or "")
    dataset_title = spec.title if spec else (config.dataset or "a custom dataset")
    title = config.name or repo_id.split("/")[1]
    pre = config.preprocess
    classes = ", ".join(config.classes[:20]) + (
        f", ... ({config.num_classes} in all; config.json lists them)" if config.num_classes > 20 else ""
    )
    values = {
        "front_matter": _front_matter(config, repo_id, title, dataset_title, spec, license).strip(),
        "title": title,
        "summary": _summary(config, repo_id, dataset_title, num_params),
        "num_classes": str(config.num_classes),
        "dataset_title": dataset_title,
        "architecture": _architecture(config, num_params, gflops),
        "recipe": _recipe(config.recipe),
        "metrics": _metrics_section(config.metrics),
        "curves": "![Loss and top-1 per epoch, train and val](curves.png)\n\nPer-epoch numbers are in `metrics.jsonl`."
        if CURVES_NAME in files else f"Not recorded: the run had no `{CURVES_NAME}`.",
        "files": _files_section(files, left_out),
        "input_size": str(pre.input_size),
        "color": "grayscale" if pre.color_mode == "L" else pre.color_mode,
        "resize": pre.resize,
        "classes": classes,
        "load_id": f"{HUB_PREFIX}{repo_id}",
        "eval_line": f"cifarzoo eval --model {HUB_PREFIX}{repo_id} --dataset {spec.name} --split test"
        if spec else f"# {dataset_title} is not built into cifarzoo: evaluate on your own labelled split",
        "repo_id": repo_id,
        "year": str(datetime.date.today().year),
        "dataset_citation": ("\n" + spec.bibtex) if spec and spec.bibtex else "",
    }
    return Template(read_template()).substitute(values)


def read_template() -> str:
    """The card template shipped in the package (``MODEL_CARD.md`` at the repository root links to it)."""
    return (resources.files("cifarzoo") / "templates" / TEMPLATE).read_text(encoding="utf-8")


def _front_matter(
    config: ModelConfig, repo_id: str, title: str, dataset_title: str, spec: DatasetSpec | None, license: str
) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    hub_id = spec.hub_id if spec else None
    dataset_id = hub_id or config.dataset or "custom"
    results = []
    for group, metrics in group_metrics(config.metrics).items():
        if not group:
            continue
        standard = group in ("test", "val")
        for metric, value in metrics.items():
            prefix = next((p for p in INDEX_METRICS if metric.startswith(p)), None)
            if prefix is None or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            metric_type, metric_title = INDEX_METRICS[prefix]
            results.append(EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type=dataset_id if standard else group,
                dataset_name=dataset_title if standard else SET_TITLES.get(group, group),
                dataset_split=group if standard else "test",
                metric_type=metric_type,
                metric_value=float(value),
                metric_name=f"{group} {metric_title}" + (" with flip TTA" if metric.endswith("flip_tta") else ""),
            ))
    tags = ["image-classification", "cifarzoo", "pytorch", "onnx", "safetensors", config.arch]
    tags += [spec.name if spec else config.dataset] if config.dataset else []
    data = ModelCardData(
        library_name="cifarzoo",
        license=license,
        datasets=[hub_id] if hub_id else None,
        tags=list(dict.fromkeys(tags)),
        pipeline_tag="image-classification",
        model_name=title,
        eval_results=results or None,
    )
    return data.to_yaml()


def _summary(config: ModelConfig, repo_id: str, dataset_title: str, num_params: int) -> str:
    arch = config.architecture
    kind = "residual network" if arch.get("residual", True) else "plain network (no skip connections)"
    lines = [
        f"A {config.arch} {kind} ({arch.get('block', '?')} blocks, {num_params / 1e6:.2f}M parameters) trained "
        f"on {dataset_title} with cifarzoo {config.cifarzoo_version}.",
    ]
    top1 = config.metrics.get("test_top1")
    if isinstance(top1, (int, float)) and math.isfinite(top1):
        lines.append(f"Test top-1: **{top1:.2f}%**.")
    if config.name in ZOO:
        lines.append(
            f"In cifarzoo's zoo as `{config.name}`: `cifarzoo.load(\"{config.name}\")` fetches these files "
            f"pinned to a commit and sha256-checked; `cifarzoo.load(\"{HUB_PREFIX}{repo_id}\")` fetches the latest."
        )
    # The first two sentences form one paragraph; the zoo note gets its own.
    return "\n\n".join([" ".join(lines[:2]), *lines[2:]])


_ARCH_ROWS: tuple[tuple[str, str], ...] = (
    ("family", "family"),
    ("block", "block"),
    ("depths", "blocks per stage"),
    ("widths", "stage widths (3x3 conv)"),
    ("out_channels", "stage outputs"),
    ("stem", "stem"),
    ("residual", "skip connections"),
    ("depth", "depth (weighted layers)"),
    ("input_policy", "input policy"),
)


def _architecture(config: ModelConfig, num_params: int, gflops: float) -> str:
    arch = config.architecture
    pre = config.preprocess
    rows = [("arch", f"`{config.arch}`")]
    rows += [(label, _cell(arch[key])) for key, label in _ARCH_ROWS if key in arch]
    rows += [
        ("model args", ", ".join(f"{k}={v}" for k, v in config.model_args.items()) or "-"),
        ("input", f"{pre.input_size}x{pre.input_size} {pre.color_mode}, mean {list(pre.mean)}, std {list(pre.std)}"),
        ("classes", str(config.num_classes)),
        ("parameters", f"{num_params:,}"),
        ("GFLOPs", f"{gflops:.3f} per image (a multiply-add counts as two FLOPs)"),
    ]
    return _table(("", "value"), rows)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _recipe(recipe: str | dict[str, Any] | None) -> str:
    if recipe is None:
        return "Not recorded in this checkpoint's config."
    if isinstance(recipe, str):
        return f"The zoo recipe `{recipe}`: `cifarzoo train {recipe}` reproduces it."
    name = recipe.get("name", "custom")
    intro = (
        f"The complete recipe from the run's `config.json`. `cifarzoo train {name}` runs the zoo's copy; to run "
        f"exactly this one, save the block as `recipe.toml` and run `cifarzoo train recipe.toml`."
    )
    description = f"\n\n{recipe['description']}" if recipe.get("description") else ""
    return f"{intro}{description}\n\n```toml\n{to_toml(recipe)}```"


def to_toml(data: Mapping[str, Any]) -> str:
    """A TOML document for a recipe dict (scalars first, then one table per section; ``None`` is left out)."""
    lines = _toml_lines(data, prefix="")
    return "\n".join(lines).strip("\n") + "\n"


def _toml_lines(data: Mapping[str, Any], prefix: str) -> list[str]:
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items()
             if value is not None and not isinstance(value, Mapping)]
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{prefix}{key}]"] + _toml_lines(value, prefix=f"{prefix}{key}.")
    return lines


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # ints, floats and strings: JSON's spelling is valid TOML


def _metrics_section(metrics: Mapping[str, Any]) -> str:
    if not metrics:
        return "Not measured yet."
    groups = group_metrics(metrics)
    seen = list(dict.fromkeys(m for g, ms in groups.items() if g for m in ms))
    known = list(METRIC_TITLES)
    columns = sorted(seen, key=lambda m: (known.index(m) if m in known else len(known), seen.index(m)))
    parts = []
    if columns:
        rows = [
            (SET_TITLES.get(group, group), *(format_metric(m, values.get(m)) for m in columns))
            for group, values in groups.items() if group
        ]
        parts.append(_table(("evaluation set", *(METRIC_TITLES.get(m, m) for m in columns)), rows))
    if "" in groups:
        parts.append(
            _table(("", "value"), [(METRIC_TITLES.get(m, m), format_metric(m, v)) for m, v in groups[""].items()])
        )
    parts.append(
        "Accuracies are percentages. The best epoch was chosen on the val split; the test split was evaluated "
        "once, at the end. Every number was measured by cifarzoo on these weights."
    )
    return "\n\n".join(parts)


def _files_section(files: Mapping[str, str], left_out: tuple[str, ...]) -> str:
    table = _table(("file", "what"), [(f"`{name}`", text) for name, text in files.items()])
    return "\n\n".join([table, *left_out])


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(tuple("---" for _ in headers)), *(line(r) for r in rows)])


# ----------------------------------------------------------------------------------------------------------
# Building the folder, publishing it


@dataclass
class HubFolder:
    """A built repo folder.

    Attributes:
        path: the folder.
        config: the published model's config.
        files: the file names in the folder, sorted.
        notes: what was left out and why, for the user (may name local paths; never written to the card).
        exports: the exported files and their parity reports, by file name.
    """

    path: Path
    config: ModelConfig
    files: list[str]
    notes: list[str] = field(default_factory=list)
    exports: dict[str, Exported] = field(default_factory=dict)


@dataclass
class Published:
    """What :func:`publish` did. ``upload`` is ``None`` for a dry run; ``folder.path`` is removed after an
    upload unless ``out`` was given."""

    folder: HubFolder
    upload: Upload | None


def build_hub_folder(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    repo_id: str,
    *,
    int8: bool = True,
    data_dir: str | os.PathLike | None = None,
    license: str = LICENSE,
    space_app: bool = False,
) -> HubFolder:
    """Build the Hub repo folder for the checkpoint in ``run_dir`` into ``out`` (a new or empty folder).

    The checkpoint is loaded strictly and re-saved; ONNX and TorchScript exports must pass their parity
    checks. int8 needs the model's dataset for calibration (``data_dir``): when it is unavailable or int8
    parity fails, int8 is left out and :attr:`HubFolder.notes` says why. ``space_app`` adds ``app.py``, the
    Gradio demo of ``hf://repo_id`` for a Hugging Face Space (:func:`~cifarzoo.engines.demo.write_space_app`).
    """
    check_repo_id(repo_id)
    run_dir = Path(run_dir)
    net, config = load_checkpoint(run_dir)
    folder = _empty_folder(Path(out))
    save_checkpoint(net.state_dict(), config, folder)
    exports = {
        ONNX_NAME: export(folder, fmt="onnx", check=True),
        TORCHSCRIPT_NAME: export(folder, fmt="torchscript", check=True),
    }
    notes: list[str] = []
    if int8:
        try:
            exports[INT8_NAME] = export(
                folder, fmt="onnx", dtype="int8", check=True, data_dir=os.fspath(data_dir) if data_dir else None
            )
        except CifarzooError as exc:  # no calibration data, or int8 fails its parity check: publish without it
            notes.append(f"int8 left out: {exc}")
    else:
        notes.append("int8 left out: not requested")
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, folder / name)
    if space_app:
        write_space_app(folder, f"{HUB_PREFIX}{repo_id}")

    files = _describe_files(sorted(p.name for p in folder.iterdir()), exports)
    left_out = () if INT8_NAME in exports else (
        "No int8 ONNX file: it was left out at publish time (no calibration data, or it failed its parity check).",
    )
    gflops = count_flops(net, config.preprocess.input_size, config.in_chans) / 1e9
    card = render_model_card(config, repo_id, count_params(net), gflops, files, left_out, license)
    atomic_write_text(folder / CARD_NAME, card)
    return HubFolder(folder, config, sorted(p.name for p in folder.iterdir()), notes, exports)


def _empty_folder(path: Path) -> Path:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CifarzooError(f"{path}: already exists and is not empty; publish builds into a new or empty folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


_FILE_TEXT: Mapping[str, str] = MappingProxyType({
    CONFIG_NAME: "the self-describing config: arch, classes, preprocessing, metrics, recipe",
    WEIGHTS_NAME: "fp32 weights (safetensors); with config.json, what `cifarzoo.load` reads",
    ONNX_NAME: "ONNX fp32, dynamic batch axis, config in its metadata",
    INT8_NAME: f"ONNX int8 (static QDQ, calibrated on {CALIBRATION_IMAGES} training images), for CPUs",
    TORCHSCRIPT_NAME: "TorchScript (traced), config inside",
    CURVES_NAME: "training curves: loss and top-1 per epoch",
    METRICS_NAME: "per-epoch training log",
    CARD_NAME: "this card",
    SPACE_APP_NAME: "a Gradio demo of this model for a Hugging Face Space (needs `cifarzoo[demo]`)",
})


def _describe_files(names: list[str], exports: Mapping[str, Exported]) -> dict[str, str]:
    described = {}
    for name in [*names, CARD_NAME]:
        text = _FILE_TEXT.get(name, name)
        result = exports.get(name)
        if result is not None and result.parity is not None:
            text += f"; parity vs torch: {result.parity.describe()}"
        described[name] = text
    return described


def publish(
    run_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    out: str | os.PathLike | None = None,
    dry_run: bool = False,
    int8: bool = True,
    data_dir: str | os.PathLike | None = None,
    space_app: bool = False,
) -> Published:
    """Build ``run_dir``'s Hub folder (see :func:`build_hub_folder`) and upload it to ``repo_id`` in one commit.

    ``out`` keeps the folder (a new or empty one); without it, the folder lives in a temporary directory that
    is removed after the upload. ``dry_run`` builds the folder into ``out`` and uploads nothing. The token
    comes from ``HF_TOKEN`` or ``hf auth login``, read by huggingface_hub alone.
    """
    if dry_run and out is None:
        raise CifarzooError("a dry run needs --out DIR: the folder to build the repo in")
    with contextlib.ExitStack() as stack:
        if out is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cifarzoo-publish-"))) / "repo"
        else:
            folder = Path(out)
        built = build_hub_folder(run_dir, folder, repo_id, int8=int8, data_dir=data_dir, space_app=space_app)
        upload = None
        if not dry_run:
            what = f"{built.config.name or built.config.arch} ({len(built.files)} files)"
            upload = upload_folder(
                built.path, repo_id, private=private, commit_message=f"cifarzoo {__version__}: publish {what}"
            )
    return Published(built, upload)

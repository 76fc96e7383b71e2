"""The Python API: ``load`` and ``evaluate``, on any backend (``create_model`` is in :mod:`cifarzoo.model`).

Nothing here imports torch at module level, so ``cifarzoo.load(name, backend="onnx")`` and an ONNX eval run
on onnxruntime, numpy and PIL alone; the torch backends are imported when asked for.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

from cifarzoo.config import ModelConfig
from cifarzoo.data.datasets import load_dataset, train_val_split
from cifarzoo.data.specs import VAL_SIZE, get_dataset_spec
from cifarzoo.data.testsets import TestSet, open_testset
from cifarzoo.data.tta import check_tta
from cifarzoo.engines.calibrate import CalibrationResult
from cifarzoo.engines.evaluate import EvalReport, evaluate_testset
from cifarzoo.engines.robustness import (
    RobustnessReport,
    check_seed,
    evaluate_robustness,
    resolve_corruptions,
    resolve_severities,
)
from cifarzoo.errors import CheckpointError, CifarzooError
from cifarzoo.io.layout import CONFIG_NAME, ONNX_NAME, TORCHSCRIPT_NAME
from cifarzoo.io.resolve import ModelSource, resolve
from cifarzoo.runtime.backends import BACKENDS, Backend
from cifarzoo.runtime.onnx import OnnxModel, parse_device
from cifarzoo.runtime.predictor import Predictor

# The file each exported backend reads from a model folder.
EXPORTED_FILES: Mapping[str, str] = MappingProxyType({"onnx": ONNX_NAME, "torchscript": TORCHSCRIPT_NAME})


def load(
    model: str | os.PathLike, *, device: str = "auto", backend: Backend = "torch", trust_code: bool = False
) -> Predictor:
    """A trained model, ready for inference.

    ``model`` is a zoo name with released weights (``"resnet26-fm"``), a checkpoint folder
    (``model.safetensors`` + ``config.json``, and ``model.onnx`` / ``model.torchscript.pt`` once exported), a Hub
    repo ``"hf://USER/REPO[@revision]"``, or one exported file (``model.int8.onnx``, ``model.torchscript.pt``),
    which sets the backend itself. Hub weights (zoo entries and ``hf://`` ids) are downloaded into the Hugging
    Face cache, only the files the backend reads; zoo entries are pinned to a commit and sha256-checked.

    Backends:
        ``torch`` (default): a :class:`~cifarzoo.model.ZooModel`, an ``nn.Module`` in eval mode that can also be
        fine-tuned. Loading is strict.
        ``onnx``: an onnxruntime session; never imports torch.
        ``torchscript``: the traced module. TorchScript files run code stored in them as they load, so they
        load only with ``trust_code=True`` (``--trust-code``), or when the registry pins them by sha256.
        ``auto``: onnx. A folder without ``model.onnx`` (what ``save_pretrained`` and ``cifarzoo train`` write)
        is exported once, parity-checked, into the cache (``$CIFARZOO_CACHE``, else
        ``$XDG_CACHE_HOME/cifarzoo`` or ``~/.cache/cifarzoo``), keyed by the sha256 of its weights and config,
        and every later load reuses that file; torch when the export cannot be made. ``backend="onnx"`` does
        the same for a folder or zoo entry without ``model.onnx``.

    Every backend's result has ``.predict(images)``, ``.classes``, ``.config``, ``.logits(batch)`` and
    ``.source``: the resolved :class:`~cifarzoo.io.resolve.ModelSource` (zoo entry, Hub snapshot, folder or file,
    where it lives, and which files were sha256-pinned). ``device`` is ``auto`` (CUDA when usable), ``cpu``,
    ``cuda`` or ``cuda:N``; anything else, or a CUDA device that is not there, is a one-line error.
    """
    if backend not in BACKENDS:
        raise CifarzooError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    parse_device(device)  # a typo in --device fails here, before any download
    source = resolve(model, backend=backend)
    predictor = _load_source(source, device=device, backend=backend, trust_code=trust_code)
    predictor.source = source
    return predictor


def _load_source(source: ModelSource, *, device: str, backend: str, trust_code: bool) -> Predictor:
    if source.kind == "file":
        # A single exported file (model.int8.onnx, model.torchscript.pt) picks its own backend.
        backend = "onnx" if source.path.suffix == ".onnx" else "torchscript"
    elif backend == "auto":
        # ONNX whenever it can be had: the folder's own file, or a one-time export into the cache.
        if not (source.path / ONNX_NAME).is_file():
            cached = _cached_onnx(source, device=device, required=False)
            if cached is not None:
                return cached
            backend = "torch"
        else:
            backend = "onnx"
    if backend == "onnx" and source.kind != "file" and not (source.path / ONNX_NAME).is_file():
        predictor = _cached_onnx(source, device=device, required=True)
        assert predictor is not None  # required=True raises instead
        return predictor
    if backend in EXPORTED_FILES and source.kind == "zoo" and not (source.path / EXPORTED_FILES[backend]).is_file():
        # The zoo's files live inside the installed package: advice must never send an export there.
        folder = source.ref.rsplit("/", 1)[-1]
        raise CheckpointError(
            f"{source.ref}: the zoo entry has no {EXPORTED_FILES[backend]}; `cifarzoo export {source.ref} --format "
            f"{backend}` writes a copy of the model with one into ./{folder}/, which then loads as ./{folder}"
        )
    if backend == "onnx":
        if source.kind == "file":
            return OnnxModel.from_file(source.path, device=device)
        return OnnxModel.from_dir(source.path, device=device)
    # The torch backends import torch; the ONNX path above never does, so it starts in well under a second.
    if backend == "torchscript":
        from cifarzoo.runtime.torchscript import TorchScriptModel

        trusted = trust_code or TORCHSCRIPT_NAME in source.pinned
        if source.kind == "file":
            return TorchScriptModel.from_file(source.path, device=device, trust_code=trusted)
        return TorchScriptModel.from_dir(source.path, device=device, trust_code=trusted)
    from cifarzoo.model import ZooModel

    return ZooModel.from_pretrained(source.path, device=device)


def _cached_onnx(source: ModelSource, *, device: str, required: bool) -> OnnxModel | None:
    """The ONNX backend for a checkpoint folder without ``model.onnx``: its export from the cache, made (and
    parity-checked against torch) on first use and keyed by the sha256 of its weights and config.

    Measured on this project's 2-core CPU, onnxruntime fp32 evaluates a folder 3-5x faster than torch eager
    and is exact, so ``auto`` prefers it, export included. When the export cannot be made (a read-only
    cache, an op the exporter lacks) ``auto`` falls back to torch with a warning (``required=False``); an
    explicit ``backend="onnx"`` raises.
    """
    from cifarzoo.io.onnx_cache import cached_onnx_path

    config = ModelConfig.load(source.path / CONFIG_NAME)
    path = cached_onnx_path(source.path)
    if not path.is_file():
        try:
            _export_to_cache(source, path)
        except CifarzooError as exc:
            if required:
                raise
            warnings.warn(f"{source.ref}: no ONNX export ({exc}); running on torch", stacklevel=3)
            return None
    model = OnnxModel(path, config, device=device)
    model.cached_export = True
    return model


def _export_to_cache(source: ModelSource, path: Path) -> None:
    """Export under a temporary name beside ``path`` and rename it into place once its parity check passed, so
    a concurrent run never reads a half-written or unchecked file."""
    import uuid

    from cifarzoo.engines.export import export

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CifarzooError(f"{path.parent}: cannot create the export cache: {exc.strerror or exc}") from None
    staging = path.with_name(f".{uuid.uuid4().hex}.onnx")
    try:
        export(source.path, fmt="onnx", out=staging, check=True)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


# The test-set arguments of :func:`evaluate`, with the CLI flag that gives each.
TESTSET_SOURCES: Mapping[str, str] = MappingProxyType(
    {"dataset": "--dataset", "custom_dir": "--custom-dir", "labels": "--labels", "array": "--array"}
)


def check_one_testset(
    *,
    dataset: object = None,
    custom_dir: object = None,
    labels: object = None,
    array: object = None,
) -> str:
    """The name of the one test-set argument that was given; a one-line error when none or several were.

    :func:`evaluate` checks this itself; the CLI calls it first too, so a mistake is reported before the model
    loads (which may mean a download)."""
    values = {"dataset": dataset, "custom_dir": custom_dir, "labels": labels, "array": array}
    given = [name for name, value in values.items() if value is not None]
    if len(given) != 1:
        *first, last = [f"{name} ({flag})" for name, flag in TESTSET_SOURCES.items()]
        choices = f"{', '.join(first)} or {last}"
        raise CifarzooError(f"evaluate needs exactly one test set, one of {choices}; got {', '.join(given) or 'none'}")
    return given[0]


def evaluate(
    model: Predictor | str | os.PathLike,
    dataset: str | None = None,
    *,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    batch_size: int = 256,
    tta: str = "none",
    custom_dir: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    array: str | os.PathLike | None = None,
    ignore_unknown: bool = False,
    strict: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> EvalReport:
    """Accuracy report of ``model`` (any backend, or a name/folder to :func:`load`) on exactly one test set:

    - ``dataset``: a built-in dataset split: ``test``, or ``val`` (the seeded 5,000-image split of the training
      set that training chose its best epoch on) or ``train``; ``data_dir``/``download`` say where it is.
    - ``custom_dir``: a folder with one subfolder per class (names matched to the model's classes ignoring
      case and separators, with synonyms such as car -> automobile), or a flat folder of images (unlabeled).
    - ``labels``: a ``path,label`` CSV; paths relative to the CSV's folder, labels class names or indices.
    - ``array``: a ``.npz`` (``images``/``data`` + ``labels``) or ``.npy`` (+ ``*_labels.npy``) of uint8
      ``(N, H, W, C)`` images, CIFAR-10.1's format; read with ``allow_pickle=False``.

    Unreadable files are skipped and listed in ``report.skipped`` (``strict=True`` raises instead); folders or
    labels that match no class are an error unless ``ignore_unknown``. ``tta`` is ``none``, ``flip`` or
    ``flip-translate``. Returns an :class:`~cifarzoo.engines.evaluate.EvalReport` (top-1/5, per-class metrics,
    confusion, ECE, reliability bins, per-image predictions); an unlabeled set gives predictions only.
    """
    check_tta(tta)
    check_one_testset(dataset=dataset, custom_dir=custom_dir, labels=labels, array=array)
    if not isinstance(model, Predictor):
        model = load(model)
    if dataset is not None:
        testset = _dataset_testset(model, dataset, split, data_dir, download)
    else:
        testset = open_testset(model.classes, ignore_unknown, custom_dir=custom_dir, labels=labels, array=array)
    return evaluate_testset(
        model.logits, model.config.preprocess, testset, batch_size=batch_size, tta=tta, strict=strict,
        progress=progress, workers=workers, temperature=model.config.temperature,
    )


def calibrate(
    model: Predictor | str | os.PathLike,
    dataset: str | None = None,
    *,
    split: str = "val",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    custom_dir: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    array: str | os.PathLike | None = None,
    ignore_unknown: bool = False,
    out: str | os.PathLike | None = None,
    batch_size: int = 256,
    workers: int | None = None,
    device: str = "auto",
) -> CalibrationResult:
    """Fit ``model``'s temperature on one labelled set and store it with the model (temperature scaling).

    The set is given as for :func:`evaluate`; with ``dataset`` it is the ``val`` split by default (the
    held-out training images: never fit on the test set you report). The temperature minimises the NLL of the
    set's logits (L-BFGS); it goes into ``config.json`` (``calibration``: temperature, set, ECE and NLL before
    and after) and into ``model.onnx``'s embedded config, in the model's folder or, with ``out``, in a copy
    there. Zoo entries and Hub snapshots are only written to ``out``. Every backend then applies it before
    the softmax; top-1 never changes.
    """
    from cifarzoo.engines.calibrate import fit_calibration, write_calibration

    predictor = model if isinstance(model, Predictor) else load(model, device=device, backend="auto")
    if predictor.source is None:
        raise CifarzooError("calibrate needs a model loaded with cifarzoo.load (its folder is where the result goes)")
    report = evaluate(
        predictor, dataset, split=split, data_dir=data_dir, download=download, custom_dir=custom_dir,
        labels=labels, array=array, ignore_unknown=ignore_unknown, strict=False, batch_size=batch_size,
        workers=workers,
    )
    if not report.labeled or report.logits is None or report.labels is None:
        raise CifarzooError(f"{report.name}: calibration needs labelled images; this set has no labels")
    calibration = fit_calibration(report.logits, report.labels, fitted_on=report.name)
    folder = write_calibration(predictor.source, calibration, out)
    return CalibrationResult(folder, calibration, report)


def evaluate_corruptions(
    model: Predictor | str | os.PathLike,
    dataset: str | None = None,
    *,
    corruptions: str | Sequence[str] = "all",
    severities: str | int | Sequence[int] = "1-5",
    seed: int = 0,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    batch_size: int = 256,
    tta: str = "none",
    custom_dir: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    array: str | os.PathLike | None = None,
    ignore_unknown: bool = False,
    strict: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> RobustnessReport:
    """Top-1 of ``model`` on one labelled test set (given as for :func:`evaluate`), clean and under the CIFAR-10-C
    corruptions: ``corruptions`` is ``"all"``, ``"gaussian_noise,fog"`` or a list of names, ``severities``
    ``"1-5"``, ``3``, ``"1,3"`` or a list of levels. They are applied after the resize to the model's input size
    and before normalisation, deterministically for a ``seed``, whatever the ``batch_size``. Returns a
    :class:`~cifarzoo.engines.robustness.RobustnessReport` (per cell top-1, clean top-1, mCA, relative robustness).
    On CIFAR-10's test split this measures the model on CIFAR-10-C.
    """
    names, levels, seed = resolve_corruptions(corruptions), resolve_severities(severities), check_seed(seed)
    check_tta(tta)
    check_one_testset(dataset=dataset, custom_dir=custom_dir, labels=labels, array=array)
    if not isinstance(model, Predictor):
        model = load(model)
    if dataset is not None:
        testset = _dataset_testset(model, dataset, split, data_dir, download)
    else:
        testset = open_testset(model.classes, ignore_unknown, custom_dir=custom_dir, labels=labels, array=array)
    return evaluate_robustness(
        model.logits, model.config.preprocess, testset, corruptions=names, severities=levels, seed=seed,
        batch_size=batch_size, tta=tta, strict=strict, progress=progress, workers=workers,
    )


def _dataset_testset(
    model: Predictor, dataset: str, split: str, data_dir: str | os.PathLike | None, download: bool
) -> TestSet:
    spec = get_dataset_spec(dataset)
    if split not in ("train", "val", "test"):
        raise CifarzooError(f"unknown split {split!r}; choose train, val or test")
    data = load_dataset(spec.name, "test" if split == "test" else "train", data_dir=data_dir, download=download)
    if split != "test":
        train_part, val_part = train_val_split(data, VAL_SIZE, seed=0)
        data = val_part if split == "val" else train_part
    if tuple(data.classes) != tuple(model.classes):
        raise CifarzooError(
            f"{model.config.name or model.config.arch} predicts {len(model.classes)} classes "
            f"({', '.join(model.classes[:3])}, ...), not {spec.title}'s"
        )
    return TestSet.from_arrays(data.images, data.labels, data.classes, name=f"{spec.name}:{split}")


__all__ = [
    "BACKENDS",
    "Backend",
    "CalibrationResult",
    "RobustnessReport",
    "calibrate",
    "check_one_testset",
    "evaluate",
    "evaluate_corruptions",
    "load",
]

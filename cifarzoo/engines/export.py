"""``cifarzoo export``: a model folder or zoo name -> ONNX (fp32/fp16/int8) or TorchScript, parity-checked."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from cifarzoo.config import ModelConfig
from cifarzoo.data.datasets import load_dataset
from cifarzoo.data.files import iter_image_files
from cifarzoo.data.preprocess import try_load_uint8
from cifarzoo.data.specs import DATASETS
from cifarzoo.errors import CifarzooError
from cifarzoo.io import export as ex
from cifarzoo.io.checkpoint import load_checkpoint, save_checkpoint
from cifarzoo.io.layout import EXPORT_FORMATS, ONNX_FILES, TORCHSCRIPT_NAME, ExportFormat
from cifarzoo.io.resolve import resolve
from cifarzoo.runtime.onnx import OnnxModel
from cifarzoo.runtime.torch_runner import TorchRunner
from cifarzoo.runtime.torchscript import TorchScriptModel

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 512
PARITY_INPUTS = 256


@dataclass
class Exported:
    path: Path
    format: str
    dtype: str
    exporter: str
    parity: ex.Parity | None = None  # set when checked


def _calibration_images(
    config: ModelConfig, calib_dir: str | None, data_dir: str | None, n: int, offset: int = 0
) -> np.ndarray:
    """``n`` uint8 images at the model's size, from ``calib_dir``, else from the model's own training set.

    Images are taken in one fixed order, ``n`` from ``offset`` on, so two calls with non-overlapping ranges never
    share an image: the int8 parity check (``offset=CALIBRATION_IMAGES``) runs on images calibration never saw.
    """
    purpose = "to calibrate with" if offset == 0 else f"held out from calibration (after the first {offset})"
    if calib_dir:
        paths = iter_image_files(calib_dir)[offset : offset + n]
        arrays = [a for a in (try_load_uint8(p, config.preprocess) for p in paths) if isinstance(a, np.ndarray)]
        if not arrays:
            raise CifarzooError(f"{calib_dir}: no readable images {purpose}")
        return np.stack(arrays)
    if config.dataset not in DATASETS:
        raise CifarzooError(
            f"{config.name or config.arch}: int8 calibration needs --calib-dir "
            f"(dataset {config.dataset!r} is not built in)"
        )
    data = load_dataset(config.dataset, "train", data_dir=data_dir)
    picks = calibration_order(len(data))[offset : offset + n]
    if len(picks) == 0:
        raise CifarzooError(f"{config.dataset}: no training images {purpose}")
    return data.images[np.sort(picks)]


def calibration_order(n_images: int, seed: int = 0) -> np.ndarray:
    """The one seeded order in which calibration and parity images are drawn from a training set."""
    return np.random.default_rng(seed).permutation(n_images)


def export(
    model: str | os.PathLike,
    *,
    fmt: ExportFormat = "onnx",
    out: str | os.PathLike | None = None,
    dtype: ex.Dtype = "fp32",
    opset: int | None = None,
    check: bool = False,
    calib_dir: str | None = None,
    data_dir: str | None = None,
    fp16_storage: bool = False,
) -> Exported:
    """Export ``model`` (a zoo name, checkpoint folder or run folder).

    ``out`` defaults to the standard file name inside the checkpoint folder (``model.onnx``,
    ``model.int8.onnx``, ``model.torchscript.pt``); for a zoo name, inside ``./NAME/``, next to a copy of its
    checkpoint, so the folder loads with ``--backend onnx``. ``check`` compares the export with torch on 256
    inputs and raises if it falls outside the tolerance (fp32: 1e-4 of the logit scale and identical top-1;
    int8: 99% top-1 agreement on real images that calibration did not see). ``fp16_storage`` (fp32 ONNX only)
    stores the weights that fp16 represents exactly as fp16: about half the file for a checkpoint saved in fp16,
    with the same outputs (:func:`cifarzoo.io.export.export_onnx`).

    A failure leaves nothing behind: no partial file, no file that failed its check, and no ``./NAME/`` folder
    made for it. A full disk or a read-only folder is a one-line error naming the file.
    """
    if fmt not in EXPORT_FORMATS:
        raise CifarzooError(f"unknown format {fmt!r}; choose {' or '.join(EXPORT_FORMATS)}")
    if dtype not in ONNX_FILES or (fmt == "torchscript" and dtype != "fp32"):
        raise CifarzooError(f"--dtype {dtype} is not available for {fmt} (onnx: fp32, fp16, int8; torchscript: fp32)")
    if fp16_storage and (fmt, dtype) != ("onnx", "fp32"):
        raise CifarzooError(f"--fp16-storage applies to fp32 ONNX files, not to {fmt} {dtype}")
    source = resolve(model)
    if source.kind == "file":
        raise CifarzooError(f"{model}: already an exported file; export from its checkpoint folder")
    net, config = load_checkpoint(source.path)
    # A zoo name or hf:// id exports into ./NAME/ (the repo's name for an hf:// id), next to a copy of its
    # checkpoint, so the folder loads as one. That folder is new: an existing one is the user's, never replaced.
    folder = source.path if source.kind == "folder" else Path(os.fspath(model).split("@")[0].rsplit("/", 1)[-1])
    copy_checkpoint = source.kind != "folder" and out is None
    if copy_checkpoint and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CifarzooError(
            f"{folder}: already exists and is not empty; export {model} with --out FILE, or export the folder "
            f"as ./{folder}"
        )
    made = folder if copy_checkpoint and not folder.exists() else None
    target = Path(out) if out else folder / (ONNX_FILES[dtype] if fmt == "onnx" else TORCHSCRIPT_NAME)
    try:
        if copy_checkpoint:
            save_checkpoint(net.state_dict(), config, folder)
        return _export_file(net, config, target, fmt=fmt, dtype=dtype, opset=opset, check=check,
                            calib_dir=calib_dir, data_dir=data_dir, fp16_storage=fp16_storage)
    except BaseException as exc:
        if made is not None:  # the ./NAME/ folder was made for this export only
            shutil.rmtree(made, ignore_errors=True)
        if isinstance(exc, OSError):  # the disk is full, the folder is read-only, ...
            raise CifarzooError(f"{target}: {fmt} export failed: {exc.strerror or exc}; nothing was written") from None
        raise


def _export_file(
    net: nn.Module,
    config: ModelConfig,
    target: Path,
    *,
    fmt: str,
    dtype: ex.Dtype,
    opset: int | None,
    check: bool,
    calib_dir: str | None,
    data_dir: str | None,
    fp16_storage: bool = False,
) -> Exported:
    if fmt == "torchscript":
        result = ex.export_torchscript(net, config, target)
        # The file just written by us: trusted. On the CPU, like the torch reference it is compared with.
        candidate = TorchScriptModel.from_file(target, device="cpu", trust_code=True).logits
    elif dtype == "fp32":
        result = ex.export_onnx(net, config, target, opset or ex.DEFAULT_OPSET, fp16_storage=fp16_storage)
        candidate = OnnxModel.from_file(target, device="cpu").logits
    else:
        fp32_path = target.with_name(target.stem + ".fp32-tmp.onnx")
        try:
            base = ex.export_onnx(net, config, fp32_path, opset or ex.DEFAULT_OPSET)
            if dtype == "fp16":
                ex.convert_fp16(fp32_path, target)
            else:
                calibration = _calibration_images(config, calib_dir, data_dir, CALIBRATION_IMAGES)
                ex.quantize_int8(fp32_path, target, ex.parity_inputs(config, calibration, n=len(calibration)))
        finally:
            fp32_path.unlink(missing_ok=True)
        result = ex.ExportResult(target, base.exporter)
        candidate = OnnxModel.from_file(target, device="cpu").logits
    exported = Exported(result.path, fmt, dtype, result.exporter)
    if check:
        try:
            # int8 is judged on real images held out from calibration; fp32/fp16 on random ones.
            images = (
                _calibration_images(config, calib_dir, data_dir, PARITY_INPUTS, offset=CALIBRATION_IMAGES)
                if dtype == "int8"
                else None
            )
            parity = ex.check_parity(TorchRunner(net), candidate, ex.parity_inputs(config, images, n=PARITY_INPUTS))
        except BaseException:
            result.path.unlink(missing_ok=True)  # an unchecked file must not pass for a checked one
            raise
        exported.parity = parity
        if not parity.passes(dtype):
            result.path.unlink(missing_ok=True)  # a file that failed its check must not be picked up later
            raise CifarzooError(
                f"{result.path}: {dtype} export fails its parity check ({parity.describe()}); not written"
            )
    return exported

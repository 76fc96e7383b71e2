"""The Python API: ``create_model``, ``load`` and ``evaluate``.

This module imports torch only inside the functions that need it, so ``cifarzoo.load(name, backend="onnx")``
runs on onnxruntime, numpy and PIL alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from cifarzoo.config import ModelConfig
from cifarzoo.errors import CifarzooError
from cifarzoo.io.resolve import resolve_model_dir

if TYPE_CHECKING:
    from cifarzoo.data.testsets import TestSet
    from cifarzoo.engines.evaluate import EvalReport
    from cifarzoo.engines.predict import Predictor
    from cifarzoo.model import ZooModel

Backend = Literal["auto", "torch", "onnx", "torchscript"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "torchscript")

# The validation split that zoo recipes hold out (data.val_size, seeded with train.seed = 0).
VAL_SIZE = 5000


def create_model(
    name_or_arch: str,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    pretrained: str | os.PathLike | bool = False,
    **model_args: Any,
) -> ZooModel:
    """An untrained model, like ``timm.create_model``.

    Args:
        name_or_arch: a zoo name (``"resnet26-c10"``: that entry's classes and preprocessing come with it) or
            an arch (``"resnet26"``: CIFAR-10 preprocessing).
        num_classes: a new classifier size. Without ``classes``, labels are ``class_0 ...``.
        classes: label names; sets ``num_classes``.
        pretrained: for ``tv_resnet50`` only: ImageNet weights from this ``.pth`` path, or ``True`` for
            torchvision's cache. Trained zoo weights come from :func:`load`.
        **model_args: builder options: ``drop_rate``, ``se`` (CIFAR ResNets), ``freeze`` (``tv_resnet50``).
    """
    from cifarzoo.data.specs import CIFAR10
    from cifarzoo.model import ZooModel
    from cifarzoo.models.factory import build_model
    from cifarzoo.models.specs import ARCHS
    from cifarzoo.registry import ZOO, get_entry

    if name_or_arch in ZOO:
        config = ZOO[name_or_arch].model_config()
    elif name_or_arch in ARCHS:
        config = ModelConfig(
            arch=name_or_arch,
            num_classes=CIFAR10.num_classes,
            classes=CIFAR10.classes,
            preprocess=CIFAR10.preprocess_config(),
            dataset=CIFAR10.tag,
        )
    else:
        get_entry(name_or_arch)  # raises with close matches
        raise AssertionError("unreachable")
    if classes is not None:
        if num_classes is not None and num_classes != len(classes):
            raise CifarzooError(f"num_classes={num_classes} conflicts with {len(classes)} class names")
        config = config.replace(num_classes=len(classes), classes=tuple(classes), name=None, metrics={})
    elif num_classes is not None and num_classes != config.num_classes:
        labels = tuple(f"class_{i}" for i in range(num_classes))
        config = config.replace(num_classes=num_classes, classes=labels, name=None, metrics={})
    config = config.replace(model_args={**config.model_args, **model_args})
    net = build_model(config.arch, config.num_classes, config.in_chans, **config.model_args)
    if pretrained is not False:
        if not hasattr(net, "load_backbone"):
            raise CifarzooError(
                f"pretrained= loads ImageNet backbones (tv_resnet50); for trained {config.arch} weights use cifarzoo.load"
            )
        from cifarzoo.io.pretrained import imagenet_state_dict

        net.load_backbone(imagenet_state_dict(pretrained))
    return ZooModel(net, config)


def load(model: str | os.PathLike, device: str = "auto", backend: Backend = "torch") -> Predictor:
    """A trained model, ready for inference.

    ``model`` is a zoo name with released weights (``"resnet26-fm"``), a checkpoint folder
    (``model.safetensors`` + ``config.json``, and ``model.onnx`` / ``model.torchscript.pt`` once exported), a Hub
    repo ``"hf://USER/REPO[@revision]"``, or one exported file (``model.int8.onnx``, ``model.torchscript.pt``),
    which sets the backend itself. Hub weights (zoo entries and ``hf://`` ids) are downloaded into the Hugging
    Face cache, only the files the backend reads; zoo entries are pinned to a commit and sha256-checked.

    Backends:
        ``torch`` (default): a :class:`~cifarzoo.model.ZooModel`, an ``nn.Module`` in eval mode that can also
        be fine-tuned. Loading is strict.
        ``onnx``: an onnxruntime session; never imports torch.
        ``torchscript``: the traced module.
        ``auto``: onnx when the folder has ``model.onnx``, torch otherwise.

    Every backend's result has ``.predict(images)``, ``.classes``, ``.config`` and ``.logits(batch)``.
    ``device`` is ``auto`` (CUDA when usable), ``cpu``, ``cuda`` or ``cuda:N``.
    """
    if backend not in BACKENDS:
        raise CifarzooError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from cifarzoo.engines.runtime import ONNX_NAME, OnnxModel, TorchScriptModel

    path = Path(model)
    # A single exported file (model.int8.onnx, model.torchscript.pt) picks its own backend.
    if path.suffix == ".onnx" and path.is_file():
        return OnnxModel.from_file(path, device=device)
    if path.suffix == ".pt" and path.is_file():
        return TorchScriptModel.from_file(path, device=device)
    directory = resolve_model_dir(model, backend=backend)
    if backend == "auto":
        backend = "onnx" if (directory / ONNX_NAME).is_file() else "torch"
    if backend == "onnx":
        return OnnxModel.from_dir(directory, device=device)
    if backend == "torchscript":
        return TorchScriptModel.from_dir(directory, device=device)
    from cifarzoo.engines.runtime import torch_device
    from cifarzoo.io.checkpoint import load_checkpoint
    from cifarzoo.model import ZooModel

    net, config = load_checkpoint(directory)
    return ZooModel(net, config).to(torch_device(device)).eval()


def evaluate(
    model: Predictor | str | os.PathLike,
    dataset: str | None = None,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    batch_size: int = 256,
    tta: str = "none",
    *,
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
    from cifarzoo.data.testsets import open_testset
    from cifarzoo.engines.evaluate import check_tta, evaluate_testset
    from cifarzoo.engines.predict import Predictor

    check_tta(tta)
    sources = {"dataset": dataset, "custom_dir": custom_dir, "labels": labels, "array": array}
    given = [name for name, value in sources.items() if value is not None]
    if len(given) != 1:
        raise CifarzooError(
            f"evaluate needs exactly one test set ({', '.join(f'{k}=' for k in sources)}), got "
            f"{', '.join(given) or 'none'}"
        )
    if not isinstance(model, Predictor):
        model = load(model)
    if dataset is not None:
        testset = _dataset_testset(model, dataset, split, data_dir, download)
    else:
        testset = open_testset(model.classes, ignore_unknown, custom_dir=custom_dir, labels=labels, array=array)
    return evaluate_testset(
        model.logits, model.config.preprocess, testset, batch_size, tta, strict=strict, progress=progress,
        workers=workers,
    )


def _dataset_testset(
    model: Predictor, dataset: str, split: str, data_dir: str | os.PathLike | None, download: bool
) -> TestSet:
    from cifarzoo.data.datasets import load_dataset, train_val_split
    from cifarzoo.data.specs import get_dataset_spec
    from cifarzoo.data.testsets import TestSet

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

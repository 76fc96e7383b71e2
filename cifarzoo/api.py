"""The Python API: ``create_model``, ``load`` and the :class:`ZooModel` they return."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from cifarzoo.config import ModelConfig
from cifarzoo.data.preprocess import ImageInput
from cifarzoo.data.specs import CIFAR10
from cifarzoo.engines.evaluate import EvalReport, evaluate_arrays
from cifarzoo.engines.predict import Prediction, TorchRunner, predict_images
from cifarzoo.errors import CifarzooError, NoWeightsError, UnknownModelError
from cifarzoo.io.checkpoint import load_checkpoint, save_checkpoint, verify_sha256
from cifarzoo.models.factory import build_model
from cifarzoo.models.specs import ARCHS
from cifarzoo.registry import ZOO, ZooEntry, get_entry


# The validation split that zoo recipes hold out (data.val_size, seeded with train.seed = 0).
VAL_SIZE = 5000


class ZooModel(nn.Module):
    """A network together with its :class:`~cifarzoo.config.ModelConfig`.

    It is an ``nn.Module``: ``model(x)`` returns logits for normalised ``(N, C, H, W)`` input, and
    ``.train()``, ``.parameters()`` and optimisers work as usual. The bare network is ``model.net``; its
    ``state_dict`` is what checkpoints store (``model.state_dict()`` prefixes the keys with ``net.``).

    Attributes:
        net: the network.
        config: arch, classes, preprocessing, metrics and recipe.
    """

    def __init__(self, net: nn.Module, config: ModelConfig):
        super().__init__()
        self.net = net
        self.config = config

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def predict(
        self, images: ImageInput | Sequence[ImageInput], topk: int = 5, batch_size: int = 256
    ) -> list[Prediction]:
        """Top-k labels for image files, PIL images or ``(H, W[, C])`` uint8 arrays.

        Images go through the model's own preprocessing (decode, convert, resize policy, normalise). An
        unreadable file raises :class:`~cifarzoo.errors.ImageReadError`.
        """
        if isinstance(images, (str, os.PathLike)) or not isinstance(images, Sequence):
            images = [images]
        was_training = self.training
        device = next(self.net.parameters()).device
        try:
            runner = TorchRunner(self.net, device=str(device))
            return predict_images(runner, self.config, images, topk, batch_size, strict=True).predictions
        finally:
            self.net.train(was_training)

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json``: a checkpoint :func:`load` reads back exactly."""
        return save_checkpoint(self.net.state_dict(), self.config, directory, dtype=dtype)

    def extra_repr(self) -> str:
        return f"name={self.config.name or self.config.arch!r}, num_classes={self.config.num_classes}"


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


def load(model: str | os.PathLike, device: str | torch.device = "cpu") -> ZooModel:
    """A trained model, ready for inference (eval mode) or fine-tuning.

    ``model`` is a zoo name with released weights (``"resnet26-fm"``) or a checkpoint directory holding
    ``model.safetensors`` and ``config.json``. Loading is strict.
    """
    directory = Path(model)
    if not directory.is_dir():
        directory = resolve_weights(_lookup(str(model)))
    net, config = load_checkpoint(directory)
    return ZooModel(net, config).to(device).eval()


def evaluate(
    model: ZooModel,
    dataset: str,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    batch_size: int = 256,
    tta: str = "none",
) -> EvalReport:
    """Accuracy report of ``model`` on a built-in dataset split: ``test``, or ``val`` (the seeded 5,000-image
    split of the training set that training chose its best epoch on) or ``train``.

    Returns an :class:`~cifarzoo.engines.evaluate.EvalReport` (top-1/5, per-class metrics, confusion, ECE).
    """
    from cifarzoo.data.datasets import load_dataset, train_val_split
    from cifarzoo.data.specs import get_dataset_spec

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
    device = next(model.net.parameters()).device
    runner = TorchRunner(model.net, device=str(device))
    return evaluate_arrays(runner, model.config.preprocess, data.images, data.labels, data.classes, batch_size, tta)


def _lookup(name: str) -> ZooEntry:
    if name in ARCHS:
        raise UnknownModelError(
            f"{name!r} is an architecture, not a trained model: pick a zoo name (`cifarzoo list`) or use "
            f"cifarzoo.create_model({name!r}) for an untrained one"
        )
    if os.sep in name or name.startswith("."):
        raise UnknownModelError(f"{name}: no such checkpoint directory")
    return get_entry(name)


def resolve_weights(entry: ZooEntry) -> Path:
    """The checkpoint directory holding an entry's released weights, checked against the registry's sha256."""
    if entry.weights.kind == "bundled":
        directory = Path(str(resources.files("cifarzoo") / "weights" / (entry.weights.location or entry.name)))
        for name, expected in entry.weights.sha256.items():
            verify_sha256(directory / name, expected)
        return directory
    raise NoWeightsError(
        f"{entry.name} has no released weights yet; an untrained one is cifarzoo.create_model({entry.name!r})"
    )

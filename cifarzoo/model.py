"""``ZooModel``, the torch backend's model, and :func:`create_model` (untrained); trained ones come from
:meth:`ZooModel.from_pretrained` (what ``cifarzoo.load`` uses for the torch backend).

``ZooModel`` follows the Hugging Face mixin conventions: ``save_pretrained`` / ``from_pretrained`` /
``push_to_hub`` on the class, weights in ``model.safetensors`` and everything else in ``config.json``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cifarzoo.config import ModelConfig
from cifarzoo.engines.publish import Published, publish
from cifarzoo.errors import CifarzooError
from cifarzoo.io.checkpoint import build, load_checkpoint, save_checkpoint
from cifarzoo.io.resolve import resolve
from cifarzoo.registry import model_config
from cifarzoo.runtime.predictor import Predictor
from cifarzoo.runtime.torch_runner import TorchRunner, torch_device


class ZooModel(Predictor, nn.Module):
    """A network together with its :class:`~cifarzoo.config.ModelConfig`.

    It is an ``nn.Module``: ``model(x)`` returns logits for normalised ``(N, C, H, W)`` input, and
    ``.train()``, ``.parameters()`` and optimisers work as usual. The bare network is ``model.net``; its
    ``state_dict`` is what checkpoints store (``model.state_dict()`` prefixes the keys with ``net.``).
    ``model.predict(images)`` runs the model's own preprocessing and returns top-k predictions.

    Attributes:
        net: the network.
        config: arch, classes, preprocessing, metrics and recipe.
    """

    backend = "torch"

    def __init__(self, net: nn.Module, config: ModelConfig):
        nn.Module.__init__(self)
        self.net = net
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a normalised numpy batch, in eval mode; the module's mode and memory format are restored."""
        return TorchRunner(self.net)(batch)

    def save_pretrained(self, directory: str | os.PathLike, *, dtype: torch.dtype | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json``: a checkpoint :meth:`from_pretrained` reads back exactly."""
        return save_checkpoint(self.net.state_dict(), self.config, directory, dtype=dtype)

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike, *, device: str = "auto") -> ZooModel:
        """The trained torch model named by ``model``: a zoo name, a checkpoint folder or an ``hf://`` id.

        Loading is strict (every weight present, with its shape, and nothing else) and reads safetensors only.
        The result is in eval mode on ``device``. ``cifarzoo.load(model)`` is this for the torch backend.
        """
        target = torch_device(device)  # a bad or missing device fails before anything is read or downloaded
        source = resolve(model, backend="torch")
        if source.kind == "file":
            raise CifarzooError(f"{model}: an exported file, not torch weights (a folder with model.safetensors)")
        net, config = load_checkpoint(source.path)
        loaded = cls(net, config).to(target).eval()
        loaded.source = source
        return loaded

    def push_to_hub(self, repo_id: str, **options: Any) -> Published:
        """Publish this model to the Hub as ``repo_id``: :func:`cifarzoo.engines.publish.publish` on a folder
        saved from it (weights, ONNX/TorchScript exports checked for parity, and the model card)."""
        with tempfile.TemporaryDirectory(prefix="cifarzoo-push-") as tmp:
            return publish(self.save_pretrained(Path(tmp) / "model"), repo_id, **options)

    def extra_repr(self) -> str:
        return f"name={self.config.name or self.config.arch!r}, num_classes={self.config.num_classes}"


def create_model(
    name_or_arch: str,
    *,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    pretrained: str | os.PathLike | bool = False,
    **model_args: Any,
) -> ZooModel:
    """An untrained model, like ``timm.create_model``.

    Args:
        name_or_arch: a zoo name (``"resnet26-c10"``: that entry's classes and preprocessing come with it) or
            an arch (``"resnet26"``: CIFAR-10 classes and preprocessing).
        num_classes: a new classifier size. Without ``classes``, labels are ``class_0 ...``.
        classes: label names; sets ``num_classes``.
        pretrained: for ``tv_resnet50`` only: ImageNet weights from this ``.pth`` path, or ``True`` for
            torchvision's cache. Trained zoo weights come from ``cifarzoo.load``.
        **model_args: builder options: ``drop_rate``, ``se`` (CIFAR ResNets), ``freeze`` (``tv_resnet50``).
    """
    config = model_config(name_or_arch, num_classes=num_classes, classes=classes, model_args=model_args)
    return ZooModel(build(config, pretrained=pretrained), config)


__all__ = ["ZooModel", "create_model"]

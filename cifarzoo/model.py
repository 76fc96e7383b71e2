"""``ZooModel``: a torch network together with its config; what ``cifarzoo.load`` and ``create_model`` return."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cifarzoo.config import ModelConfig
from cifarzoo.engines.predict import Predictor, TorchRunner
from cifarzoo.io.checkpoint import save_checkpoint


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

    def __init__(self, net: nn.Module, config: ModelConfig):
        nn.Module.__init__(self)
        self.net = net
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a normalised numpy batch, in eval mode (the module's mode is restored afterwards)."""
        was_training = self.training
        try:
            return TorchRunner(self.net, device=str(next(self.net.parameters()).device))(batch)
        finally:
            self.net.train(was_training)

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json``: a checkpoint ``cifarzoo.load`` reads back exactly."""
        return save_checkpoint(self.net.state_dict(), self.config, directory, dtype=dtype)

    def extra_repr(self) -> str:
        return f"name={self.config.name or self.config.arch!r}, num_classes={self.config.num_classes}"

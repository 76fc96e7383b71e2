"""Build a network from an arch name, and measure it (parameters, FLOPs)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cifarzoo.errors import ConfigError
from cifarzoo.models.resnet import CifarResNet
from cifarzoo.models.specs import ArchSpec, get_arch_spec
from cifarzoo.models.transfer import TorchvisionResNetTransfer

# One builder per architecture family; the spec carries everything else.
_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "cifar_resnet": CifarResNet,
    "torchvision_resnet": TorchvisionResNetTransfer,
}


def build_model(arch: str, num_classes: int = 10, in_chans: int = 3, **model_args: Any) -> nn.Module:
    """An untrained network for a registered arch name (``resnet26``, ``plain50``, ``tv_resnet50``, ...).

    ``model_args`` go to the family's constructor: ``drop_rate`` and ``se`` for CIFAR ResNets, ``drop_rate``
    and ``freeze`` for the torchvision transfer model.
    """
    spec: ArchSpec = get_arch_spec(arch)
    try:
        return _BUILDERS[spec.family](spec, num_classes=num_classes, in_chans=in_chans, **model_args)
    except TypeError as exc:  # an unknown model_args key
        raise ConfigError(f"bad model_args for {arch}: {exc}") from None


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_size: int, in_chans: int) -> int:
    """Forward FLOPs for one image, counting a multiply-add as 2 FLOPs (torch's FlopCounterMode).

    Only matrix work (convolutions, linear layers) is counted; elementwise ops, pooling and resizing are not.
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_chans, input_size, input_size)
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())

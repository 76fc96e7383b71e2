"""The checkpoint format: a directory with ``model.safetensors`` and a self-describing ``config.json``.

Loading is strict: every key of the network must be in the file with the right shape, and nothing else may
be. Weights are read only from safetensors, which cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cifarzoo.atomic import atomic_path, atomic_write_text
from cifarzoo.config import ModelConfig
from cifarzoo.errors import CheckpointError, CifarzooError, ConfigError
from cifarzoo.io.layout import CONFIG_NAME, WEIGHTS_NAME
from cifarzoo.io.pretrained import imagenet_state_dict
from cifarzoo.models.factory import build_model


def save_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    config: ModelConfig,
    directory: str | os.PathLike,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed), atomically.

    ``dtype`` (e.g. ``torch.float16``) casts floating-point tensors to shrink the file; loading casts back.
    """
    directory = Path(directory)
    tensors = {
        key: (t.to(dtype) if dtype is not None and t.is_floating_point() else t).detach().cpu().contiguous()
        for key, t in state_dict.items()
    }
    metadata = {"format": "pt", "arch": config.arch, "cifarzoo_version": config.cifarzoo_version}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")
    return directory


def load_config(directory: str | os.PathLike) -> ModelConfig:
    """The validated config of a checkpoint directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a checkpoint directory")
    try:
        return ModelConfig.load(directory / CONFIG_NAME)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def load_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of ``directory/model.safetensors``."""
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(strict=True)``, with a one-line error naming the file and the keys at fault.

    Stricter than torch in two ways: a tensor whose kind of dtype does not fit (integers or booleans where
    floating-point weights belong, floats where an integer counter belongs) is refused instead of silently cast,
    and so are NaN or infinite weights, which would make every prediction NaN. Floating-point precisions may
    differ (an fp16 checkpoint loads into an fp32 model).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    present = [k for k in expected if k in state_dict]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(expected[k].shape)}"
        for k in present
        if state_dict[k].shape != expected[k].shape
    ]
    wrong_dtype = [
        f"{k} {str(state_dict[k].dtype).removeprefix('torch.')} (needs {_dtype_kind(expected[k])})"
        for k in present
        if _dtype_kind(state_dict[k]) != _dtype_kind(expected[k])
    ]
    problems = [
        f"{label} ({len(keys)}): {_abbreviate(keys)}"
        for label, keys in (
            ("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", wrong_shape),
            ("dtype mismatch", wrong_dtype),
        )
        if keys
    ]
    if problems:
        raise CheckpointError(f"{source}: weights do not match the model: " + "; ".join(problems))
    non_finite = [k for k in present if state_dict[k].is_floating_point() and not _all_finite(state_dict[k])]
    if non_finite:
        raise CheckpointError(
            f"{source}: non-finite weights (NaN or inf) in {len(non_finite)} tensor(s): {_abbreviate(non_finite)}; "
            "the file is corrupt or comes from a training run that diverged"
        )
    model.load_state_dict(state_dict, strict=True)


def _dtype_kind(tensor: torch.Tensor) -> str:
    """``floating-point``, ``integer``, ``complex`` or ``boolean``: what must match between file and model."""
    if tensor.is_floating_point():
        return "floating-point"
    if tensor.is_complex():
        return "complex"
    return "boolean" if tensor.dtype == torch.bool else "integer"


def _all_finite(tensor: torch.Tensor) -> bool:
    # float32 for the check: isfinite is not implemented for every storage precision (float8 types).
    return bool(torch.isfinite(tensor.detach().to(torch.float32)).all())


def _abbreviate(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def build(config: ModelConfig, *, pretrained: str | os.PathLike | bool = False) -> nn.Module:
    """The untrained network ``config`` describes: the one builder for create_model, training and loading.

    ``pretrained`` loads ImageNet backbone weights into a transfer arch (``tv_resnet50``): a ``.pth`` path, or
    ``True`` for torchvision's cache. Trained weights of any arch come from :func:`load_checkpoint`.
    """
    try:
        net = build_model(config.arch, config.num_classes, config.in_chans, **config.model_args)
    except ValueError as exc:  # a builder refusing an option's value (dropout outside 0-1, an unknown freeze mode)
        raise ConfigError(f"bad model_args for {config.arch}: {exc}") from None
    if pretrained is not False:
        load_backbone = getattr(net, "load_backbone", None)
        if load_backbone is None:
            raise CifarzooError(
                f"pretrained weights are ImageNet backbones for tv_resnet50; {config.arch} has none (trained "
                f"{config.arch} weights load with cifarzoo.load)"
            )
        load_backbone(imagenet_state_dict(pretrained))
    return net


def load_checkpoint(directory: str | os.PathLike) -> tuple[nn.Module, ModelConfig]:
    """Rebuild the network a checkpoint describes and load its weights strictly. Returns it in eval mode."""
    directory = Path(directory)
    config = load_config(directory)
    weights = load_weights(directory)  # before building: an unreadable file fails without the cost of a network
    try:
        net = build(config)
    except ConfigError as exc:  # model_args the builder refuses: the config file is at fault
        raise CheckpointError(f"{directory / CONFIG_NAME}: {exc}") from None
    load_state_dict_strict(net, weights, str(directory / WEIGHTS_NAME))
    return net.eval(), config

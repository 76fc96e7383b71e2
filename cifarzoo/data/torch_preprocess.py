"""The torch side of preprocessing: normalisation and test-time-augmentation views of tensors on the device.

Training, on-device evaluation and distillation run on uint8 tensors that already live on the device, so they
cannot use the numpy path (``cifarzoo.data.preprocess``). Both take their constants from
:meth:`~cifarzoo.config.PreprocessConfig.affine` and their views from :mod:`cifarzoo.data.tta`, so they cannot
drift apart. The ONNX path never imports this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cifarzoo.config import PreprocessConfig
from cifarzoo.data.tta import TtaView


def normalize(images: torch.Tensor, cfg: PreprocessConfig, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 -> float, ``(x/255 - mean)/std`` with the config's own constants (see ``PreprocessConfig.affine``)."""
    scale, shift = cfg.affine()
    scale_t = torch.tensor(scale, dtype=torch.float32, device=images.device)[None, :, None, None]
    shift_t = torch.tensor(shift, dtype=torch.float32, device=images.device)[None, :, None, None]
    return (images.float() * scale_t + shift_t).to(dtype)


def torch_tta_view(x: torch.Tensor, view: TtaView) -> torch.Tensor:
    """One view of a normalised ``(N, C, H, W)`` batch: the same view as ``cifarzoo.data.tta.tta_view``."""
    x = x.flip(3) if view.mirror else x
    if view.pad:
        height, width = x.shape[2:]
        top, left = view.pad - view.dy, view.pad - view.dx
        x = F.pad(x, (view.pad,) * 4, mode="reflect")[:, :, top : top + height, left : left + width]
    return x

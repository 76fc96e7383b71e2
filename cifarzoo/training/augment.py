"""Batch augmentation on the training device: no Python per image in the hot loop.

The training split is held as one uint8 tensor on the device, reflect-padded once up front (airbench's
trick), so a random crop is a gather of shifted windows. Flips are a ``where``; cutout is a broadcast mask;
normalisation is the model config's per-channel affine map. Optional TrivialAugment / AutoAugment use
torchvision's implementations on groups of images that share one randomly drawn op, which keeps the number
of Python calls per batch small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cifarzoo.config import PreprocessConfig
from cifarzoo.data.torch_preprocess import normalize


def pad_reflect(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Reflect-pad a whole ``(N, C, H, W)`` uint8 tensor once, in chunks to bound the float copy."""
    if padding == 0:
        return images
    chunks = [
        F.pad(chunk.float(), (padding,) * 4, mode="reflect").to(torch.uint8) for chunk in images.split(4096)
    ]
    return torch.cat(chunks)


def random_crop(padded: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``size`` x ``size`` window of each padded image, ``(B, C, H+2p, W+2p)`` -> ``(B, C, size, size)``."""
    batch, _, height, width = padded.shape
    max_y, max_x = height - size, width - size
    if max_y == 0 and max_x == 0:
        return padded
    device = padded.device
    oy = torch.randint(0, max_y + 1, (batch,), generator=generator, device=device)
    ox = torch.randint(0, max_x + 1, (batch,), generator=generator, device=device)
    span = torch.arange(size, device=device)
    rows = (oy[:, None] + span)[:, :, None]  # (B, size, 1)
    cols = (ox[:, None] + span)[:, None, :]  # (B, 1, size)
    batch_index = torch.arange(batch, device=device)[:, None, None]
    # Advanced indexing around the channel slice gives (B, size, size, C).
    return padded[batch_index, :, rows, cols].permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square (clipped at the border) at a random centre of each image.

    Applied after normalisation, so zero is the dataset mean.
    """
    batch, _, height, width = images.shape
    device = images.device
    cy = torch.randint(0, height, (batch, 1, 1), generator=generator, device=device)
    cx = torch.randint(0, width, (batch, 1, 1), generator=generator, device=device)
    ys = torch.arange(height, device=device)[None, :, None]
    xs = torch.arange(width, device=device)[None, None, :]
    half = size // 2
    inside = (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
    return images.masked_fill(inside[:, None], 0.0)


class BatchAugment:
    """The training-time input pipeline, from uint8 indices to a normalised float batch.

    Args:
        images: the whole training split, ``(N, C, H, W)`` uint8, already on the device.
        cfg: the model's preprocessing (normalisation constants, input size).
        crop_padding, flip, cutout, auto_augment, augment_group: see ``DataSection`` in the recipe.
    """

    def __init__(
        self,
        images: torch.Tensor,
        cfg: PreprocessConfig,
        crop_padding: int = 0,
        flip: bool = False,
        cutout: int = 0,
        auto_augment: str = "none",
        augment_group: int = 16,
    ):
        self.size = images.shape[-1]
        self.padded = pad_reflect(images, crop_padding)
        self.cfg = cfg
        self.flip = flip
        self.cutout_size = cutout
        self.augment_group = augment_group
        self.auto_augment = _make_auto_augment(auto_augment)

    def __call__(self, indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = random_crop(self.padded[indices], self.size, generator)
        if self.flip:
            x = random_flip(x, generator)
        if self.auto_augment is not None:
            x = self._auto_augment(x, generator)
        x = normalize(x, self.cfg)
        if self.cutout_size:
            x = cutout(x, self.cutout_size, generator)
        return x

    def _auto_augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # torchvision draws its op from the global RNG; seed it from our generator so runs stay reproducible.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.cat([self.auto_augment(group) for group in x.split(self.augment_group)])


def _make_auto_augment(kind: str):
    if kind == "none":
        return None
    from torchvision.transforms import v2  # only when asked for: torchvision costs seconds to import

    factories = {
        "trivial": lambda: v2.TrivialAugmentWide(),
        "cifar10": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
    }
    return factories[kind]()

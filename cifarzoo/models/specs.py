"""Architecture tables: what each arch name means, as data. Torch-free.

"ResNet-26/50" means different networks in different repositories, so every arch states its block type,
stage depths and widths here, and the same description is written into every checkpoint's config and model
card. Depth counts weighted layers: the stem conv, every conv in the residual branches, and the classifier.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args

from cifarzoo.errors import UnknownModelError

# What a transfer model trains: everything, or only its new classifier.
FreezeMode = Literal["none", "all-but-head"]
FREEZE_MODES: tuple[str, ...] = get_args(FreezeMode)


@dataclass(frozen=True)
class CifarResNetSpec:
    """A CIFAR-style ResNet: a 3x3 stride-1 stem with no max-pool, then stages that halve the resolution.

    Attributes:
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1 -> 3x3 -> 1x1, expansion 4, stride on the
            3x3 conv as in ResNet v1.5).
        depths: blocks per stage. The first stage keeps the stem's resolution; each later one halves it.
        widths: each stage's inner width (the 3x3 conv's channels). A stage outputs ``width * expansion``.
        stem_width: channels of the stem conv.
        residual: ``False`` removes every skip connection (the "plain" twin); nothing else changes.
    """

    block: Literal["basic", "bottleneck"]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    stem_width: int = 32
    residual: bool = True
    family: Literal["cifar_resnet"] = "cifar_resnet"

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def num_features(self) -> int:
        """Channels entering the classifier."""
        return self.widths[-1] * self.expansion

    @property
    def depth(self) -> int:
        convs_per_block = 3 if self.block == "bottleneck" else 2
        return 1 + convs_per_block * sum(self.depths) + 1

    def describe(self) -> dict[str, Any]:
        """The architecture as JSON-ready data, for configs, ``cifarzoo info`` and model cards."""
        return {
            "family": self.family,
            "block": self.block,
            "depths": list(self.depths),
            "widths": list(self.widths),
            "out_channels": [w * self.expansion for w in self.widths],
            "stem": f"conv3x3({self.stem_width}, stride 1), no max-pool",
            "residual": self.residual,
            "depth": self.depth,
        }


@dataclass(frozen=True)
class TorchvisionResNetSpec:
    """torchvision's ImageNet ResNet-50 with a new classifier, for transfer learning.

    Input policy for 32x32 images: the network upsamples its input bilinearly to ``resize_to`` pixels (224,
    the ImageNet training size, by default) before the unchanged ImageNet stem. Preprocessing therefore stays
    at the dataset's own size, while the pretrained filters see objects at the scale they were trained on;
    the cost is ImageNet-sized compute (about 8.2 GFLOPs per image at 224).
    """

    variant: Literal["resnet50"] = "resnet50"
    resize_to: int = 224
    residual: bool = True
    family: Literal["torchvision_resnet"] = "torchvision_resnet"

    @property
    def num_features(self) -> int:
        return 2048

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "block": "bottleneck",
            "depths": [3, 4, 6, 3],
            "widths": [64, 128, 256, 512],
            "out_channels": [256, 512, 1024, 2048],
            "stem": "conv7x7(64, stride 2) + max-pool (ImageNet)",
            "residual": True,
            "depth": 50,
            "input_policy": f"bilinear upsample to {self.resize_to}x{self.resize_to} inside the network",
        }


ArchSpec = Union[CifarResNetSpec, TorchvisionResNetSpec]


def _plain(spec: CifarResNetSpec) -> CifarResNetSpec:
    return dataclasses.replace(spec, residual=False)


# Widths were chosen to keep every CIFAR net under 5M parameters at 10 classes, within 2.1% of the original
# studies' counts (ResNet-26: 4,196,906; ResNet-34: 4,348,082; ResNet-50: 4,815,794).
_RESNET26 = CifarResNetSpec(block="bottleneck", depths=(2, 2, 2, 2), widths=(32, 64, 128, 288))
_RESNET34 = CifarResNetSpec(block="basic", depths=(3, 4, 6, 3), widths=(32, 64, 128, 208))
_RESNET50 = CifarResNetSpec(block="bottleneck", depths=(3, 4, 6, 3), widths=(32, 64, 128, 208))

ARCHS: dict[str, ArchSpec] = {
    "resnet26": _RESNET26,
    "resnet34": _RESNET34,
    "resnet50": _RESNET50,
    "plain26": _plain(_RESNET26),
    "plain34": _plain(_RESNET34),
    "plain50": _plain(_RESNET50),
    "tv_resnet50": TorchvisionResNetSpec(),
}


def get_arch_spec(arch: str) -> ArchSpec:
    """The spec of a registered arch name; raises :class:`~cifarzoo.errors.UnknownModelError` otherwise."""
    try:
        return ARCHS[arch]
    except KeyError:
        raise UnknownModelError(f"unknown arch {arch!r}; known archs: {', '.join(ARCHS)}") from None

"""CIFAR-style ResNets and their plain twins.

Layout (``timm/models/resnet.py`` style): blocks, then the network class with ``forward_features`` /
``forward_head``. A block computes ``relu(branch(x) + shortcut(x))``; with ``residual=False`` the shortcut is
gone and the block is ``relu(branch(x))``: the same layers, no skip path. That flag is the only difference
between ``resnetNN`` and ``plainNN``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifarzoo.models.specs import CifarResNetSpec


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al., 2018): channel gates from globally pooled features."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean((2, 3), keepdim=True)
        gate = self.expand(F.relu(self.reduce(gate), inplace=True))
        return x * gate.sigmoid()


class ResidualBlock(nn.Module):
    """``relu(branch(x) + shortcut(x))``, or ``relu(branch(x))`` when ``shortcut`` is ``None`` (plain)."""

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module | None):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


def basic_branch(in_ch: int, width: int, stride: int) -> nn.Sequential:
    """Two 3x3 convs; the first carries the stride."""
    return nn.Sequential(*conv_bn(in_ch, width, 3, stride), nn.ReLU(inplace=True), *conv_bn(width, width, 3))


def bottleneck_branch(in_ch: int, width: int, stride: int) -> nn.Sequential:
    """1x1 reduce -> 3x3 (stride here, ResNet v1.5) -> 1x1 expand to ``4 * width``."""
    return nn.Sequential(
        *conv_bn(in_ch, width, 1),
        nn.ReLU(inplace=True),
        *conv_bn(width, width, 3, stride),
        nn.ReLU(inplace=True),
        *conv_bn(width, width * 4, 1),
    )


_BRANCHES = {"basic": basic_branch, "bottleneck": bottleneck_branch}


def make_block(spec: CifarResNetSpec, in_ch: int, width: int, stride: int, se: bool) -> ResidualBlock:
    branch = _BRANCHES[spec.block](in_ch, width, stride)
    out_ch = width * spec.expansion
    if se:
        branch.append(SqueezeExcite(out_ch))
    shortcut: nn.Module | None = None
    if spec.residual:
        needs_projection = stride != 1 or in_ch != out_ch
        shortcut = nn.Sequential(*conv_bn(in_ch, out_ch, 1, stride)) if needs_projection else nn.Identity()
    return ResidualBlock(branch, shortcut)


class CifarResNet(nn.Module):
    """A ResNet for small images: 3x3 stem (stride 1, no max-pool), stages, global average pool, classifier.

    The block type, depths and widths come from a :class:`~cifarzoo.models.specs.CifarResNetSpec`; see
    ``specs.ARCHS`` for the registered ones (ResNet-26: bottleneck [2,2,2,2]; ResNet-34: basic [3,4,6,3];
    ResNet-50: bottleneck [3,4,6,3]). Works at any input size; 32x32 gives 32/16/8/4 feature maps.

    Args:
        spec: the architecture.
        num_classes: classifier outputs.
        in_chans: input channels (3 for RGB, 1 for grayscale).
        drop_rate: dropout probability before the classifier.
        se: add a Squeeze-and-Excitation gate at the end of every residual branch.
        zero_init_last: start each residual branch's last BatchNorm at zero so every block begins as the
            identity (Goyal et al., 2017). Ignored for plain nets, where it would cut the signal.
    """

    def __init__(
        self,
        spec: CifarResNetSpec,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        se: bool = False,
        zero_init_last: bool = True,
    ):
        super().__init__()
        if len(spec.depths) != len(spec.widths):
            raise ValueError("spec.depths and spec.widths must have the same length")
        self.spec = spec
        self.num_classes = num_classes
        self.stem = nn.Sequential(*conv_bn(in_chans, spec.stem_width, 3), nn.ReLU(inplace=True))
        stages, in_ch = [], spec.stem_width
        for index, (depth, width) in enumerate(zip(spec.depths, spec.widths)):
            blocks = []
            for block_index in range(depth):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(make_block(spec, in_ch, width, stride, se))
                in_ch = width * spec.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_ch
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights(zero_init_last and spec.residual)

    def _init_weights(self, zero_init_last: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_last:
            for module in self.modules():
                if isinstance(module, ResidualBlock):
                    last_bn = [m for m in module.branch if isinstance(m, nn.BatchNorm2d)][-1]
                    nn.init.zeros_(last_bn.weight)

    def get_classifier(self) -> nn.Module:
        """The final layer: what a new task replaces and what ``freeze="all-but-head"`` leaves trainable."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map, ``(N, num_features, H/8, W/8)``."""
        return self.stages(self.stem(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = self.dropout(features.mean((2, 3)))
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

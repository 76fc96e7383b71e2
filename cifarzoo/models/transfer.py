"""torchvision's ImageNet ResNet-50 with a new classifier, for transfer learning on small images."""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from cifarzoo.models.specs import FREEZE_MODES, FreezeMode, TorchvisionResNetSpec


class TorchvisionResNetTransfer(nn.Module):
    """ImageNet ResNet-50 (torchvision layout) with a fresh ``num_classes`` head.

    Input policy: inputs of any size (32x32 CIFAR images) are upsampled bilinearly to ``spec.resize_to``
    inside :meth:`forward_features`, so the pretrained stem sees ImageNet-scale objects and exported models
    carry the policy with them. Normalise inputs with the ImageNet mean/std (the zoo entries' configs do).

    The ImageNet weights are not loaded here (models do no I/O): pass a state dict from
    :func:`cifarzoo.io.pretrained.imagenet_state_dict` to :meth:`load_backbone`.

    Args:
        freeze: ``"none"`` trains everything; ``"all-but-head"`` leaves only the classifier trainable.
            Frozen layers' BatchNorm statistics also stay fixed; see :meth:`train`.
    """

    def __init__(
        self,
        spec: TorchvisionResNetSpec,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        freeze: FreezeMode = "none",
    ):
        super().__init__()
        from torchvision.models import resnet50  # torchvision costs ~3 s to import; only this arch needs it

        if in_chans != 3:
            raise ValueError(f"{spec.variant} takes 3-channel (RGB) input, got in_chans={in_chans}")
        if freeze not in FREEZE_MODES:
            raise ValueError(f"freeze must be one of {list(FREEZE_MODES)}, got {freeze!r}")
        self.spec = spec
        self.num_classes = num_classes
        self.freeze = freeze
        self.backbone = resnet50(weights=None)
        self.num_features = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.backbone.requires_grad_(freeze == "none")

    def load_backbone(self, imagenet_state: Mapping[str, torch.Tensor]) -> None:
        """Load torchvision ImageNet weights into the backbone, strictly, dropping the ImageNet classifier."""
        state = {k: v for k, v in imagenet_state.items() if not k.startswith("fc.")}
        self.backbone.load_state_dict(state, strict=True)

    def train(self, mode: bool = True) -> TorchvisionResNetTransfer:
        super().train(mode)
        if self.freeze == "all-but-head":
            self.backbone.eval()  # a frozen backbone keeps its ImageNet BatchNorm statistics
        return self

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = self.spec.resize_to
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = self.dropout(features.mean((2, 3)))
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

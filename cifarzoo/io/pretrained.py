"""ImageNet backbone weights for the transfer arch, from a local file or torchvision's cache."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cifarzoo.errors import CifarzooError

# torchvision's file names for ResNet-50, newest first. A file under $TORCH_HOME/hub/checkpoints with one of
# these names is used without any download.
TORCHVISION_RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")


def torchvision_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_state_dict(source: str | os.PathLike | bool = True) -> dict[str, torch.Tensor]:
    """The torchvision ImageNet ResNet-50 state dict.

    ``source`` is a path to a ``.pth`` file, or ``True`` to use torchvision's cache (downloading into it when
    online). Files are read with ``torch.load(weights_only=True)``, which refuses pickled code.
    """
    if source is True:
        path = _from_torchvision_cache()
    elif source is False:
        raise ValueError("source must be a path or True")
    else:
        path = Path(source)
        if not path.is_file():
            raise CifarzooError(f"{path}: ImageNet weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad or unsafe file
        raise CifarzooError(f"{path}: cannot read ImageNet weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CifarzooError(f"{path}: not a state dict of tensors")
    return state


def _from_torchvision_cache() -> Path:
    cache = torchvision_cache_dir()
    for name in TORCHVISION_RESNET50_FILES:
        if (cache / name).is_file():
            return cache / name
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V2
    try:
        torch.hub.load_state_dict_from_url(weights.url, model_dir=str(cache), progress=False, check_hash=True)
    except Exception as exc:  # URLError, HTTPError, timeouts, hash mismatch
        raise CifarzooError(
            f"ImageNet weights for resnet50 are not in torchvision's cache ({cache}) and could not be downloaded "
            f"({type(exc).__name__}: {exc}); download {weights.url} elsewhere and pass its path"
        ) from None
    return cache / Path(weights.url).name

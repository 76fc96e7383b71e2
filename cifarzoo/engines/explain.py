"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

For a convolutional layer's activations ``A`` (``K`` channels) and a class score ``y_c`` (the logit), each
channel is weighted by its spatially averaged gradient, ``w_k = mean_ij dy_c/dA_kij``, and the map is
``ReLU(sum_k w_k A_k)``, upsampled bilinearly to the input size and scaled to [0, 1] per image. The default
layer is the network's last feature map (``forward_features``); ``layer`` names any module instead, for a
finer map from an earlier stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from cifarzoo.atomic import atomic_path
from cifarzoo.data.preprocess import ImageInput, load_uint8, normalize
from cifarzoo.data.testsets import ClassMatcher
from cifarzoo.errors import CifarzooError
from cifarzoo.io.checkpoint import load_checkpoint
from cifarzoo.io.resolve import resolve
from cifarzoo.runtime.torch_runner import torch_device


@dataclass
class CamResult:
    """Grad-CAM maps for a batch.

    Attributes:
        heatmaps: ``(N, H, W)`` float32 in [0, 1] at the input resolution (all zeros where no region
            raised the class score).
        class_indices: the explained class per image.
        probs: ``(N, num_classes)`` softmax probabilities of the forward pass.
    """

    heatmaps: np.ndarray
    class_indices: np.ndarray
    probs: np.ndarray


def grad_cam(
    net: nn.Module,
    x: torch.Tensor,
    class_index: int | Sequence[int] | None = None,
    layer: str | None = None,
    temperature: float = 1.0,
) -> CamResult:
    """Grad-CAM for a normalised batch ``x`` ``(N, C, H, W)``.

    ``class_index``: one class for every image, one per image, or ``None`` for each image's top class.
    ``layer``: a module name from ``net.named_modules()`` (``"stages.2"``); ``None`` uses the output of
    ``net.forward_features``. Runs in float32 with the network in eval mode (its mode is restored).
    ``probs`` are ``softmax(logits / temperature)``: pass the model's calibration (``config.temperature``).
    """
    modes = {module: module.training for module in net.modules()}
    net.eval()
    try:
        with torch.enable_grad():
            x = x.detach().float().requires_grad_(True)  # also for frozen or parameter-free networks
            if layer is None:
                features: Any = net  # every zoo network has forward_features / forward_head (timm's split)
                activations = features.forward_features(x)
                logits = features.forward_head(activations)
            else:
                activations, logits = _forward_with_hook(net, x, layer)
            num_classes = logits.shape[1]
            if class_index is None:
                targets = logits.argmax(1)
            else:
                targets = torch.as_tensor(class_index, device=logits.device).long().reshape(-1)
                if len(targets) not in (1, len(x)):
                    raise CifarzooError(f"{len(targets)} class indices for a batch of {len(x)} images")
                targets = targets.expand(len(x)).clone()
            bad = [int(t) for t in targets if not 0 <= int(t) < num_classes]
            if bad:
                raise CifarzooError(f"class index {bad[0]} is out of range for a {num_classes}-class model")
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, activations)
        weights = grads.mean((2, 3), keepdim=True)
        cam = F.relu((weights * activations).sum(1, keepdim=True)).detach()
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        heatmaps = (cam / peak).clamp(0, 1)
        probs = (logits.detach().float() / temperature).softmax(1)
    finally:
        for module, training in modes.items():  # exactly as they were, frozen submodules included
            module.training = training
    return CamResult(heatmaps.cpu().numpy().astype(np.float32), targets.cpu().numpy(), probs.cpu().numpy())


def _forward_with_hook(net: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    modules = dict(net.named_modules())
    if layer not in modules:
        convish = [name for name, m in modules.items() if name and name.count(".") <= 1]
        raise CifarzooError(f"no layer {layer!r} in {type(net).__name__}; try one of: {', '.join(convish[:12])}")
    captured: list[torch.Tensor] = []
    handle = modules[layer].register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        logits = net(x)
    finally:
        handle.remove()
    if not captured or captured[0].ndim != 4:
        raise CifarzooError(f"layer {layer!r} does not output a (N, C, H, W) feature map")
    return captured[0], logits


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, size: int = 224, alpha: float = 0.5) -> np.ndarray:
    """The image with the heatmap blended over it in matplotlib's ``jet`` colours, ``(size, size, 3)`` uint8.

    Upscaled with nearest-neighbour for the image (its real pixels stay visible) and bilinear for the map.
    """
    from matplotlib import colormaps
    gray = image_uint8[:, :, 0] if image_uint8.shape[-1] == 1 else None
    picture = Image.fromarray(gray if gray is not None else image_uint8[:, :, :3]).convert("RGB")
    base = np.asarray(picture.resize((size, size), Image.Resampling.NEAREST), dtype=np.float32)
    heat = Image.fromarray(heatmap.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR)
    colours = colormaps["jet"](np.clip(np.asarray(heat), 0, 1))[:, :, :3] * 255.0
    return np.clip((1 - alpha) * base + alpha * colours, 0, 255).astype(np.uint8)


def save_explanation(
    path: str | os.PathLike, image_uint8: np.ndarray, heatmap: np.ndarray, title: str, size: int = 224
) -> Path:
    """Write the input and its Grad-CAM overlay side by side, with ``title`` above, as a PNG (atomically)."""
    gray = image_uint8[:, :, 0] if image_uint8.shape[-1] == 1 else image_uint8[:, :, :3]
    original = Image.fromarray(gray).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    blended = Image.fromarray(overlay(image_uint8, heatmap, size))
    banner = 22
    canvas = Image.new("RGB", (2 * size + 8, size + banner), "white")
    canvas.paste(original, (0, banner))
    canvas.paste(blended, (size + 8, banner))
    ImageDraw.Draw(canvas).text((4, 5), title, fill="black")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            canvas.save(tmp, format="PNG")
    except OSError as exc:
        raise CifarzooError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


@dataclass
class Explanation:
    """What :func:`explain` wrote: the figure, the explained class and the top class, with probabilities."""

    out: Path
    image: str
    class_name: str
    prob: float
    top_class: str
    top_prob: float
    layer: str

    @property
    def title(self) -> str:
        title = f"{self.class_name} (p={self.prob:.3f})"
        if self.class_name != self.top_class:
            title += f"; top class {self.top_class} (p={self.top_prob:.3f})"
        return title

    def to_dict(self) -> dict[str, object]:
        return {
            "image": self.image,
            "out": str(self.out),
            "class": self.class_name,
            "prob": self.prob,
            "top_class": self.top_class,
            "top_prob": self.top_prob,
            "layer": self.layer,
        }


def explain(
    model: str | os.PathLike,
    image: ImageInput,
    *,
    out: str | os.PathLike,
    class_name: str | None = None,
    layer: str | None = None,
    device: str = "auto",
) -> Explanation:
    """Grad-CAM for one image through ``model`` (a zoo name, checkpoint/run folder or ``hf://`` id), written to
    ``out`` as the image beside its overlay.

    ``class_name`` (a name, matched like eval's folder names, or an index) picks the class to explain instead
    of the top one; ``layer`` a module for a finer map. Needs the torch weights (``model.safetensors``).
    """
    source = resolve(model, backend="torch")
    if source.kind == "file":
        raise CifarzooError(
            f"{model}: explain needs the torch weights (a folder with model.safetensors), not an export"
        )
    net, config = load_checkpoint(source.path)
    class_index = None
    if class_name is not None:
        class_index = ClassMatcher(config.classes)(class_name)
        if class_index is None:
            raise CifarzooError(
                f"--class {class_name!r} is not one of the model's classes: {', '.join(config.classes)}"
            )
    net = net.to(torch_device(device))
    pixels = load_uint8(image, config.preprocess)
    x = torch.from_numpy(normalize(pixels[None], config.preprocess)).to(next(net.parameters()).device)
    result = grad_cam(net, x, class_index, layer, temperature=config.temperature)
    probs = result.probs[0]
    explained, top = int(result.class_indices[0]), int(np.argmax(probs))
    explanation = Explanation(
        out=Path(out),
        image=os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<image>",
        class_name=config.classes[explained],
        prob=float(probs[explained]),
        top_class=config.classes[top],
        top_prob=float(probs[top]),
        layer=layer or "forward_features",
    )
    explanation.out = save_explanation(out, pixels, result.heatmaps[0], explanation.title)
    return explanation

"""The one torch inference runner: numpy batches, device tensors and uint8 splits through any ``nn.Module``.

Every torch-side inference goes through :class:`TorchRunner`: ``ZooModel.logits``, the TorchScript backend,
validation during training (uint8 tensors on the device, with test-time augmentation) and a distillation
teacher. It runs the module in eval mode, under ``inference_mode``, optionally under bf16 autocast, and in
channels_last (the faster layout for convolutions on CPU with oneDNN and on tensor-core GPUs). A module it
borrows gets its training flag and its parameters' memory format back afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

from cifarzoo.config import PreprocessConfig
from cifarzoo.data.torch_preprocess import normalize, torch_tta_view
from cifarzoo.data.tta import check_tta
from cifarzoo.errors import CifarzooError
from cifarzoo.runtime.onnx import parse_device


def torch_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` as they are, once
    checked to exist. Anything else (``banana``, ``cuda:7`` on a machine without it) is a one-line error."""
    kind, index = parse_device(device)
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CifarzooError(f"device {device!r} asked for CUDA, but torch sees no CUDA device; use --device cpu")
        if (index or 0) >= count:
            raise CifarzooError(f"device {device!r} does not exist: torch sees {count} CUDA device(s) (cuda:0 to "
                                f"cuda:{count - 1})")
    return device


def _four_d_tensors(module: nn.Module) -> dict[tuple[str, str], torch.Tensor]:
    """The module's 4-D parameters and buffers by name: the tensors a memory-format change rewrites."""
    found: dict[tuple[str, str], torch.Tensor] = {
        ("param", name): t for name, t in module.named_parameters() if t.dim() == 4
    }
    found.update({("buffer", name): t for name, t in module.named_buffers() if t.dim() == 4})
    return found


@contextlib.contextmanager
def inference_state(module: nn.Module, memory_format: torch.memory_format) -> Iterator[nn.Module]:
    """``module`` in eval mode and ``memory_format`` for the block; its mode and each 4-D tensor's layout are
    restored afterwards, so running a user's model never changes it."""
    was_training = module.training
    # By name, not by object: ``Module.to`` swaps a parameter's ``.data`` but replaces a buffer with a new tensor,
    # so a buffer captured before the conversion is no longer the module's buffer afterwards.
    was_contiguous = {key: t.is_contiguous() for key, t in _four_d_tensors(module).items()}
    module.eval()
    module.to(memory_format=memory_format)
    try:
        yield module
    finally:
        module.train(was_training)
        with torch.no_grad():
            for key, tensor in _four_d_tensors(module).items():
                if was_contiguous.get(key) and not tensor.is_contiguous():
                    tensor.data = tensor.data.contiguous()


class TorchRunner:
    """Runs ``module`` for inference and returns float32 logits.

    Args:
        module: any network mapping normalised ``(N, C, H, W)`` input to logits.
        device: where to run; ``None`` keeps the module where it is (a borrowed module is never moved).
        dtype: ``torch.bfloat16`` (or ``float16`` on CUDA) runs under autocast; ``None`` is exact fp32.
        channels_last: run in channels_last memory format.
        owns_module: the runner may keep the module in eval mode and channels_last for good (an exported
            TorchScript module nobody else holds); otherwise both are restored after every call.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        channels_last: bool = True,
        owns_module: bool = False,
    ):
        if device is not None:
            module = module.to(torch.device(device))
        self.module = module
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.owns_module = owns_module
        if owns_module:
            self.module.eval().to(memory_format=self.memory_format)

    @property
    def device(self) -> torch.device:
        first = next(iter(self.module.parameters()), None)
        return first.device if first is not None else torch.device("cpu")

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        state = contextlib.nullcontext() if self.owns_module else inference_state(self.module, self.memory_format)
        autocast = torch.autocast(self.device.type, self.dtype or torch.float32, enabled=self.dtype is not None)
        with state, torch.inference_mode(), autocast:
            yield

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        # A 1-channel input is already "channels_last"; converting it only costs a copy.
        if x.shape[1] > 1:
            x = x.contiguous(memory_format=self.memory_format)
        return self.module(x).float()

    def tensor_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (float32, on the module's device) for a normalised float tensor."""
        with self._session():
            return self._forward(x.to(self.device, non_blocking=True))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a normalised float32 numpy ``(N, C, H, W)`` batch: a :data:`~cifarzoo.data.tta.LogitsFn`."""
        return self.tensor_logits(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).cpu().numpy()

    def uint8_logits(
        self, images: torch.Tensor, cfg: PreprocessConfig, *, batch_size: int = 512, tta: str = "none"
    ) -> torch.Tensor:
        """Logits (float32, on the images' device) for a ``(N, C, H, W)`` uint8 tensor, normalised with ``cfg``'s
        constants and averaged over the views of ``tta`` (the views of :mod:`cifarzoo.data.tta`)."""
        views = check_tta(tta)
        outputs = []
        with self._session():
            for chunk in images.split(batch_size):
                x = normalize(chunk, cfg)
                views_logits = [self._forward(torch_tta_view(x, view)) * view.weight for view in views]
                outputs.append(torch.stack(views_logits).sum(0))
        return torch.cat(outputs) if outputs else torch.zeros(0, 0, device=images.device)


__all__ = ["TorchRunner", "inference_state", "torch_device"]

"""Test-time augmentation: each mode is a weighted set of views of the normalised batch. Torch-free.

The views are defined once here; :func:`tta_logits` applies them to numpy batches for every backend, and
``cifarzoo.data.torch_preprocess.torch_tta_view`` applies the same views to tensors on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Literal, Mapping, get_args

import numpy as np

from cifarzoo.errors import CifarzooError

TtaMode = Literal["none", "flip", "flip-translate"]
TTA_MODES: tuple[str, ...] = get_args(TtaMode)

# float32 (N, C, H, W) -> float32 (N, num_classes)
LogitsFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TtaView:
    """Mirror horizontally (or not), then translate by ``(dy, dx)`` pixels with reflect padding (the padding
    training's random crops use); ``weight`` is the view's share of the averaged logits."""

    mirror: bool
    dy: int
    dx: int
    weight: float

    @property
    def pad(self) -> int:
        return max(abs(self.dy), abs(self.dx))


# Every mode holds each view both mirrored and not, with equal weights, so its logits are exactly invariant to
# flipping the input. flip-translate weighs the untranslated pair and the +-2 px translations half and half,
# like airbench's mirror-translate TTA.
TTA_VIEWS: Mapping[str, tuple[TtaView, ...]] = MappingProxyType(
    {
        "none": (TtaView(False, 0, 0, 1.0),),
        "flip": (TtaView(False, 0, 0, 0.5), TtaView(True, 0, 0, 0.5)),
        "flip-translate": tuple(
            TtaView(mirror, dy, dx, weight)
            for (dy, dx, weight) in ((0, 0, 0.25), (2, 2, 0.125), (-2, -2, 0.125))
            for mirror in (False, True)
        ),
    }
)
assert tuple(TTA_VIEWS) == TTA_MODES


def check_tta(tta: str) -> tuple[TtaView, ...]:
    """The views of ``tta``, or a :class:`CifarzooError` naming the modes."""
    if tta not in TTA_VIEWS:
        raise CifarzooError(f"unknown TTA mode {tta!r}; choose one of {', '.join(TTA_MODES)}")
    return TTA_VIEWS[tta]


def tta_view(batch: np.ndarray, view: TtaView) -> np.ndarray:
    """One view of a normalised ``(N, C, H, W)`` float32 batch, for the whole batch at once."""
    x = batch[..., ::-1] if view.mirror else batch
    if view.pad:
        height, width = batch.shape[2:]
        padded = np.pad(x, ((0, 0), (0, 0), (view.pad, view.pad), (view.pad, view.pad)), mode="reflect")
        top, left = view.pad - view.dy, view.pad - view.dx
        x = padded[:, :, top : top + height, left : left + width]
    return np.ascontiguousarray(x, dtype=np.float32)


def tta_batch(batch: np.ndarray, tta: str) -> np.ndarray:
    """All views of ``tta`` stacked: ``(V, N, C, H, W)``. For inspection; :func:`tta_logits` runs them one by one."""
    return np.stack([tta_view(batch, view) for view in check_tta(tta)])


def tta_logits(logits_fn: LogitsFn, batch: np.ndarray, tta: str = "none") -> np.ndarray:
    """The weighted mean of ``logits_fn`` over the views of ``tta``: ``(N, num_classes)`` float32.

    Views go through the network one at a time, so memory is that of one batch whatever the mode.
    """
    total: np.ndarray | None = None
    for view in check_tta(tta):
        logits = np.asarray(logits_fn(tta_view(batch, view)), dtype=np.float32) * np.float32(view.weight)
        total = logits if total is None else total + logits
    if total is None:  # every mode has at least one view; this keeps the type checker honest
        raise CifarzooError(f"TTA mode {tta!r} has no views")
    return total

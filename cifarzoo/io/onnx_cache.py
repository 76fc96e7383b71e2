"""Where the fast path for a checkpoint without an ONNX file keeps its export: exported once, parity-checked, into a
cache keyed by the checkpoint's sha256, and reused on every later run (``cifarzoo.load(..., backend="auto")``).

Measured on this project's 2-core CPU (docs/benchmarks.md): onnxruntime fp32 runs a ResNet-26 two to five times
faster than torch eager, and unlike torch bf16 it is exact (fp32 parity within 1e-4 of the logit scale, identical
top-1), so ``backend="auto"`` takes it for any checkpoint folder. The one-time export costs seconds, not minutes.

The cache follows the XDG/Hugging Face conventions: ``$CIFARZOO_CACHE`` if set, else ``$XDG_CACHE_HOME/cifarzoo``,
else ``~/.cache/cifarzoo``; the files live in ``onnx/<key>/model.onnx`` with the key the sha256 of the weights
and the config together, so a retrained or edited checkpoint never reuses a stale export. Nothing here imports
torch: a cached file loads on onnxruntime alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cifarzoo.io.integrity import file_sha256
from cifarzoo.io.layout import CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME


def cache_root() -> Path:
    """Where cifarzoo caches derived files.

    ``$CIFARZOO_CACHE`` if set, else ``$XDG_CACHE_HOME/cifarzoo``, else ``~/.cache/cifarzoo``.
    """
    if os.environ.get("CIFARZOO_CACHE"):
        return Path(os.environ["CIFARZOO_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "cifarzoo"


def checkpoint_key(folder: str | os.PathLike) -> str:
    """The sha256 of a checkpoint folder's weights and config together: what its exports are derived from."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        digest.update(file_sha256(folder / name).encode())
    return digest.hexdigest()


def cached_onnx_path(folder: str | os.PathLike) -> Path:
    """Where the ONNX export of the checkpoint in ``folder`` is cached (it may not exist yet)."""
    return cache_root() / "onnx" / checkpoint_key(folder) / ONNX_NAME

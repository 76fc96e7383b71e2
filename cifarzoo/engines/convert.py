"""``cifarzoo convert``: a foreign ``.pth``/``.pt`` checkpoint (what typical CIFAR repositories save) -> a
cifarzoo checkpoint folder.

Files are read with ``torch.load(weights_only=True)``, which refuses any pickle that would run code. Accepted
shapes: a bare state_dict; a dict holding one under ``state_dict``, ``model`` or ``net`` (next to ``epoch``,
``acc`` and the like); keys prefixed by ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile).
The weights must fit the chosen arch exactly: loading is strict and a mismatch names the keys.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from cifarzoo.data.specs import get_dataset_spec
from cifarzoo.errors import CheckpointError, CifarzooError
from cifarzoo.io.checkpoint import build, load_state_dict_strict, save_checkpoint
from cifarzoo.models.specs import get_arch_spec
from cifarzoo.registry import model_config

# Where training scripts commonly nest the state dict, checked in this order.
STATE_DICT_KEYS: tuple[str, ...] = ("state_dict", "model", "net")
# Prefixes that wrappers add to every key: DataParallel/DDP, torch.compile, and cifarzoo's own ZooModel.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "net.")
# torch's weights_only refusal (2.6+ wording) is a paragraph of advice around the reason: the reason follows
# "WeightsUnpickler error:" (or, in some versions, the "trusted source." sentence) and ends before the advice
# to allowlist the class or read the docs.
_REASON_STARTS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^.*WeightsUnpickler error:\s*"),
    re.compile(r"^.*?trusted source\.\s*"),
)
_REASON_END = re.compile(r"\s*(Please use `torch\.serialization|Check the documentation).*$")


def read_foreign_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a foreign checkpoint file, unwrapped and with wrapper prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter; a real problem raises
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ... for unsafe or bad files
        raise CheckpointError(_load_failure(path, exc)) from None
    state = _unwrap(data, path)
    for prefix in WRAPPER_PREFIXES:
        # Strip a prefix only when every key has it, so a real submodule name is never cut.
        while state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def _load_failure(path: Path, exc: Exception) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text:
        # torch's refusal is a paragraph that also suggests weights_only=False or allowlisting the class; keep
        # only the unpickler's reason (what it found).
        start = next((p for p in _REASON_STARTS if p.search(text)), None)
        detail = _REASON_END.sub("", start.sub("", text, count=1) if start else text)
        return (
            f"{path}: refused: torch.load(weights_only=True) found pickled objects besides tensors, which could run "
            f"code ({detail.strip() or 'no details'}); "
            "re-save only the weights with torch.save(model.state_dict(), PATH)"
        )
    return f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {text or 'no details'})"


def _unwrap(data: Any, path: Path) -> dict[str, Any]:
    while isinstance(data, dict) and not _is_state_dict(data):
        nested = next((data[k] for k in STATE_DICT_KEYS if isinstance(data.get(k), dict)), None)
        if nested is None and any(isinstance(v, torch.Tensor) for v in data.values()):
            break  # tensors next to other values: reported below by name
        if nested is None:
            raise CheckpointError(
                f"{path}: no state dict inside: expected tensors, or a dict with one of "
                f"{', '.join(STATE_DICT_KEYS)}; found keys {', '.join(map(str, list(data)[:8]))}"
            )
        data = nested
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path}: not a state dict (found {type(data).__name__})")
    bad = [str(k) for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: not a state dict of tensors (non-tensor values under: {', '.join(bad[:5])})")
    return {str(k): v for k, v in data.items()}


def _is_state_dict(data: dict[Any, Any]) -> bool:
    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def convert_checkpoint(path: str | os.PathLike, *, arch: str, dataset: str, out: str | os.PathLike) -> Path:
    """Load the weights in ``path`` strictly into ``arch`` for ``dataset`` (``c10``, ``c100``, ``fm`` or their
    full names) and write a checkpoint folder (``model.safetensors`` + ``config.json``) to ``out``.

    The config is the zoo entry's (classes, preprocessing) without its name, metrics or recipe: those belong
    to the zoo's own weights, not to these.
    """
    get_arch_spec(arch)  # an unknown arch fails here, naming the known ones
    tag = get_dataset_spec(dataset).tag
    state = read_foreign_state_dict(path)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CifarzooError(f"{out}: already exists and is not empty; convert writes a new checkpoint folder")
    config = model_config(f"{arch}-{tag}").replace(name=None, metrics={}, recipe=None)
    net = build(config)
    load_state_dict_strict(net, state, str(path))
    return save_checkpoint(net.state_dict(), config, out)

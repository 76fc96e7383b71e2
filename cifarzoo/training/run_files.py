"""What a run directory holds, besides the checkpoint: the resumable state, metrics.jsonl and curves.png.

Every write here goes through :func:`writing`, which turns an OS error (a full disk, a read-only folder) into a
one-line :class:`RunWriteError` naming the file, and every read of a damaged file is a one-line error too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, Iterator, cast

import torch
from safetensors import SafetensorError

from cifarzoo.atomic import atomic_path, leftover_temp_files
from cifarzoo.engines.compare import load_runs, plot_comparison
from cifarzoo.errors import CifarzooError
from cifarzoo.io.layout import (
    CONFIG_NAME,
    CURVES_NAME,
    LOCK_NAME,
    METRICS_NAME,
    ONNX_FILES,
    RECIPE_NAME,
    STATE_NAME,
    TORCHSCRIPT_NAME,
    WEIGHTS_NAME,
)
from cifarzoo.io.run_metrics import read_metrics

__all__ = ["STATE_NAME", "RECIPE_NAME", "RunWriteError", "writing", "save_state", "load_state", "append_metrics",
           "read_metrics", "truncate_metrics", "remove_run_files", "remove_leftover_temp_files", "plot_curves"]

log = logging.getLogger(__name__)

# The files a training run writes atomically, whose temp files a killed run may leave behind.
_ATOMIC_RUN_FILES = (STATE_NAME, METRICS_NAME, RECIPE_NAME, CURVES_NAME, CONFIG_NAME, WEIGHTS_NAME, LOCK_NAME)
# The keys every state.pt has (Trainer.state_dict).
_STATE_KEYS = ("epoch", "model", "optimizer", "schedule", "best", "rng")


class RunWriteError(CifarzooError):
    """A run file that cannot be written: no space left, a read-only or unwritable folder."""


def _os_errno(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    found = re.search(r"os error (\d+)", str(exc))  # safetensors words its I/O errors: "... (os error 28)"
    return int(found.group(1)) if found else None


def describe_write_error(path: Path, exc: BaseException) -> str:
    """One line for a failed write of ``path``."""
    code = _os_errno(exc)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device writing {path}"
    reason = os.strerror(code) if code is not None else " ".join(str(exc).split())
    return f"cannot write {path}: {reason}"


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Any OS error inside the block (safetensors' I/O errors too) becomes a :class:`RunWriteError` naming
    ``path``."""
    try:
        yield
    except (OSError, SafetensorError) as exc:
        raise RunWriteError(describe_write_error(path, exc)) from None


class _ErrorKeepingWriter:
    """Hands torch.save's writes to ``file`` and remembers the first OS error: torch reports a failed write as
    an unrelated ``RuntimeError`` ("inline_container.cc: unexpected pos"), which would hide a full disk."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.file.flush()


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    """The resumable training state, written atomically (temp file, fsync, then rename)."""
    path = run_dir / STATE_NAME
    with writing(path), atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer = _ErrorKeepingWriter(f)
        try:
            torch.save(state, cast(BinaryIO, writer))
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
        f.flush()
        os.fsync(f.fileno())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_state(run_dir: Path) -> dict[str, Any]:
    """``state.pt``; a missing, damaged or foreign file is a one-line error naming it."""
    path = run_dir / STATE_NAME
    try:
        # weights_only: a state file is plain tensors and numbers; it never needs to run code to load.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CifarzooError(f"{path}: file not found") from None
    except Exception as exc:  # a damaged file fails in many ways (RuntimeError, UnpicklingError, EOFError, ...)
        raise CifarzooError(f"{path}: not a readable training state ({_first_line(exc)})") from None
    missing = [key for key in _STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CifarzooError(f"{path}: not a training state (no {', '.join(missing)})")
    epoch = state["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise CifarzooError(f"{path}: not a training state (epoch is {epoch!r})")
    return state


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    path = run_dir / METRICS_NAME
    with writing(path), open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def remove_run_files(run_dir: Path) -> None:
    """Delete the files a run writes (for ``train --overwrite``); anything else in the folder stays."""
    exports = (*ONNX_FILES.values(), TORCHSCRIPT_NAME)  # stale exports would outlive the new weights
    for name in (STATE_NAME, METRICS_NAME, RECIPE_NAME, CURVES_NAME, CONFIG_NAME, WEIGHTS_NAME, *exports):
        with writing(run_dir / name):
            (run_dir / name).unlink(missing_ok=True)


def remove_leftover_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temp files of run files that a killed run (``kill -9`` mid-write) left behind. Call it holding
    the run's lock: a live writer's temp file looks the same."""
    removed = []
    for name in _ATOMIC_RUN_FILES:
        for tmp in leftover_temp_files(run_dir / name):
            with writing(tmp):
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.warning("note: %s: removed %d temp file(s) a killed run left behind: %s", run_dir, len(removed),
                    ", ".join(p.name for p in removed))
    return removed


def truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Drop metric rows of epochs after the resumed state (written before a crash, then redone)."""
    path = run_dir / METRICS_NAME
    try:
        rows = read_metrics(run_dir)
    except RecursionError:
        raise CifarzooError(f"{path}: not a metrics file (a row is nested too deeply)") from None
    for number, row in enumerate(rows, start=1):
        epoch = row.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise CifarzooError(f"{path}: row {number} has no integer epoch")
    kept = [r for r in rows if r["epoch"] <= epochs_done]
    with writing(path), atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def plot_curves(run_dir: Path, title: str) -> Path:
    """``curves.png``: train vs val loss and accuracy per epoch (and gradient norms when logged), drawn by
    the same code as ``cifarzoo compare``."""
    with writing(run_dir / CURVES_NAME):
        return plot_comparison(load_runs([run_dir]), run_dir / CURVES_NAME, title)

"""Atomic file writes: a temp file in the target's folder, then a rename, so a killed process never leaves a
half-written file where a complete one is expected.

The temp file is named ``.NAME.XXXXXXXX.tmp`` beside ``NAME``: hidden, and recognisable by
:func:`leftover_temp_files`, which finds the ones a process killed mid-write (``kill -9``, power loss) left behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import Iterator

_TEMP_SUFFIX = ".tmp"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``, on error removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=_TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def leftover_temp_files(path: str | os.PathLike) -> list[Path]:
    """The temp files :func:`atomic_path` left beside ``path`` when a process died mid-write.

    A live writer's temp file looks the same, so remove them only while nothing else can be writing ``path``
    (a training run does it holding its folder's lock).
    """
    target = Path(path)
    pattern = glob.escape(_temp_prefix(target)) + "*" + _TEMP_SUFFIX
    return sorted(p for p in target.parent.glob(pattern) if p.is_file() and not p.is_symlink())

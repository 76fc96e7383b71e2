"""File hashes for pinned weights. Torch-free."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cifarzoo.errors import CheckpointError


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`CheckpointError` naming both hashes when ``path`` is missing or not the pinned file."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: file not found")
    actual = file_sha256(path)
    if actual != expected.lower():
        raise CheckpointError(f"{path}: sha256 mismatch: expected {expected}, got {actual}")

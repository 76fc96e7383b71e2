"""Turn command-line inputs (files, directories, globs) into a list of image paths. Torch-free."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from cifarzoo.errors import display_path

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".jfif"}
)


@dataclass
class CollectedInputs:
    """Image paths in a stable order, and the inputs that named nothing (``(input, reason)`` pairs)."""

    paths: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_image_files(directory: str) -> list[str]:
    """Image files under ``directory``, recursively, sorted; symlinked folders are not followed (no loops)."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
    return found


def collect_images(inputs: list[str]) -> CollectedInputs:
    """Expand files, directories (recursive, image extensions only) and globs, keeping the given order.

    A file named explicitly is kept whatever its extension, so a mislabelled file gets a decode error that
    names it rather than silently disappearing.
    """
    out = CollectedInputs()
    seen: set[str] = set()

    def add(path: str) -> None:
        if path not in seen:
            seen.add(path)
            out.paths.append(path)

    for item in inputs:
        if os.path.isdir(item):
            for path in iter_image_files(item):
                add(path)
        elif os.path.lexists(item):
            add(item)
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            files = [m for m in matches if os.path.isfile(m) and is_image_file(m)]
            if not files:
                out.missing.append((display_path(item), "no image files match this pattern"))
            for path in files:
                add(path)
        else:
            out.missing.append((display_path(item), "file not found"))
    return out

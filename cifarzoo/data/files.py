"""Find image files: command-line inputs (files, directories, globs) and folders of class subfolders. Torch-free.

:func:`scan_class_folders` is the one reader of a class-folder tree: training (``data.dataset = "folder"``) and
``cifarzoo eval --custom-dir`` both use it, so they agree on which subfolders are classes, which files are
images, and their order.
"""

from __future__ import annotations

import errno
import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cifarzoo.errors import CifarzooError, display_path

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".jfif"}
)


@dataclass
class CollectedInputs:
    """Image paths in a stable order, and the inputs that named nothing (``(input, reason)`` pairs)."""

    paths: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)


# Folders that are never classes: tool and OS droppings (macOS zip metadata, Synology thumbnails, Windows bins).
IGNORED_FOLDERS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information"})


def is_image_file(name: str) -> bool:
    """True when ``name`` has an image extension (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_image_files(directory: str) -> list[str]:
    """Image files under ``directory``, recursively, sorted; symlinked folders are not followed (no loops)."""
    found: list[str] = []
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


# ----------------------------------------------------------------------------------------------------------
# A folder of class subfolders (``root/cat/1.png``), for training and for evaluation alike


@dataclass
class ClassFolders:
    """A folder of class subfolders as it was scanned.

    Attributes:
        classes: the class folder names, in :func:`natural_key` order.
        files: class name -> its image files (searched recursively), in natural order.
        loose: image files lying directly in the root, beside the class folders.
        ignored: ``(path, reason)`` for subfolders that are no class on purpose: hidden, tool droppings such as
            ``__MACOSX``, or holding no image file.
        skipped: ``(path, reason)`` for folders that could not be listed.
    """

    classes: tuple[str, ...] = ()
    files: dict[str, list[str]] = field(default_factory=dict)
    loose: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def num_files(self) -> int:
        """Image files in all class folders together."""
        return sum(len(found) for found in self.files.values())


def natural_key(text: str) -> tuple[list[Any], str]:
    """Sort key for names: case-insensitive, digit runs compared as numbers (``img2`` before ``img10``).

    ``re.split`` with a group alternates text and digit runs, so ints and strs never meet at one position;
    ``isdecimal`` (not ``isdigit``) matches exactly what ``\\d`` captured, so ``int`` never sees a superscript.
    The name itself breaks ties (``Cat``/``cat``, ``01``/``1``), so the order never depends on the file system's.
    """
    return [int(part) if part.isdecimal() else part.casefold() for part in re.split(r"(\d+)", text)], text


def is_listed_image(name: str) -> bool:
    """An image file that belongs to a data set: an image extension, and not hidden.

    Hidden files are no part of a data set; macOS leaves ``._name.png`` metadata twins that are not images.
    """
    return not name.startswith(".") and is_image_file(name)


def _is_data_folder(name: str) -> bool:
    return not name.startswith(".") and name not in IGNORED_FOLDERS


def os_reason(exc: OSError) -> str:
    """A short reason for an OS error (``permission denied``, ``symlink loop``), for skip lists."""
    reasons = {errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.ELOOP: "symlink loop"}
    return reasons.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def _walk_images(top: str, skipped: list[tuple[str, str]]) -> list[str]:
    """Listed images under ``top``, recursively, in natural order; symlinked folders are not followed (no loops).

    Hidden and ignored folders inside are left out too. Folders that cannot be listed are recorded in
    ``skipped`` instead of silently contributing nothing.
    """

    def on_error(exc: OSError) -> None:
        skipped.append((display_path(exc.filename or top), f"cannot list folder ({os_reason(exc)})"))

    found: list[str] = []
    for root, dirs, files in os.walk(top, onerror=on_error):
        dirs[:] = sorted((d for d in dirs if _is_data_folder(d)), key=natural_key)
        found.extend(os.path.join(root, f) for f in sorted(files, key=natural_key) if is_listed_image(f))
    return found


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a symlinked class folder counts
    except OSError:  # a symlink loop, or no permission to stat
        return False


def scan_class_folders(root: str | os.PathLike) -> ClassFolders:
    """The classes and image files of a folder of class subfolders (``root/cat/1.png``).

    A class is a subfolder of ``root`` that is not hidden, not a tool dropping (:data:`IGNORED_FOLDERS`) and
    holds at least one image file (searched recursively); other subfolders are listed in ``ignored``. Image
    files are those with an image extension that are not hidden. Classes and files are in :func:`natural_key`
    order. Raises :class:`CifarzooError` when ``root`` itself cannot be listed.
    """
    root = os.fspath(root)
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: natural_key(e.name))
    except OSError as exc:
        raise CifarzooError(f"{display_path(root)}: cannot list folder ({os_reason(exc)})") from None
    out = ClassFolders()
    files: dict[str, list[str]] = {}
    for entry in entries:
        if not _is_dir(entry):
            if is_listed_image(entry.name):
                out.loose.append(entry.path)
            continue
        shown = display_path(entry.path)
        if entry.name.startswith("."):
            out.ignored.append((shown, "hidden folder"))
        elif entry.name in IGNORED_FOLDERS:
            out.ignored.append((shown, "system folder, never a class"))
        else:
            unreadable = len(out.skipped)
            found = _walk_images(entry.path, out.skipped)
            if found:
                files[entry.name] = found
            elif len(out.skipped) == unreadable:  # an unlistable folder is reported in skipped already
                out.ignored.append((shown, "no image files"))
    out.files = files
    out.classes = tuple(files)
    return out

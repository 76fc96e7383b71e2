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
import stat
from dataclasses import dataclass, field
from typing import Any

from cifarzoo.errors import CifarzooError, display_path

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".jfif"}
)


@dataclass
class CollectedInputs:
    """Image paths in a stable order, the inputs that named nothing (``(input, reason)`` pairs), and what was
    found in folders and globs but is not read (``(path, reason)``: FIFOs, devices, unlistable folders)."""

    paths: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


# Folders that are never classes: tool and OS droppings (macOS zip metadata, Synology thumbnails, Windows bins).
IGNORED_FOLDERS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information"})


def is_image_file(name: str) -> bool:
    """True when ``name`` has an image extension (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_image_files(directory: str, *, skipped: list[tuple[str, str]] | None = None) -> list[str]:
    """Image files under ``directory``, recursively, in :func:`natural_key` order, by the rules of
    :func:`scan_class_folders`: no hidden files or folders, no ``__MACOSX`` and the like, symlinked folders not
    followed (no loops). What is found but not read (FIFOs and devices named like images, folders that cannot be
    listed) is appended to ``skipped`` as ``(path, reason)`` when it is given."""
    return _walk_images(directory, [] if skipped is None else skipped)


def collect_images(inputs: list[str]) -> CollectedInputs:
    """Expand files, directories (recursive, image extensions only) and globs, keeping the given order.

    A file named explicitly is kept whatever its extension, so a mislabelled file gets a decode error that
    names it rather than silently disappearing; a FIFO or device named explicitly is refused unread by the
    decoder (:func:`~cifarzoo.data.preprocess.read_image`) with its reason.
    """
    out = CollectedInputs()
    seen: set[str] = set()

    def add(path: str) -> None:
        if path not in seen:
            seen.add(path)
            out.paths.append(path)

    for item in inputs:
        if os.path.isdir(item):
            for path in iter_image_files(item, skipped=out.skipped):
                add(path)
        elif os.path.lexists(item):
            add(item)
        elif glob.has_magic(item):
            matches = [m for m in sorted(glob.glob(item, recursive=True)) if is_image_file(m)]
            kinds = {m: _path_kind(m) for m in matches}
            files = [m for m in matches if kinds[m] is None]
            not_read = [(display_path(m), kind) for m, kind in kinds.items() if kind is not None and kind != _DIR]
            out.skipped.extend(not_read)
            if not files and not not_read:
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
        skipped: ``(path, reason)`` for folders that could not be listed, and for files named like images that
            are not regular files (FIFOs, devices, sockets), which are never opened.
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
    reasons = {errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.ELOOP: "symlink loop",
               errno.EISDIR: "is a directory", errno.ENOENT: "file not found"}
    return reasons.get(exc.errno or 0, exc.strerror or type(exc).__name__)


_DIR = "is a directory"
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def not_regular_reason(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read as an image (``"not a regular file (a FIFO)"``), or ``None``
    for a regular file.

    Opening a FIFO blocks until someone writes to it, and a device can stream forever: the scanners and the
    decoder only ever open regular files.
    """
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return _DIR
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


def _path_kind(path: str) -> str | None:
    """``None`` for a regular file (or one whose type cannot be told: the decoder names the reason), else why
    it is not read: :data:`_DIR`, or ``not a regular file (a FIFO)`` and the like."""
    try:
        return not_regular_reason(os.stat(path).st_mode)
    except (OSError, ValueError):
        return None


def _entry_kind(entry: os.DirEntry) -> str | None:
    """:func:`_path_kind` for a directory entry, from the type the listing already gave where it can."""
    try:
        if entry.is_dir():  # follows symlinks: a symlinked class folder counts
            return _DIR
        if entry.is_file():
            return None
        return not_regular_reason(entry.stat().st_mode)
    except OSError:  # a broken link, a symlink loop, no permission to stat: the decoder names the reason
        return None


def _walk_images(top: str, skipped: list[tuple[str, str]]) -> list[str]:
    """Listed images under ``top``, recursively, in natural order; symlinked folders are not followed (no loops).

    Hidden and ignored folders inside are left out too. Folders that cannot be listed, and files named like
    images that are not regular files (a FIFO would block the reader forever), are recorded in ``skipped``
    instead of silently contributing nothing. Walks with a stack, so any depth of nesting is fine.
    """
    found: list[str] = []
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: natural_key(e.name))
        except OSError as exc:
            skipped.append((display_path(exc.filename or folder), f"cannot list folder ({os_reason(exc)})"))
            continue
        subfolders = []
        for entry in entries:
            kind = _entry_kind(entry)
            if kind == _DIR:
                if _is_data_folder(entry.name) and not entry.is_symlink():
                    subfolders.append(entry.path)
            elif is_listed_image(entry.name):
                if kind is None:
                    found.append(entry.path)
                else:
                    skipped.append((display_path(entry.path), kind))
        stack.extend(reversed(subfolders))  # depth first, in order: a folder's files, then each subfolder's
    return found


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
        kind = _entry_kind(entry)
        if kind != _DIR:
            if is_listed_image(entry.name):
                if kind is None:
                    out.loose.append(entry.path)
                else:
                    out.skipped.append((display_path(entry.path), kind))
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

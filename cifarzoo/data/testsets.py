"""Test sets of your own: a folder of class subfolders, a ``path,label`` CSV, or a CIFAR-10.1-style array.

Each reader returns a :class:`TestSet`: file paths (decoded later, a batch at a time, so memory stays bounded
for any number of files) or an in-memory/memory-mapped uint8 array, with labels as indices into the *model's*
classes, or no labels at all. Folder names and CSV labels are matched to the model's classes by
:class:`ClassMatcher` (case, separators, plurals and the synonyms in :data:`CLASS_SYNONYMS`). Torch-free.
"""

from __future__ import annotations

import csv
import os
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from cifarzoo.config import PreprocessConfig
from cifarzoo.data.files import scan_class_folders
from cifarzoo.data.preprocess import MAX_IMAGE_PIXELS
from cifarzoo.errors import CifarzooError, display_path

# Canonical class name -> other names people give its folder or label. Matching ignores case and every
# character that is not a letter or digit, so "Ankle_Boot", "ankle-boot" and "ankle boot" need no entries,
# and simple plurals ("cats", "buses", "butterflies") are tried automatically. A synonym applies only when the
# model has the canonical class, and an exact class name always wins over a synonym.
CLASS_SYNONYMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # CIFAR-10
        "airplane": ("plane", "aeroplane", "aircraft", "airliner", "jet"),
        "automobile": ("car", "auto", "sedan", "motorcar"),
        "bird": ("birdie",),
        "cat": ("kitten", "kitty"),
        "deer": ("fawn",),
        "dog": ("puppy", "pup"),
        "frog": ("toad",),
        "horse": ("pony",),
        "ship": ("boat", "vessel"),
        "truck": ("lorry",),
        # Fashion-MNIST
        "T-shirt/top": ("tshirt", "t-shirt", "top", "tee", "teeshirt", "tshirt_top"),
        "Trouser": ("trousers", "pants", "jeans"),
        "Pullover": ("sweater", "jumper"),
        "Dress": ("dresses",),
        "Coat": ("jacket",),
        "Sandal": ("sandals",),
        "Shirt": ("shirts",),
        "Sneaker": ("sneakers", "trainer", "trainers"),
        "Bag": ("handbag", "purse"),
        "Ankle boot": ("boot", "boots", "ankle_boot", "ankleboot"),
        # CIFAR-100 (irregular plurals and common alternatives)
        "couch": ("sofa",),
        "motorcycle": ("motorbike",),
        "mouse": ("mice",),
        "man": ("men",),
        "woman": ("women",),
        "television": ("tv",),
        "telephone": ("phone",),
        "streetcar": ("tram",),
        "pickup_truck": ("pickup",),
        "aquarium_fish": ("goldfish",),
    }
)

# Column names a labels CSV header may use, in order of preference.
PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "img", "id")
LABEL_COLUMNS = ("label", "class", "category", "target", "y")

# Array files: keys an .npz may store its images / labels under (first match wins; case-insensitive).
ARRAY_IMAGE_KEYS = ("images", "data", "x", "x_test", "imgs", "inputs", "features")
ARRAY_LABEL_KEYS = ("labels", "label", "y", "y_test", "targets", "target")
# For ``NAME.npy``: where its labels live, as (stem suffix, replacement). CIFAR-10.1 ships
# ``cifar10.1_v6_data.npy`` with ``cifar10.1_v6_labels.npy``.
LABEL_SIBLINGS = (("_data", "_labels"), ("_images", "_labels"), ("_x", "_y"), ("", "_labels"))


def name_key(name: str) -> str:
    """The comparable form of a class name: case-folded, letters and digits only."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _singulars(key: str) -> tuple[str, ...]:
    """English plural stripping, tried only when a name matches nothing as written."""
    forms = []
    if key.endswith("ies") and len(key) > 4:
        forms.append(key[:-3] + "y")
    if key.endswith("es") and len(key) > 3:
        forms.append(key[:-2])
    if key.endswith("s") and len(key) > 2:
        forms.append(key[:-1])
    return tuple(forms)


class ClassMatcher:
    """Maps folder names and CSV labels to indices into ``classes``.

    Tried in order: the class name (ignoring case and separators), a synonym from ``synonyms``, the same
    after stripping an English plural, and finally a decimal class index (``"3"``). Returns ``None`` for a
    name that matches nothing, or a synonym two of the model's classes claim.
    """

    def __init__(self, classes: Sequence[str], synonyms: Mapping[str, Sequence[str]] = CLASS_SYNONYMS):
        self.classes = tuple(classes)
        by_key = {name_key(c): c for c in self.classes}
        table: dict[str, int | None] = {}
        for canonical, names in synonyms.items():
            target = by_key.get(name_key(canonical))
            if target is None:
                continue
            for synonym in names:
                key = name_key(synonym)
                index = self.classes.index(target)
                # Two classes claiming one synonym: refuse to guess.
                table[key] = index if table.get(key, index) == index else None
        table.update({name_key(c): i for i, c in enumerate(self.classes)})  # exact names win over synonyms
        self._table = table

    def __call__(self, name: str) -> int | None:
        key = name_key(name)
        for candidate in (key, *_singulars(key)):
            if candidate in self._table:
                return self._table[candidate]
        text = name.strip()
        # Length first: int() refuses strings of over 4,300 digits, and no model has a billion classes.
        if text.isdecimal() and len(text) <= 9 and int(text) < len(self.classes):
            return int(text)
        return None


@dataclass
class TestSet:
    """What to evaluate: image files or an image array, each with a label or all without.

    Attributes:
        name: where it came from, for messages and reports.
        classes: the model's classes; ``labels`` index into them.
        ids: one printable id per item (a relative path, a CSV's path cell, an array index).
        labels: ``(N,)`` int64, or ``None`` for an unlabeled set (predictions only).
        paths: files to decode (exactly one of ``paths`` and ``images`` is set).
        images: ``(N, H, W[, C])`` uint8, possibly memory-mapped; converted a batch at a time.
        ignored: ``{path, reason}`` for inputs left out on purpose (``ignore_unknown``, loose files).
        skipped: ``{path, reason}`` for what could not be read while listing (unreadable folders).
    """

    __test__ = False  # not a pytest test class, whatever its name

    name: str
    classes: tuple[str, ...]
    ids: list[str]
    labels: np.ndarray | None = None
    paths: list[str] | None = None
    images: np.ndarray | None = None
    ignored: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.paths is None) == (self.images is None):
            raise ValueError("a TestSet holds either paths or images")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (len(self.ids),):
                raise ValueError(f"{len(self.ids)} items but labels have shape {self.labels.shape}")
        if len(self.ids) != len(self.paths if self.paths is not None else self.images):  # type: ignore[arg-type]
            raise ValueError("one id per item is needed")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    def array_fits(self, cfg: PreprocessConfig) -> bool:
        """True when ``images`` are already the model's ``(N, size, size, channels)``: no conversion needed."""
        images = self.images
        if images is None:
            return False
        shape = images.shape if images.ndim == 4 else (*images.shape, 1)
        return shape[1:] == (cfg.input_size, cfg.input_size, cfg.in_chans)

    def array_batch(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as ``(n, H, W, C)`` uint8, read from the (possibly memory-mapped) array."""
        assert self.images is not None
        batch = np.asarray(self.images[start:stop])
        return batch[..., None] if batch.ndim == 3 else batch

    def iter_arrays(self) -> Iterator[np.ndarray]:
        """The array's images one at a time, for conversion (resize, colour mode) by the decode pool."""
        assert self.images is not None
        for i in range(len(self.images)):
            yield np.asarray(self.images[i])

    @classmethod
    def from_arrays(
        cls, images: np.ndarray, labels: np.ndarray | None, classes: Sequence[str], name: str
    ) -> TestSet:
        """An in-memory set (a built-in dataset split, or arrays of your own); ids are the indices."""
        _check_image_array(images, name)
        return cls(name, tuple(classes), [str(i) for i in range(len(images))], labels=labels, images=images)


# ----------------------------------------------------------------------------------------------------------
# A folder: class subfolders (labeled) or image files directly inside (unlabeled)


def _file_ids(paths: Sequence[str], root: str) -> list[str]:
    """Ids for files: the path relative to ``root`` with ``/`` separators and without its extension (``1.png``
    -> ``1``, the competition-submission form), or with the extension when dropping it would make two equal."""
    relative = [display_path(os.path.relpath(p, root)).replace(os.sep, "/") for p in paths]
    stems = [os.path.splitext(r)[0] for r in relative]
    return stems if len(set(stems)) == len(stems) else relative


def read_custom_dir(root: str | os.PathLike, classes: Sequence[str], ignore_unknown: bool = False) -> TestSet:
    """A folder of class subfolders (``root/cat/1.png``), or a flat folder of images (an unlabeled set).

    Subfolder names are matched to ``classes`` by :class:`ClassMatcher`. A subfolder that matches no class is
    an error listing it beside the model's classes, unless ``ignore_unknown`` (then its files are listed in
    ``ignored``). Subfolders are searched recursively. Image files lying next to class subfolders are ignored.
    Which subfolders are classes and which files are images is :func:`~cifarzoo.data.files.scan_class_folders`'s
    rule, shared with training: no hidden folders, ``__MACOSX`` and the like, or folders without images.
    """
    root = os.fspath(root)
    shown = display_path(root)
    if not os.path.isdir(root):
        raise CifarzooError(f"{shown}: not a folder")
    # The same scan as training's load_image_folder, so both see the same classes, files and order.
    scan = scan_class_folders(root)
    skipped = [{"path": path, "reason": reason} for path, reason in scan.skipped]
    loose = scan.loose
    per_folder = scan.files

    if not per_folder:
        if not loose:
            raise CifarzooError(f"{shown}: no image files in it or in class subfolders")
        return TestSet(shown, tuple(classes), _file_ids(loose, root), labels=None, paths=loose, skipped=skipped)

    match = ClassMatcher(classes)
    indices = {name: match(display_path(name)) for name in per_folder}
    unknown = [display_path(name) for name, index in indices.items() if index is None]
    if unknown and not ignore_unknown:
        raise CifarzooError(
            f"{shown}: folder(s) {', '.join(unknown)} match none of the model's classes "
            f"({', '.join(classes)}); rename them, or pass --ignore-unknown to skip them"
        )
    ignored = [{"path": display_path(p), "reason": "not in a class subfolder"} for p in loose]
    paths: list[str] = []
    labels: list[int] = []
    for name, files in per_folder.items():
        index = indices[name]
        if index is None:
            ignored.append({"path": display_path(os.path.join(root, name)),
                            "reason": f"folder matches no class ({len(files)} files)"})
            continue
        paths.extend(files)
        labels.extend([index] * len(files))
    if not paths:
        raise CifarzooError(f"{shown}: every class subfolder was ignored; nothing to evaluate")
    return TestSet(shown, tuple(classes), _file_ids(paths, root), np.asarray(labels), paths=paths,
                   ignored=ignored, skipped=skipped)


# ----------------------------------------------------------------------------------------------------------
# A labels CSV: ``path,label`` rows, paths relative to the CSV's folder


def read_labels_csv(path: str | os.PathLike, classes: Sequence[str], ignore_unknown: bool = False) -> TestSet:
    """``path,label`` rows (a header row is optional); labels are class names (matched like folder names) or
    integer indices. A CSV with only a path column, or all labels empty, is an unlabeled set.

    A file listed on several rows counts once: repeats with the same label (after matching, so ``car`` and
    ``automobile`` agree) are dropped and listed in ``ignored``; repeats with different labels are an error
    naming the file and both lines, since either label could be the wrong one. Paths are compared after
    normalisation (``img/./1.png`` is ``img/1.png``).
    """
    path = os.fspath(path)
    shown = display_path(path)
    try:
        # surrogateescape: paths in the CSV that are not UTF-8 still name the right files.
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if row and not row[0].startswith("#")]
    except (OSError, csv.Error) as exc:
        raise CifarzooError(f"{shown}: cannot read labels CSV ({exc})") from None
    if not rows:
        raise CifarzooError(f"{shown}: the labels CSV has no rows")
    path_col, label_col = 0, 1
    header = [cell.strip().casefold() for cell in rows[0][1]]
    if header and header[0] in PATH_COLUMNS + LABEL_COLUMNS:
        path_col = next((header.index(c) for c in PATH_COLUMNS if c in header), 0)
        label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), -1)
        rows = rows[1:]
    base = os.path.dirname(os.path.abspath(path))
    cells = [(n, row[path_col].strip() if len(row) > path_col else "",
              row[label_col].strip() if 0 <= label_col < len(row) else "") for n, row in rows]
    if not cells:
        raise CifarzooError(f"{shown}: the labels CSV has a header but no rows")
    empty_paths = [n for n, p, _ in cells if not p]
    if empty_paths:
        raise CifarzooError(f"{shown}:{empty_paths[0]}: row has no path")
    nul_paths = [n for n, p, _ in cells if "\0" in p]
    if nul_paths:
        raise CifarzooError(f"{shown}:{nul_paths[0]}: the path has a NUL character, which no file name can")
    has_label = [bool(label) for _, _, label in cells]
    files = [p if os.path.isabs(p) else os.path.join(base, p) for _, p, _ in cells]
    ids = [display_path(p) for _, p, _ in cells]
    if not any(has_label):
        keep, ignored = _dedupe_rows(shown, cells, files, ids, None)
        return TestSet(shown, tuple(classes), [ids[i] for i in keep], labels=None, paths=[files[i] for i in keep],
                       ignored=ignored)
    if not all(has_label):
        line = cells[has_label.index(False)][0]
        raise CifarzooError(f"{shown}:{line}: row has no label (label every row, or none for predictions only)")

    match = ClassMatcher(classes)
    matched = [match(label) for _, _, label in cells]
    unknown = {label: n for (n, _, label), index in zip(cells, matched) if index is None}
    if unknown and not ignore_unknown:
        listed = ", ".join(f"{label!r} (line {n})" for label, n in list(unknown.items())[:10])
        raise CifarzooError(
            f"{shown}: label(s) {listed} match none of the model's classes ({', '.join(classes)}); "
            f"fix them, or pass --ignore-unknown to skip those rows"
        )
    unique, ignored = _dedupe_rows(shown, cells, files, ids, matched)
    keep = [i for i in unique if matched[i] is not None]
    ignored += [{"path": ids[i], "reason": f"label {cells[i][2]!r} matches no class"}
                for i in unique if matched[i] is None]
    if not keep:
        raise CifarzooError(f"{shown}: no row has a label among the model's classes")
    return TestSet(shown, tuple(classes), [ids[i] for i in keep], np.asarray([matched[i] for i in keep]),
                   paths=[files[i] for i in keep], ignored=ignored)


def _dedupe_rows(
    shown: str, cells: Sequence[tuple[int, str, str]], files: Sequence[str], ids: Sequence[str],
    matched: Sequence[int | None] | None,
) -> tuple[list[int], list[dict[str, str]]]:
    """The rows to keep (the first of each file) and the repeats dropped, as ``ignored`` entries; a repeat
    whose label differs (``matched``: class indices, ``None`` for unknown labels) is an error."""
    first: dict[str, int] = {}
    keep: list[int] = []
    ignored: list[dict[str, str]] = []
    for i, file in enumerate(files):
        j = first.setdefault(os.path.normcase(os.path.normpath(file)), i)
        if j == i:
            keep.append(i)
            continue
        (line, _, label), (first_line, _, first_label) = cells[i], cells[j]
        # Known labels agree when they name one class; unknown ones when they are the same text.
        if matched is not None and _label_key(matched[i], label) != _label_key(matched[j], first_label):
            raise CifarzooError(
                f"{shown}:{line}: {ids[i]!r} is labeled {label!r} here but {first_label!r} on line {first_line}; "
                "give each file one label"
            )
        ignored.append({"path": ids[i], "reason": f"listed again (line {line}; first on line {first_line})"})
    return keep, ignored


def _label_key(index: int | None, label: str) -> int | str:
    return label if index is None else index


# ----------------------------------------------------------------------------------------------------------
# Arrays: CIFAR-10.1's format (uint8 N x 32 x 32 x 3 images, int labels), as .npz or .npy (+ sibling labels)


def read_array(path: str | os.PathLike, classes: Sequence[str], ignore_unknown: bool = False) -> TestSet:
    """uint8 ``(N, H, W[, C])`` images and ``(N,)`` labels from ``.npz`` (keys such as ``images``/``data`` and
    ``labels``) or ``.npy`` (labels in a sibling such as ``*_labels.npy``; without one, the set is unlabeled).

    Files are read with ``allow_pickle=False``, always: an array file from the internet cannot run code.
    ``.npy`` images are memory-mapped, so they are read a batch at a time.
    """
    path = os.fspath(path)
    shown = display_path(path)
    reader = _ARRAY_READERS.get(os.path.splitext(path)[1].lower())
    if reader is None:
        raise CifarzooError(f"{shown}: expected a .npz or .npy file")
    if not os.path.isfile(path):
        raise CifarzooError(f"{shown}: file not found")
    images, raw_labels, labels_from = reader(path)
    _check_image_array(images, shown)
    if raw_labels is None:
        return TestSet(shown, tuple(classes), [str(i) for i in range(len(images))], labels=None, images=images)
    labels = _array_labels(raw_labels, classes, labels_from, len(images), ignore_unknown)
    keep = np.flatnonzero(labels >= 0)
    if not len(keep):
        raise CifarzooError(f"{labels_from}: no image has a label among the model's classes ({', '.join(classes)})")
    ignored = [{"path": f"{shown}[{i}]", "reason": f"label {raw_labels[i].item()!r} matches no class"}
               for i in np.flatnonzero(labels < 0)]
    if len(keep) < len(labels):
        images = np.asarray(images)[keep]
    return TestSet(shown, tuple(classes), [str(i) for i in keep], labels[keep], images=images, ignored=ignored)


# What numpy's readers raise on a damaged or hostile file (a bad header, a short read, a broken archive).
_ARRAY_FILE_ERRORS = (
    ValueError, OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, TypeError, SyntaxError,
    OverflowError, MemoryError, NotImplementedError, RuntimeError, struct.error, zlib.error,
    tokenize.TokenError,  # numpy tokenizes the .npy header to read it
)
# An .npz member is read whole into memory (an .npy is memory-mapped instead): refuse members that would
# inflate past this, judged from the size the archive declares, before reading them.
MAX_NPZ_MEMBER_BYTES = 2 << 30


def _load_npy(path: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except _ARRAY_FILE_ERRORS as exc:
        raise CifarzooError(f"{display_path(path)}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(array, np.ndarray):  # an .npz renamed .npy loads as an archive
        raise CifarzooError(f"{display_path(path)}: not a .npy array (an .npz archive? name it .npz)")
    return array


def label_sibling(path: str | os.PathLike) -> str | None:
    """The labels file read with an images ``.npy`` (``NAME_data.npy`` -> ``NAME_labels.npy``; see
    :data:`LABEL_SIBLINGS`), or ``None`` when there is none."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if not name.lower().endswith(".npy"):
        return None
    stem = name[: -len(".npy")]
    for suffix, replacement in LABEL_SIBLINGS:
        if stem.endswith(suffix):
            sibling = os.path.join(folder, stem[: len(stem) - len(suffix)] + replacement + ".npy")
            if sibling != path and os.path.isfile(sibling):
                return sibling
    return None


def _read_npy(path: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    images = _load_npy(path)
    sibling = label_sibling(path)
    if sibling is not None:
        return images, np.asarray(_load_npy(sibling)), display_path(sibling)
    return images, None, display_path(path)


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    shown = display_path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = {k.casefold(): k for k in archive.files}
            image_key = next((keys[k] for k in ARRAY_IMAGE_KEYS if k in keys), None)
            label_key = next((keys[k] for k in ARRAY_LABEL_KEYS if k in keys), None)
            if image_key is None:
                raise CifarzooError(
                    f"{shown}: no image array; expected one of the keys {', '.join(ARRAY_IMAGE_KEYS)}, "
                    f"found {', '.join(archive.files) or 'none'}"
                )
            for key in (image_key, label_key):
                member = archive.zip.getinfo(f"{key}.npy") if key is not None else None
                if member is not None and member.file_size > MAX_NPZ_MEMBER_BYTES:
                    raise CifarzooError(
                        f"{shown}: the {key!r} array is {member.file_size / 2**30:.1f} GiB uncompressed, over the "
                        f"{MAX_NPZ_MEMBER_BYTES >> 30} GiB limit for .npz members; save it as .npy, which is read "
                        "a batch at a time"
                    )
            images = archive[image_key]
            labels = archive[label_key] if label_key is not None else None
    except _ARRAY_FILE_ERRORS as exc:
        raise CifarzooError(f"{shown}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(images, np.ndarray) or not (labels is None or isinstance(labels, np.ndarray)):
        raise CifarzooError(f"{shown}: not a readable .npz archive (a member is not an array)")
    return images, labels, shown


_ARRAY_READERS: Mapping[str, Callable[[str], tuple[np.ndarray, np.ndarray | None, str]]] = MappingProxyType(
    {".npy": _read_npy, ".npz": _read_npz}
)


def _check_image_array(images: np.ndarray, shown: str) -> None:
    if images.dtype != np.uint8:
        raise CifarzooError(f"{shown}: images must be uint8 (0-255), got {images.dtype}")
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3, 4))):
        raise CifarzooError(
            f"{shown}: images must be (N, H, W) or (N, H, W, C) with C 1, 3 or 4 (channels last), got {images.shape}"
        )
    if images.shape[0] == 0:
        raise CifarzooError(f"{shown}: holds no images (shape {images.shape})")
    height, width = images.shape[1:3]
    if height == 0 or width == 0:
        raise CifarzooError(f"{shown}: images of {width}x{height} pixels are empty (shape {images.shape})")
    if height * width > MAX_IMAGE_PIXELS:
        raise CifarzooError(
            f"{shown}: images of {width}x{height} pixels are over the {MAX_IMAGE_PIXELS >> 20} Mpx limit "
            "(a memory cap; shrink them first)"
        )


def _array_labels(
    raw: np.ndarray, classes: Sequence[str], shown: str, n: int, ignore_unknown: bool
) -> np.ndarray:
    """Labels as int64 indices; unknown ones are -1 (when ``ignore_unknown``) or an error."""
    raw = raw.reshape(-1) if raw.ndim == 2 and 1 in raw.shape else raw
    if raw.shape != (n,):
        raise CifarzooError(f"{shown}: {n} images but labels have shape {raw.shape}")
    if raw.dtype.kind in "iu":
        labels = raw.astype(np.int64)
        bad = (labels < 0) | (labels >= len(classes))
        unknown = sorted({str(v) for v in labels[bad][:1000]})
    elif raw.dtype.kind in "US":
        match = ClassMatcher(classes)
        names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw.tolist()]
        labels = np.asarray([-1 if (i := match(v)) is None else i for v in names], dtype=np.int64)
        bad = labels < 0
        unknown = sorted({names[i] for i in np.flatnonzero(bad)[:1000]})
    else:
        raise CifarzooError(f"{shown}: labels must be integers or class names, got {raw.dtype}")
    if unknown and not ignore_unknown:
        raise CifarzooError(
            f"{shown}: label(s) {', '.join(unknown[:10])} are not among the model's {len(classes)} classes "
            f"({', '.join(classes)}); pass --ignore-unknown to skip them"
        )
    labels[bad] = -1
    return labels


# ----------------------------------------------------------------------------------------------------------

_READERS: Mapping[str, Callable[..., TestSet]] = MappingProxyType(
    {"custom_dir": read_custom_dir, "labels": read_labels_csv, "array": read_array}
)


def open_testset(classes: Sequence[str], ignore_unknown: bool = False, **source: Any) -> TestSet:
    """The test set named by exactly one of ``custom_dir=``, ``labels=`` (a CSV) or ``array=``."""
    given = {kind: value for kind, value in source.items() if value is not None}
    unknown = set(given) - set(_READERS)
    if unknown:
        raise TypeError(f"unknown test-set source(s) {sorted(unknown)}; use {', '.join(_READERS)}")
    if len(given) != 1:
        raise CifarzooError(f"give exactly one test set: {', '.join(f'{k}=' for k in _READERS)}")
    ((kind, value),) = given.items()
    return _READERS[kind](value, classes, ignore_unknown=ignore_unknown)


__all__ = [
    "CLASS_SYNONYMS",
    "ClassMatcher",
    "TestSet",
    "label_sibling",
    "name_key",
    "open_testset",
    "read_array",
    "read_custom_dir",
    "read_labels_csv",
]

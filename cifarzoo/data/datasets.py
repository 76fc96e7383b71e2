"""Datasets as uint8 arrays: CIFAR-10, CIFAR-100, Fashion-MNIST and folders of your own images. Torch-free.

The CIFAR loaders read the official *binary* archives (fixed-size records, parsed with numpy in one go) and
Fashion-MNIST its idx files, so nothing here unpickles data from the internet. Downloads are checked against
their published MD5 before they are moved into place, so an interrupted or corrupt download never leaves a
file that a later run would trust.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np

from cifarzoo.atomic import atomic_path
from cifarzoo.config import PreprocessConfig
from cifarzoo.data.files import scan_class_folders
from cifarzoo.data.preprocess import try_load_uint8
from cifarzoo.data.specs import CIFAR10, CIFAR100, FASHION_MNIST, VAL_SIZE, DatasetSpec, get_dataset_spec
from cifarzoo.errors import CifarzooError, ImageReadError, display_path

log = logging.getLogger(__name__)

DataDir = Union[str, os.PathLike, None]

DATA_ENV = "CIFARZOO_DATA"
DEFAULT_CACHE = Path("~/.cache/cifarzoo/datasets")
# Debian's dataset-fashion-mnist package installs the four .gz files here.
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")
_PIXELS = 32 * 32 * 3  # one CIFAR image: 1024 R, then 1024 G, then 1024 B bytes, each plane row-major


@dataclass
class ArrayDataset:
    """Images and labels held in memory.

    Attributes:
        images: ``(N, H, W, C)`` uint8; C is 3 for RGB, 1 for grayscale.
        labels: ``(N,)`` int64 class indices into ``classes``.
        classes: label names in index order.
        name: where the data came from (``cifar10:train``, ``fashion-mnist:test``, a folder path).
        skipped: ``(path, reason)`` for image files that could not be decoded and folders that could not be
            listed (image folders only).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.classes = tuple(self.classes)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W, C) uint8, got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{len(self.images)} images but labels have shape {self.labels.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> ArrayDataset:
        """The examples at ``indices`` (copied), in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(self.images[idx], self.labels[idx], self.classes, name or self.name, list(self.skipped))


# ----------------------------------------------------------------------------------------------------------
# CIFAR binary archives


@dataclass(frozen=True)
class _CifarFormat:
    """Where a CIFAR binary archive comes from and how its records are laid out."""

    spec: DatasetSpec
    archive: str
    url: str
    md5: str
    folder: str  # what the archive extracts to
    files: dict[str, tuple[str, ...]]  # split -> record files
    meta: str  # class names, one a line; checked against the spec to catch a wrong archive
    label_bytes: int  # bytes before the pixels in each record
    label_index: int  # which of those bytes is the label we use

    @property
    def record_size(self) -> int:
        return self.label_bytes + _PIXELS


_CIFAR10_FORMAT = _CifarFormat(
    spec=CIFAR10,
    archive="cifar-10-binary.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
    folder="cifar-10-batches-bin",
    files={"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
    meta="batches.meta.txt",
    label_bytes=1,
    label_index=0,
)

_CIFAR100_FORMAT = _CifarFormat(
    spec=CIFAR100,
    archive="cifar-100-binary.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    md5="03b5dce01913d631647c71ecec9e9cb8",
    folder="cifar-100-binary",
    files={"train": ("train.bin",), "test": ("test.bin",)},
    meta="fine_label_names.txt",
    label_bytes=2,  # coarse label, then fine label
    label_index=1,
)


def load_cifar10(split: str = "train", data_dir: DataDir = None, download: bool = False) -> ArrayDataset:
    """CIFAR-10 ``train`` (50,000) or ``test`` (10,000) as ``(N, 32, 32, 3)`` uint8 images.

    ``data_dir`` may hold ``cifar-10-binary.tar.gz`` (extracted there on first use) or the extracted
    ``cifar-10-batches-bin/``; by default it is ``$CIFARZOO_DATA`` or ``~/.cache/cifarzoo/datasets``.
    ``download=True`` fetches the archive when neither is there.
    """
    return _load_cifar(_CIFAR10_FORMAT, split, data_dir, download)


def load_cifar100(split: str = "train", data_dir: DataDir = None, download: bool = False) -> ArrayDataset:
    """CIFAR-100 with its 100 fine labels; otherwise as :func:`load_cifar10` (``cifar-100-binary.tar.gz``)."""
    return _load_cifar(_CIFAR100_FORMAT, split, data_dir, download)


def _load_cifar(fmt: _CifarFormat, split: str, data_dir: DataDir, download: bool) -> ArrayDataset:
    _check_split(fmt.spec, split)
    folder = _find_cifar_folder(fmt, _data_root(data_dir), split, download)
    _check_meta(folder / fmt.meta, fmt.spec)
    records = np.concatenate([_read_records(folder / name, fmt.record_size) for name in fmt.files[split]])
    labels = records[:, fmt.label_index].astype(np.int64)
    _check_labels(labels, fmt.spec, folder)
    # Planes are stored channel-first; one reshape + transpose turns the whole split into NHWC.
    images = records[:, fmt.label_bytes :].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ArrayDataset(np.ascontiguousarray(images), labels, fmt.spec.classes, f"{fmt.spec.name}:{split}")


def _find_cifar_folder(fmt: _CifarFormat, root: Path, split: str, download: bool) -> Path:
    """The folder holding the split's record files, extracting (and downloading) the archive if needed."""
    needed = fmt.files[split]
    # The extracted folder inside root, or root itself when the user points straight at it.
    for folder in (root / fmt.folder, root):
        if all((folder / name).is_file() for name in needed):
            return folder
    archive = root / fmt.archive
    if not archive.is_file():
        if not download:
            raise CifarzooError(
                f"{fmt.spec.title} not found in {display_path(root)}: expected {fmt.archive} or "
                f"{fmt.folder}/ with {', '.join(needed)}; pass --download to fetch it, or --data-dir DIR "
                f"for a folder that holds it"
            )
        download_url(fmt.url, archive, fmt.md5)
    _extract(archive, root, fmt.folder)
    missing = [name for name in needed if not (root / fmt.folder / name).is_file()]
    if missing:
        raise CifarzooError(f"{display_path(archive)}: archive lacks {fmt.folder}/{', '.join(missing)}")
    return root / fmt.folder


def _extract(archive: Path, root: Path, folder: str) -> None:
    """Extract ``folder/`` from ``archive`` into ``root``, via a temp folder so a killed run leaves no half folder."""
    log.info("extracting %s", archive)
    try:
        with tempfile.TemporaryDirectory(prefix=".extract-", dir=root) as tmp:
            with tarfile.open(archive, "r:*") as tar:
                _safe_extractall(tar, Path(tmp))
            if not (Path(tmp) / folder).is_dir():
                raise CifarzooError(f"{display_path(archive)}: archive has no {folder}/ folder; is it the right file?")
            shutil.rmtree(root / folder, ignore_errors=True)  # an incomplete earlier copy
            os.replace(Path(tmp) / folder, root / folder)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:  # before OSError: BadGzipFile is one
        raise CifarzooError(f"{display_path(archive)}: not a readable tar.gz archive ({exc})") from None
    except OSError as exc:
        raise CifarzooError(f"cannot extract {display_path(archive)} into {display_path(root)}: {exc}") from None


def _safe_extractall(tar: tarfile.TarFile, dest: Path) -> None:
    # The "data" filter refuses absolute paths, "..", links out of dest and device files.
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    # Pythons without extraction filters (before 3.10.12 / 3.11.4): allow plain files and folders inside dest.
    base = dest.resolve()
    members = []
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or (target != base and base not in target.parents):
            raise tarfile.TarError(f"refusing unsafe member {member.name!r}")
        members.append(member)
    tar.extractall(dest, members=members)


def _read_records(path: Path, record_size: int) -> np.ndarray:
    """A record file as an ``(N, record_size)`` uint8 array."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise CifarzooError(f"{display_path(path)}: cannot read ({exc})") from None
    if raw.size == 0 or raw.size % record_size:
        raise CifarzooError(
            f"{display_path(path)}: {raw.size} bytes is not a whole number of {record_size}-byte records; "
            f"the file is truncated or not from this dataset"
        )
    return raw.reshape(-1, record_size)


def _check_meta(path: Path, spec: DatasetSpec) -> None:
    """Class names come from the spec, but a meta file that disagrees means a wrong archive."""
    if not path.is_file():
        return
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if tuple(names) != spec.classes:
        raise CifarzooError(
            f"{display_path(path)}: class names {names[:3]}... do not match {spec.title}'s; is this the right archive?"
        )


def _check_labels(labels: np.ndarray, spec: DatasetSpec, where: Path) -> None:
    if labels.size and int(labels.max()) >= spec.num_classes:
        raise CifarzooError(
            f"{display_path(where)}: label {int(labels.max())} out of range for {spec.title} "
            f"({spec.num_classes} classes); is this the right dataset?"
        )


# ----------------------------------------------------------------------------------------------------------
# Fashion-MNIST idx files

_FM_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# split -> ((images file, md5 of its .gz), (labels file, md5 of its .gz)), as published by Zalando Research.
_FM_FILES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "train": (
        ("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe"),
    ),
    "test": (
        ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
}
_IDX_UBYTE = 0x08  # the idx type code for unsigned bytes; the magic is 0x0000 <type> <ndim>


def load_fashion_mnist(
    split: str = "train", data_dir: DataDir = None, download: bool = False
) -> ArrayDataset:
    """Fashion-MNIST ``train`` (60,000) or ``test`` (10,000) as ``(N, 28, 28, 1)`` uint8 images.

    Reads the idx files, gzipped or not, from ``data_dir`` or ``data_dir/fashion-mnist``; by default from
    ``$CIFARZOO_DATA/fashion-mnist``, ``~/.cache/cifarzoo/datasets/fashion-mnist``, then
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).
    """
    _check_split(FASHION_MNIST, split)
    (images_name, images_md5), (labels_name, labels_md5) = _FM_FILES[split]
    candidates = _fm_folders(data_dir)
    folder = next((d for d in candidates if _idx_file(d, images_name) and _idx_file(d, labels_name)), None)
    if folder is None:
        if not download:
            shown = ", ".join(display_path(d) for d in candidates)
            raise CifarzooError(
                f"Fashion-MNIST not found in {shown}: expected {images_name}.gz and {labels_name}.gz; "
                f"pass --download to fetch them, or --data-dir DIR for a folder that holds them"
            )
        folder = candidates[0]
        for name, md5 in ((images_name, images_md5), (labels_name, labels_md5)):
            if not _idx_file(folder, name):
                download_url(_FM_URL + name + ".gz", folder / (name + ".gz"), md5)
    images_path, labels_path = _idx_file(folder, images_name), _idx_file(folder, labels_name)
    assert images_path is not None and labels_path is not None
    images = _read_idx(images_path, ndim=3)
    labels = _read_idx(labels_path, ndim=1).astype(np.int64)
    size = FASHION_MNIST.input_size
    if images.shape[1:] != (size, size):
        raise CifarzooError(f"{display_path(images_path)}: images are {images.shape[1:]}, expected {size}x{size}")
    if len(images) != len(labels):
        raise CifarzooError(
            f"{display_path(folder)}: {len(images)} images but {len(labels)} labels; the files do not belong together"
        )
    _check_labels(labels, FASHION_MNIST, labels_path)
    return ArrayDataset(images[..., None], labels, FASHION_MNIST.classes, f"{FASHION_MNIST.name}:{split}")


def _fm_folders(data_dir: DataDir) -> list[Path]:
    """Where to look for the idx files, in order; the first is also where downloads go."""
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        return [root / FASHION_MNIST.name, root]
    cache = DEFAULT_CACHE.expanduser() / FASHION_MNIST.name
    folders = [_data_root(None) / FASHION_MNIST.name, cache, SYSTEM_FASHION_MNIST]
    return list(dict.fromkeys(folders))  # drop the cache when $CIFARZOO_DATA is not set, keep the order


def _idx_file(folder: Path, name: str) -> Path | None:
    return next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None)


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes: big-endian header (magic ``0x0000 08 <ndim>``, then ndim dims), then data."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise CifarzooError(f"{display_path(path)}: cannot read ({exc})") from None
    header = 4 * (1 + ndim)
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != (_IDX_UBYTE << 8 | ndim):
        shown = "none" if magic is None else f"0x{magic:08x}"
        raise CifarzooError(
            f"{display_path(path)}: not an idx{ndim}-ubyte file (magic {shown}, "
            f"expected 0x{_IDX_UBYTE << 8 | ndim:08x})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)) if len(data) >= header else ()
    if len(dims) != ndim or len(data) != header + int(np.prod(dims)):
        raise CifarzooError(f"{display_path(path)}: size does not match its header {dims}; the file is truncated")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# ----------------------------------------------------------------------------------------------------------
# Folders of images, any dataset


def load_image_folder(
    root: str | os.PathLike, preprocess: PreprocessConfig, classes: Sequence[str] | None = None
) -> ArrayDataset:
    """Images in one subfolder per class (``root/cat/x.png``), decoded and resized with ``preprocess``.

    The folder is read by :func:`~cifarzoo.data.files.scan_class_folders`, as ``cifarzoo eval --custom-dir``
    reads it: hidden folders, tool droppings (``__MACOSX``) and folders without images are no classes, hidden
    files are no images. Classes are the scanned folder names in their natural order, or ``classes`` when
    given (then every class folder must be one of them; a class may have no folder). Files that cannot be
    decoded, and folders that cannot be listed, are skipped and listed in ``skipped``.
    """
    if not Path(root).is_dir():
        raise CifarzooError(f"{display_path(root)}: not a folder of class subfolders")
    scan = scan_class_folders(root)
    for path, reason in scan.ignored:
        log.info("%s: not a class (%s)", path, reason)
    names = tuple(classes) if classes is not None else scan.classes
    unknown = sorted(set(scan.classes) - set(names))
    if unknown:
        raise CifarzooError(f"{display_path(root)}: folders {unknown} are not among the classes {list(names)}")
    index = {name: i for i, name in enumerate(names)}
    paths, labels = [], []
    for name, found in scan.files.items():
        paths.extend(found)
        labels.extend([index[name]] * len(found))
    if not paths:
        raise CifarzooError(f"{display_path(root)}: no image files in its class subfolders")

    # PIL releases the GIL while decoding, so threads give a real speed-up on many small files.
    with ThreadPoolExecutor() as pool:
        results = list(pool.map(try_load_uint8, paths, [preprocess] * len(paths)))
    good = [i for i, r in enumerate(results) if isinstance(r, np.ndarray)]
    skipped = [*scan.skipped, *((r.path, r.reason) for r in results if isinstance(r, ImageReadError))]
    if not good:
        raise CifarzooError(f"{display_path(root)}: none of its {len(paths)} image files could be read")
    images = np.stack([results[i] for i in good])  # type: ignore[misc]
    return ArrayDataset(images, np.asarray(labels)[good], names, display_path(root), skipped)


# ----------------------------------------------------------------------------------------------------------
# By name, splitting, downloading

_LOADERS: dict[str, Callable[..., ArrayDataset]] = {
    CIFAR10.name: load_cifar10,
    CIFAR100.name: load_cifar100,
    FASHION_MNIST.name: load_fashion_mnist,
}


def load_dataset(
    name: str, split: str = "train", data_dir: DataDir = None, download: bool = False
) -> ArrayDataset:
    """Load a built-in dataset by name or tag: ``cifar10``/``c10``, ``cifar100``/``c100``, ``fashion-mnist``/``fm``."""
    return _LOADERS[get_dataset_spec(name).name](split, data_dir=data_dir, download=download)


def train_val_split(ds: ArrayDataset, val_size: int = VAL_SIZE, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Split off ``val_size`` random examples: the same seed always gives the same, disjoint, complete split."""
    if not 0 <= val_size < len(ds):
        raise CifarzooError(
            f"val_size must be from 0 to {len(ds) - 1} for {ds.name} ({len(ds)} examples), got {val_size}"
        )
    order = np.random.default_rng(seed).permutation(len(ds))
    # Sorted indices keep the original order within each part (and read memory front to back).
    train = ds.subset(np.sort(order[val_size:]), name=f"{ds.name}[train]")
    val = ds.subset(np.sort(order[:val_size]), name=f"{ds.name}[val]")
    return train, val


def download_url(url: str, dest: str | os.PathLike, md5: str) -> Path:
    """Download ``url`` to ``dest``, verifying its MD5 before the file appears at ``dest``.

    The data streams into a temp file next to ``dest`` that is renamed only once the hash matches, so a
    killed or corrupt download leaves nothing behind. Raises :class:`CifarzooError` on network errors and
    hash mismatches.
    """
    dest = Path(dest)
    log.info("downloading %s to %s", url, dest)
    try:
        with atomic_path(dest) as tmp:
            digest = hashlib.md5(usedforsecurity=False)
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != md5.lower():
                raise CifarzooError(
                    f"{dest.name} from {url} failed its checksum: md5 {actual}, expected {md5}; "
                    f"the download is corrupt or the file changed upstream"
                )
    except urllib.error.HTTPError as exc:
        raise CifarzooError(_download_failed(url, f"HTTP {exc.code} {exc.reason}")) from None
    except urllib.error.URLError as exc:
        raise CifarzooError(_download_failed(url, str(exc.reason))) from None
    except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        raise CifarzooError(_download_failed(url, str(exc) or type(exc).__name__)) from None
    return dest


def _download_failed(url: str, reason: str) -> str:
    return f"cannot download {url}: {reason}; without network access, pass --data-dir with the files"


# ----------------------------------------------------------------------------------------------------------


def _data_root(data_dir: DataDir) -> Path:
    """``data_dir``, else ``$CIFARZOO_DATA``, else ``~/.cache/cifarzoo/datasets``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return Path(os.environ.get(DATA_ENV) or DEFAULT_CACHE).expanduser()


def _check_split(spec: DatasetSpec, split: str) -> None:
    if split not in SPLITS:
        raise CifarzooError(f"unknown split {split!r} for {spec.title}; choose one of {', '.join(SPLITS)}")


__all__ = [
    "ArrayDataset",
    "load_cifar10",
    "load_cifar100",
    "load_fashion_mnist",
    "load_image_folder",
    "load_dataset",
    "train_val_split",
    "download_url",
]

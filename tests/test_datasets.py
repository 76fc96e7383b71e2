"""Dataset loaders on generated files in the official formats, downloads from a local HTTP server. Offline."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarzoo.data import datasets
from cifarzoo.data.datasets import (
    ArrayDataset,
    download_url,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_fashion_mnist,
    load_image_folder,
    train_val_split,
)
from cifarzoo.data.files import scan_class_folders
from cifarzoo.data.specs import CIFAR10, CIFAR100, DATASET_NAMES, DATASETS, FASHION_MNIST, get_dataset_spec
from cifarzoo.data.testsets import read_custom_dir
from cifarzoo.errors import CifarzooError

C10_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random NHWC images whose R, G and B planes have disjoint value ranges, so a channel mix-up shows."""
    images = rng.integers(0, 80, (n, 32, 32, 3), dtype=np.uint8)
    images[..., 1] += 85
    images[..., 2] += 170
    return images


def _records(images: np.ndarray, *label_columns: np.ndarray) -> bytes:
    """CIFAR binary records: label byte(s), then the R, G and B planes, each 32x32 row-major."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([np.stack(label_columns, axis=1).astype(np.uint8), planes], axis=1).tobytes()


def _tar(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


@pytest.fixture
def cifar10_dir(tmp_path):
    """An extracted cifar-10-batches-bin/ with 3 records per file, its tarball, and the arrays written."""
    rng = np.random.default_rng(10)
    folder = tmp_path / "extracted" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    expected = {}
    for split, names in C10_FILES.items():
        parts = []
        for name in names:
            images, labels = _images(rng, 3), rng.integers(0, 10, 3)
            (folder / name).write_bytes(_records(images, labels))
            parts.append((images, labels))
        expected[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10.classes) + "\n\n")
    (tmp_path / "archive").mkdir()
    _tar(folder, tmp_path / "archive" / "cifar-10-binary.tar.gz")
    return tmp_path, expected


@pytest.mark.parametrize("source", ["archive", "extracted"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_reads_exact_pixels(cifar10_dir, source, split):
    root, expected = cifar10_dir
    ds = load_cifar10(split, data_dir=root / source)
    images, labels = expected[split]
    assert ds.images.dtype == np.uint8 and ds.images.shape == (len(images), 32, 32, 3)
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.classes == CIFAR10.classes and ds.name == f"cifar10:{split}"
    if source == "archive":  # extracted next to the tarball, with no temp folder left behind
        assert sorted(p.name for p in (root / source).iterdir()) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]


def test_cifar10_folder_given_directly(cifar10_dir):
    root, expected = cifar10_dir
    ds = load_cifar10("test", data_dir=root / "extracted" / "cifar-10-batches-bin")
    np.testing.assert_array_equal(ds.images, expected["test"][0])


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(100)
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    written = {}
    for split in ("train", "test"):
        images, coarse, fine = _images(rng, 4), rng.integers(0, 20, 4), rng.integers(20, 100, 4)
        (folder / f"{split}.bin").write_bytes(_records(images, coarse, fine))
        written[split] = (images, fine)
    (folder / "fine_label_names.txt").write_text("\n".join(CIFAR100.classes) + "\n")
    (folder / "coarse_label_names.txt").write_text("\n".join(f"super{i}" for i in range(20)) + "\n")
    _tar(folder, tmp_path / "cifar-100-binary.tar.gz")
    extracted = load_cifar100("train", data_dir=tmp_path)
    np.testing.assert_array_equal(extracted.images, written["train"][0])
    np.testing.assert_array_equal(extracted.labels, written["train"][1])
    archive_only = tmp_path / "archive_only"
    archive_only.mkdir()
    (tmp_path / "cifar-100-binary.tar.gz").rename(archive_only / "cifar-100-binary.tar.gz")
    ds = load_cifar100("test", data_dir=archive_only)
    np.testing.assert_array_equal(ds.images, written["test"][0])
    np.testing.assert_array_equal(ds.labels, written["test"][1])
    assert len(ds.classes) == 100 and ds.name == "cifar100:test"


def test_truncated_bin_names_the_file(cifar10_dir):
    root, _ = cifar10_dir
    path = root / "extracted" / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(CifarzooError, match="test_batch.bin"):
        load_cifar10("test", data_dir=root / "extracted")


def test_meta_file_disagreeing_is_an_error(cifar10_dir):
    root, _ = cifar10_dir
    (root / "extracted" / "cifar-10-batches-bin" / "batches.meta.txt").write_text("\n".join(CIFAR100.classes[:10]))
    with pytest.raises(CifarzooError, match="batches.meta.txt"):
        load_cifar10("test", data_dir=root / "extracted")


def test_corrupt_archive_is_an_error(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(CifarzooError, match="cifar-10-binary.tar.gz"):
        load_cifar10("test", data_dir=tmp_path)


def test_missing_data_names_the_folder(tmp_path, monkeypatch):
    with pytest.raises(CifarzooError, match="--download") as info:
        load_cifar10("train", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value) and "cifar-10-binary.tar.gz" in str(info.value)
    assert "\n" not in str(info.value)
    monkeypatch.setenv("CIFARZOO_DATA", str(tmp_path / "from-env"))
    with pytest.raises(CifarzooError, match="from-env"):
        load_cifar100("test")
    with pytest.raises(CifarzooError, match=str(tmp_path)):
        load_fashion_mnist("test", data_dir=tmp_path)


def test_unknown_split(cifar10_dir):
    with pytest.raises(CifarzooError, match="split"):
        load_cifar10("val", data_dir=cifar10_dir[0] / "extracted")
    with pytest.raises(CifarzooError, match="split"):
        load_fashion_mnist("validation")


# ----------------------------------------------------------------------------------------------------------
# Fashion-MNIST


def _idx(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def fm_dir(tmp_path):
    rng = np.random.default_rng(28)
    written = {}
    for prefix, n in (("train", 7), ("t10k", 5)):
        images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
        written["train" if prefix == "train" else "test"] = (images, labels)
    return tmp_path, written


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_reads_exact_arrays(fm_dir, split):
    root, written = fm_dir
    ds = load_fashion_mnist(split, data_dir=root)
    assert ds.images.shape == (len(written[split][0]), 28, 28, 1) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.images[..., 0], written[split][0])
    np.testing.assert_array_equal(ds.labels, written[split][1])
    assert ds.classes == FASHION_MNIST.classes and ds.name == f"fashion-mnist:{split}"


def test_fashion_mnist_uncompressed_in_subfolder(fm_dir, tmp_path_factory):
    root, written = fm_dir
    other = tmp_path_factory.mktemp("plain")
    (other / "fashion-mnist").mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (other / "fashion-mnist" / name).write_bytes(gzip.decompress((root / f"{name}.gz").read_bytes()))
    ds = load_fashion_mnist("test", data_dir=other)
    np.testing.assert_array_equal(ds.images[..., 0], written["test"][0])


def test_fashion_mnist_bad_magic(fm_dir):
    root, written = fm_dir
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(written["test"][0], magic=0x0801)))
    with pytest.raises(CifarzooError, match="t10k-images-idx3-ubyte.gz.*magic"):
        load_fashion_mnist("test", data_dir=root)


def test_fashion_mnist_truncated(fm_dir):
    root, _ = fm_dir
    path = root / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-1]))
    with pytest.raises(CifarzooError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist("test", data_dir=root)


@pytest.mark.skipif(not datasets.SYSTEM_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFARZOO_DATA", str(tmp_path))  # nothing there: found through the system folder
    ds = load_dataset("fm", "test")
    assert ds.images.shape == (10000, 28, 28, 1) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [1000] * 10


# ----------------------------------------------------------------------------------------------------------
# Dispatch and splitting


@pytest.mark.parametrize("name", ["cifar10", "c10", "CIFAR10"])
def test_load_dataset_cifar10_by_name_and_tag(cifar10_dir, name):
    root, expected = cifar10_dir
    ds = load_dataset(name, "test", data_dir=root / "extracted")
    np.testing.assert_array_equal(ds.labels, expected["test"][1])


@pytest.mark.parametrize("name", ["fashion-mnist", "fm"])
def test_load_dataset_fashion_mnist_from_env(fm_dir, monkeypatch, name):
    root, written = fm_dir
    monkeypatch.setenv("CIFARZOO_DATA", str(root.parent))
    (root.parent / "fashion-mnist").mkdir(exist_ok=True)
    for path in root.glob("*.gz"):
        (root.parent / "fashion-mnist" / path.name).write_bytes(path.read_bytes())
    ds = load_dataset(name, "train")
    np.testing.assert_array_equal(ds.labels, written["train"][1])


def test_load_dataset_unknown_name():
    with pytest.raises(CifarzooError, match="unknown dataset"):
        load_dataset("imagenet")


def _toy(n: int = 100) -> ArrayDataset:
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=1)
    return ArrayDataset(images, np.arange(n) % 10, tuple("abcdefghij"), "toy")


def test_train_val_split():
    ds = _toy()
    train, val = train_val_split(ds, val_size=20, seed=3)
    assert (len(train), len(val)) == (80, 20)
    ids_train, ids_val = train.images[:, 0, 0, 0].tolist(), val.images[:, 0, 0, 0].tolist()
    assert not set(ids_train) & set(ids_val) and sorted(ids_train + ids_val) == list(range(100))
    np.testing.assert_array_equal(train.labels, np.asarray(ids_train) % 10)  # images and labels stay paired
    again = train_val_split(ds, val_size=20, seed=3)[1]
    np.testing.assert_array_equal(again.images, val.images)
    other = train_val_split(ds, val_size=20, seed=4)[1]
    assert set(other.images[:, 0, 0, 0].tolist()) != set(ids_val)
    with pytest.raises(CifarzooError, match="val_size"):
        train_val_split(ds, val_size=100)


# ----------------------------------------------------------------------------------------------------------
# Image folders


def test_load_image_folder(tmp_path):
    rng = np.random.default_rng(5)
    written = {}
    for cls, n in (("cat", 2), ("dog", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            array = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(array).save(tmp_path / cls / f"{i}.png")
            written[(cls, i)] = array
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "dog" / "notes.txt").write_text("not an image, not listed")
    cfg = CIFAR10.preprocess_config()
    ds = load_image_folder(tmp_path, cfg)
    assert ds.classes == ("cat", "dog") and len(ds) == 5
    assert ds.images.shape == (5, 32, 32, 3)
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_array_equal(ds.images[0], written[("cat", 0)])
    np.testing.assert_array_equal(ds.images[4], written[("dog", 2)])
    assert len(ds.skipped) == 1 and ds.skipped[0][0].endswith("broken.png")

    ds = load_image_folder(tmp_path, cfg, classes=["bird", "cat", "dog"])
    assert ds.labels.tolist() == [1, 1, 2, 2, 2]
    with pytest.raises(CifarzooError, match="dog"):
        load_image_folder(tmp_path, cfg, classes=["cat", "horse"])


def _png(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


def test_training_and_eval_read_a_class_folder_alike(tmp_path):
    # Readable PNGs everywhere that must be left out, so only the folder and file rules can exclude them.
    rng = np.random.default_rng(7)
    root = tmp_path / "set"
    for cls, n in (("frog", 1), ("cat", 2), ("dog", 3)):
        for i in range(n):
            _png(root / cls / f"{i}.png", rng)
    _png(root / "__MACOSX" / "cat" / "._0.png", rng)  # zip metadata: a readable image, but no class
    _png(root / ".cache" / "x.png", rng)  # hidden folder
    _png(root / "dog" / "._x.png", rng)  # macOS metadata twin: hidden, so no image
    _png(root / "dog" / ".thumbs" / "t.png", rng)  # hidden folder inside a class
    (root / "emptyclass").mkdir()
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")

    train = load_image_folder(root, CIFAR10.preprocess_config())
    assert train.classes == ("cat", "dog", "frog") and len(train) == 6 and train.skipped == []
    test = read_custom_dir(root, train.classes)
    assert test.skipped == [] and test.ignored == []
    assert sorted({test.classes[i] for i in test.labels}) == list(train.classes)
    assert len(test) == len(train)
    np.testing.assert_array_equal(test.labels, train.labels)  # same files in the same order

    scan = scan_class_folders(root)
    assert scan.classes == train.classes and scan.num_files == 6 and scan.loose == []
    reasons = {Path(path).name: reason for path, reason in scan.ignored}
    assert reasons == {".cache": "hidden folder", "__MACOSX": "system folder, never a class",
                       "emptyclass": "no image files"}


def test_class_folders_are_in_natural_order(tmp_path):
    rng = np.random.default_rng(8)
    for cls in ("img10", "img2", "Img3", "img1"):
        for name in ("b10.png", "b9.png", "a.png"):
            _png(tmp_path / cls / name, rng)
    scan = scan_class_folders(tmp_path)
    assert scan.classes == ("img1", "img2", "Img3", "img10")
    assert [Path(p).name for p in scan.files["img2"]] == ["a.png", "b9.png", "b10.png"]
    assert load_image_folder(tmp_path, CIFAR10.preprocess_config()).classes == scan.classes
    assert read_custom_dir(tmp_path, scan.classes).paths == [p for c in scan.classes for p in scan.files[c]]


def test_dataset_names_and_metadata_are_declared_once():
    assert tuple(spec.name for spec in DATASETS.values()) == DATASET_NAMES
    for name in DATASET_NAMES:
        spec = get_dataset_spec(name)
        assert spec.hub_id and spec.bibtex and spec.bibtex.startswith("@")


# ----------------------------------------------------------------------------------------------------------
# Downloads


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base url). Shut down after the test."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_url_good_md5(http_root, tmp_path):
    served, base = http_root
    payload = bytes(range(256)) * 5000
    (served / "blob.bin").write_bytes(payload)
    dest = tmp_path / "out" / "blob.bin"
    assert download_url(base + "blob.bin", dest, hashlib.md5(payload).hexdigest()) == dest
    assert dest.read_bytes() == payload
    assert list(dest.parent.iterdir()) == [dest]


def test_download_url_bad_md5_leaves_nothing(http_root, tmp_path):
    served, base = http_root
    (served / "blob.bin").write_bytes(b"corrupt")
    actual = hashlib.md5(b"corrupt").hexdigest()
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(CifarzooError) as info:
        download_url(base + "blob.bin", dest, "0" * 32)
    assert "0" * 32 in str(info.value) and actual in str(info.value) and "blob.bin" in str(info.value)
    assert list(dest.parent.iterdir()) == []


def test_download_url_http_error(http_root, tmp_path):
    _, base = http_root
    with pytest.raises(CifarzooError, match="404"):
        download_url(base + "missing.bin", tmp_path / "out" / "missing.bin", "0" * 32)
    assert list((tmp_path / "out").iterdir()) == []


def test_download_url_unreachable(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-binary.tar.gz"
    with pytest.raises(CifarzooError, match="--data-dir") as info:
        download_url(url, tmp_path / "x.tar.gz", "0" * 32)
    assert url in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_then_extract_cifar10(cifar10_dir, http_root, monkeypatch, tmp_path):
    root, expected = cifar10_dir
    served, base = http_root
    archive = (root / "archive" / "cifar-10-binary.tar.gz").read_bytes()
    (served / "cifar-10-binary.tar.gz").write_bytes(archive)
    local = dataclasses.replace(
        datasets._CIFAR10_FORMAT, url=base + "cifar-10-binary.tar.gz", md5=hashlib.md5(archive).hexdigest()
    )
    monkeypatch.setattr(datasets, "_CIFAR10_FORMAT", local)
    ds = load_cifar10("test", data_dir=tmp_path / "cache", download=True)
    np.testing.assert_array_equal(ds.images, expected["test"][0])
    assert (tmp_path / "cache" / "cifar-10-binary.tar.gz").is_file()

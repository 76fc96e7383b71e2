"""Property-based tests (Hypothesis) for what a test set feeds the evaluator: the labels CSV as random text and
bytes, array files as random bytes, damaged headers and random shapes and dtypes, and image files as random bytes
and mutations of valid PNG, JPEG, GIF, BMP, TIFF and WebP files.

The property is always the same: the input is read, or refused with a :class:`CifarzooError` (for images, an
:class:`ImageReadError` naming the file); never any other exception, which the CLI would show as a traceback.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cifarzoo.data.preprocess import read_image, try_load_uint8
from cifarzoo.data.specs import CIFAR10, FASHION_MNIST
from cifarzoo.data.testsets import TestSet, read_array, read_labels_csv
from cifarzoo.engines.evaluate import evaluate_testset
from cifarzoo.errors import CifarzooError, ImageReadError

# Pillow warns (and goes on) about damaged EXIF blocks in mutated files: expected here, so not shown.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")
# No example database: runs leave no .hypothesis/ folder behind, and every run draws afresh.
FUZZ = settings(database=None, deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(database=None, deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
C10 = CIFAR10.classes
RGB32 = CIFAR10.preprocess_config()
GRAY28 = FASHION_MNIST.preprocess_config()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One folder for every example of a module (Hypothesis reruns a test body, not its function fixtures)."""
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "img").mkdir()
        Image.new("RGB", (8, 8), (9, 90, 200)).save(root / "img" / "0.png")
        yield root


def read_or_refuse(call: Any, *args: Any, **kwargs: Any) -> Any:
    """The call's result, or ``None`` when it refused with a CifarzooError; anything else fails the test."""
    try:
        return call(*args, **kwargs)
    except CifarzooError as exc:
        assert "\n" not in str(exc), str(exc)  # one line
        return None


# ----------------------------------------------------------------------------------------------------------
# Labels CSV

CELLS = st.one_of(
    st.sampled_from(["img/0.png", "./img/0.png", "img/1.png", "/abs/x.png", "missing.jpg", "", " ", "#x", "\"q\"",
                     "cat", "Cars", "3", "10", "-1", "9" * 5000, "path", "label", "a\x00b", "\u202e", "caf\u00e9"]),
    st.text(max_size=12),
)


def csv_text(rows: list[list[str]], separator: str) -> str:
    return separator.join(",".join(row) for row in rows)


@FUZZ
@given(rows=st.lists(st.lists(CELLS, max_size=4), max_size=8), separator=st.sampled_from(["\n", "\r\n", "\r"]),
       ignore_unknown=st.booleans())
def test_labels_csv_from_rows_of_cells(folder, rows, separator, ignore_unknown) -> None:
    path = folder / "gt.csv"
    path.write_text(csv_text(rows, separator), encoding="utf-8", errors="surrogatepass")
    testset = read_or_refuse(read_labels_csv, path, C10, ignore_unknown=ignore_unknown)
    if testset is not None:
        _check_testset(testset)
        normalized = [os.path.normpath(p) for p in testset.paths]
        assert len(set(normalized)) == len(normalized)  # each file once


@FUZZ
@given(content=st.binary(max_size=400))
def test_labels_csv_from_random_bytes(folder, content) -> None:
    path = folder / "gt.csv"
    path.write_bytes(content)
    testset = read_or_refuse(read_labels_csv, path, C10, ignore_unknown=True)
    if testset is not None:
        _check_testset(testset)


def _check_testset(testset: TestSet) -> None:
    assert testset.paths is not None and len(testset.paths) == len(testset.ids) > 0
    if testset.labels is not None:
        assert testset.labels.shape == (len(testset.ids),)
        assert ((testset.labels >= 0) & (testset.labels < len(C10))).all()


# ----------------------------------------------------------------------------------------------------------
# Arrays

DTYPES = st.sampled_from(["u1", "i1", "<u2", ">u2", "<i4", "<f4", "<f8", "?", "U3", "S3", "c8", "V2", "u1,u1"])
SHAPES = st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 28, 33]), max_size=5).map(tuple)
IMAGE_KEYS = st.sampled_from(["images", "data", "x", "IMAGES", "pixels"])
LABEL_KEYS = st.sampled_from(["labels", "y", "targets", "other"])


def _array(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 12, size=int(np.prod(shape, dtype=np.int64)))
    try:
        return values.astype(dtype).reshape(shape)
    except (TypeError, ValueError):  # dtypes numpy cannot cast integers to (void): raw bytes instead
        raw = rng.integers(0, 256, size=int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, dtype=np.uint8)
        return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape)


def _evaluate_if_read(path: Path, cfg: Any) -> None:
    """read_array, then, when it reads, the whole evaluation (conversion included) with a stand-in network."""
    testset = read_or_refuse(read_array, path, C10, ignore_unknown=True)
    if testset is None:
        return
    assert testset.images is not None and len(testset) == len(testset.images) > 0

    def logits(batch: np.ndarray) -> np.ndarray:
        assert batch.shape[1:] == (cfg.in_chans, cfg.input_size, cfg.input_size) and np.isfinite(batch).all()
        return np.zeros((len(batch), len(C10)), np.float32)

    report = read_or_refuse(evaluate_testset, logits, cfg, testset, batch_size=4)
    if report is not None:
        assert report.n + len(report.skipped) == len(testset)


@FUZZ
@given(dtype=DTYPES, shape=SHAPES, labels=st.none() | st.tuples(DTYPES, SHAPES), seed=st.integers(0, 9),
       cfg=st.sampled_from([RGB32, GRAY28]))
def test_npy_of_any_shape_and_dtype(folder, dtype, shape, labels, seed, cfg) -> None:
    sub = Path(tempfile.mkdtemp(dir=folder))
    np.save(sub / "set_data.npy", _array(dtype, shape, seed))
    if labels is not None:
        np.save(sub / "set_labels.npy", _array(*labels, seed))
    _evaluate_if_read(sub / "set_data.npy", cfg)


@FUZZ
@given(image_key=IMAGE_KEYS, dtype=DTYPES, shape=SHAPES, label_key=LABEL_KEYS, labels=st.tuples(DTYPES, SHAPES),
       seed=st.integers(0, 9), compressed=st.booleans())
def test_npz_of_any_shape_and_dtype(folder, image_key, dtype, shape, label_key, labels, seed, compressed) -> None:
    path = folder / "set.npz"
    save = np.savez_compressed if compressed else np.savez
    save(path, **{image_key: _array(dtype, shape, seed), label_key: _array(*labels, seed)})
    _evaluate_if_read(path, RGB32)


def _valid_array_bytes(kind: str) -> bytes:
    buffer = io.BytesIO()
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    if kind == ".npy":
        np.save(buffer, images)
    else:
        np.savez(buffer, images=images, labels=np.array([0, 1]))
    return buffer.getvalue()


@FUZZ
@given(kind=st.sampled_from([".npy", ".npz"]), data=st.data())
def test_damaged_array_files(folder, kind, data) -> None:
    content = data.draw(_mutations(_valid_array_bytes(kind)) | st.binary(max_size=300))
    path = folder / f"damaged{kind}"
    path.write_bytes(content)
    _evaluate_if_read(path, RGB32)


# ----------------------------------------------------------------------------------------------------------
# Image bytes


def _valid_image_bytes() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    out = {}
    for fmt, image, kwargs in [
        ("PNG", rgb, {}), ("PNG", rgb.convert("RGBA"), {}), ("PNG", rgb.convert("P"), {"transparency": 0}),
        ("JPEG", rgb, {"quality": 80}), ("GIF", rgb.convert("P"), {}), ("BMP", rgb, {}),
        ("TIFF", rgb, {"compression": "tiff_deflate"}), ("WEBP", rgb, {}),
        ("PNG", Image.fromarray(rng.integers(0, 65535, (6, 6), dtype=np.uint16)), {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **kwargs)
        out[f"{fmt}-{image.mode}"] = buffer.getvalue()
    return out


VALID_IMAGES = _valid_image_bytes()


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with bytes overwritten, inserted or cut (headers included), or truncated."""

    @st.composite
    def mutate(draw: Any) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            position = draw(st.integers(0, max(0, len(data) - 1)))
            action = draw(st.sampled_from(["set", "insert", "delete", "truncate", "big"]))
            if action == "set" and data:
                data[position] = draw(st.integers(0, 255))
            elif action == "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=8))
            elif action == "delete":
                del data[position : position + draw(st.integers(1, 8))]
            elif action == "truncate":
                del data[position:]
            elif action == "big" and len(data) > position + 4:  # a large number where a size may be
                data[position : position + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\xff\xff",
                                                                      b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00"]))
        return bytes(data)

    return mutate()


def _check_image(path: Path) -> None:
    try:
        image = read_image(path)
    except ImageReadError as exc:
        assert exc.path == str(path) and exc.reason and "\n" not in str(exc)
    else:
        assert image.width * image.height > 0
    for cfg in (RGB32, GRAY28):
        result = try_load_uint8(path, cfg)  # never raises: an array, or the error to report
        if isinstance(result, np.ndarray):
            assert result.shape == (cfg.input_size, cfg.input_size, cfg.in_chans) and result.dtype == np.uint8
        else:
            assert isinstance(result, ImageReadError) and result.path == str(path)


@settings(FUZZ, max_examples=300)
@given(name=st.sampled_from(sorted(VALID_IMAGES)), data=st.data())
def test_mutated_images(folder, name, data) -> None:
    path = folder / "mutated.img"
    path.write_bytes(data.draw(_mutations(VALID_IMAGES[name])))
    _check_image(path)


@FEW
@given(content=st.binary(max_size=200), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
                                                                 b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBPVP8 "]))
def test_random_image_bytes(folder, content, prefix) -> None:
    path = folder / "random.png"
    path.write_bytes(prefix + content)
    _check_image(path)


def test_valid_images_all_decode(folder) -> None:
    """The seeds of the mutations are real images: the fuzzing starts from files that decode."""
    for name, content in VALID_IMAGES.items():
        path = folder / f"valid-{name}"
        path.write_bytes(content)
        assert try_load_uint8(path, RGB32).shape == (32, 32, 3), name

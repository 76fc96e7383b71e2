"""Evaluating on custom test sets: folders, labels CSVs, arrays, unlabeled input, bad files, reports and TTA.

Everything runs on tiny generated images and an untrained resnet26-c10 (the numbers are meaningless; the
plumbing is what is tested).
"""

from __future__ import annotations

import builtins
import csv
import errno
import io
import json
import os
import re
import shutil
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from conftest import run_cli_without_torch
from PIL import Image
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.data.specs import CIFAR10, CIFAR100, FASHION_MNIST
from cifarzoo.data.testsets import CLASS_SYNONYMS, ClassMatcher, read_custom_dir
from cifarzoo.data.tta import TTA_MODES, tta_batch, tta_logits
from cifarzoo.errors import CifarzooError
from cifarzoo.runtime.predictor import decode_stream
from cifarzoo.runtime.torch_runner import TorchRunner

runner = CliRunner()
C10 = CIFAR10.classes
REQUIRED_JSON_KEYS = {"n", "top1", "top5", "per_class", "confusion", "ece", "skipped"}


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def png(path: Path | bytes, rng: np.random.Generator, size: int = 32, **kwargs) -> Path | bytes:
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(f, "PNG", **kwargs)
    return path


@pytest.fixture(scope="module")
def model(c10_checkpoint):
    return cifarzoo.load(c10_checkpoint, device="cpu")


@pytest.fixture
def class_dir(tmp_path, rng) -> Path:
    """Two images in each of four class folders, named with synonyms, case and plurals."""
    root = tmp_path / "classes"
    for folder in ("Car", "aeroplane", "cats", "DOG"):
        for i in range(2):
            png(root / folder / f"{i}.png", rng)
    return root


# ----------------------------------------------------------------------------------------------------------
# Class-name matching


def test_synonym_table_is_data_and_read_only() -> None:
    assert isinstance(CLASS_SYNONYMS, MappingProxyType)
    assert "car" in CLASS_SYNONYMS["automobile"] and "top" in CLASS_SYNONYMS["T-shirt/top"]


@pytest.mark.parametrize(
    ("classes", "name", "expected"),
    [
        (C10, "car", "automobile"),
        (C10, "Cars", "automobile"),
        (C10, "plane", "airplane"),
        (C10, "Aeroplane", "airplane"),
        (C10, "AIRPLANE", "airplane"),
        (C10, "trucks", "truck"),
        (C10, "boat", "ship"),
        (C10, "3", "cat"),
        (FASHION_MNIST.classes, "tshirt", "T-shirt/top"),
        (FASHION_MNIST.classes, "t-shirt", "T-shirt/top"),
        (FASHION_MNIST.classes, "T_Shirt", "T-shirt/top"),
        (FASHION_MNIST.classes, "top", "T-shirt/top"),
        (FASHION_MNIST.classes, "t-shirt_top", "T-shirt/top"),
        (FASHION_MNIST.classes, "boot", "Ankle boot"),
        (FASHION_MNIST.classes, "ankle_boot", "Ankle boot"),
        (FASHION_MNIST.classes, "Ankle-Boot", "Ankle boot"),
        (FASHION_MNIST.classes, "trousers", "Trouser"),
        (FASHION_MNIST.classes, "sneakers", "Sneaker"),
        (CIFAR100.classes, "aquarium fish", "aquarium_fish"),
        (CIFAR100.classes, "Maple-Tree", "maple_tree"),
        (CIFAR100.classes, "sofa", "couch"),
        (CIFAR100.classes, "mice", "mouse"),
        (CIFAR100.classes, "buses", "bus"),
        (CIFAR100.classes, "butterflies", "butterfly"),
        (CIFAR100.classes, "pickup", "pickup_truck"),
    ],
)
def test_class_matcher(classes, name, expected) -> None:
    assert ClassMatcher(classes)(name) == classes.index(expected)


def test_class_matcher_rejects_unknown_and_prefers_exact_names() -> None:
    match = ClassMatcher(C10)
    assert match("unicorn") is None and match("10") is None and match("car") == 1
    assert ClassMatcher(["top", "T-shirt/top"])("top") == 0  # an exact class beats another class's synonym
    assert ClassMatcher(CIFAR100.classes)("car") is None  # synonyms apply only to classes the model has


# ----------------------------------------------------------------------------------------------------------
# Every input form


def test_custom_dir_maps_folders_to_the_models_classes(model, class_dir) -> None:
    report = cifarzoo.evaluate(model, custom_dir=class_dir)
    assert report.labeled and report.n == 8 and report.skipped == []
    truth = dict(zip(report.ids, (C10[i] for i in report.labels)))
    assert truth["Car/0"] == "automobile" and truth["aeroplane/1"] == "airplane"
    assert truth["cats/0"] == "cat" and truth["DOG/1"] == "dog"
    assert sum(report.per_class[c].support for c in C10) == 8 and report.per_class["dog"].support == 2
    assert np.asarray(report.confusion).sum() == 8


def test_unknown_folders_are_an_error_listing_them_or_ignored(model, c10_checkpoint, class_dir, rng) -> None:
    png(class_dir / "unicorn" / "0.png", rng)
    png(class_dir / "dragons" / "0.png", rng)
    (class_dir / "empty").mkdir()  # an empty folder is no class: no complaint
    with pytest.raises(CifarzooError) as err:
        cifarzoo.evaluate(model, custom_dir=class_dir)
    message = str(err.value)
    assert "dragons, unicorn" in message and "airplane, automobile" in message and "--ignore-unknown" in message
    assert "\n" not in message
    report = cifarzoo.evaluate(model, custom_dir=class_dir, ignore_unknown=True)
    assert report.n == 8 and {Path(i["path"]).name for i in report.ignored} == {"dragons", "unicorn"}
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", class_dir)
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_labels_csv_names_indices_and_relative_paths(model, tmp_path, rng) -> None:
    folder = tmp_path / "flat"
    for i in range(4):
        png(folder / "img" / f"{i}.png", rng)
    labels = folder / "labels.csv"
    labels.write_text("path,label\nimg/0.png,car\nimg/1.png,3\nimg/2.png, Ship \nimg/3.png,AIRPLANE\nimg/9.png,dog\n")
    report = cifarzoo.evaluate(model, labels=labels)
    assert report.n == 4 and [C10[i] for i in report.labels] == ["automobile", "cat", "ship", "airplane"]
    assert report.ids == ["img/0.png", "img/1.png", "img/2.png", "img/3.png"]
    assert report.skipped == [{"path": str(folder / "img" / "9.png"), "reason": "file not found"}]

    # No header, an unknown label: an error naming it and its line, or skipped with --ignore-unknown.
    labels.write_text("img/0.png,car\nimg/1.png,unicorn\n")
    with pytest.raises(CifarzooError, match=r"'unicorn' \(line 2\)"):
        cifarzoo.evaluate(model, labels=labels)
    report = cifarzoo.evaluate(model, labels=labels, ignore_unknown=True)
    assert report.n == 1 and report.ignored[0]["path"] == "img/1.png"


def test_array_npz_npy_and_cifar101_sibling_labels(model, tmp_path, rng) -> None:
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5])
    np.savez(tmp_path / "a.npz", images=images, labels=labels)
    np.savez(tmp_path / "b.npz", data=images, labels=labels.astype(np.uint8))
    np.save(tmp_path / "cifar10.1_v6_data.npy", images)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", labels)
    for name in ("a.npz", "b.npz", "cifar10.1_v6_data.npy"):
        report = cifarzoo.evaluate(model, array=tmp_path / name)
        assert report.labeled and report.n == 6 and report.labels.tolist() == labels.tolist(), name

    # Class names as labels work too; without labels the array is unlabeled.
    np.savez(tmp_path / "names.npz", images=images[:2], labels=np.array(["car", "frog"]))
    assert cifarzoo.evaluate(model, array=tmp_path / "names.npz").labels.tolist() == [1, 6]
    np.save(tmp_path / "unlabeled.npy", images)
    unlabeled = cifarzoo.evaluate(model, array=tmp_path / "unlabeled.npy")
    assert not unlabeled.labeled and unlabeled.n == 6 and unlabeled.ids == [str(i) for i in range(6)]


def test_array_in_another_size_and_mode_is_converted(tmp_path, rng) -> None:
    import torch

    from cifarzoo.data.preprocess import normalize

    torch.manual_seed(0)
    fm = cifarzoo.create_model("resnet26-fm", zero_init_last=False)  # 28x28 grayscale, CIFAR-sized colour arrays
    fm.eval()
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", images=images, labels=[0, 9, 1])
    report = cifarzoo.evaluate(fm, array=tmp_path / "c.npz")
    # What the model must have seen: each image made grayscale (ITU-R 601 luma) and scaled to 28x28 (the
    # shorter side is 32, so center-crop is a plain bilinear resize), done here by hand with PIL.
    cfg = fm.config.preprocess
    expected = np.stack([np.asarray(Image.fromarray(a).convert("L").resize((28, 28), Image.Resampling.BILINEAR))
                         for a in images])[..., None]
    assert expected.std() > 10  # real pixels, not a blank image that any conversion would match
    logits = fm.logits(normalize(expected, cfg))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    assert report.n == 3 and report.labels.tolist() == [0, 9, 1]
    assert report.pred.tolist() == probs.argmax(axis=1).tolist()
    np.testing.assert_allclose(report.confidence, probs.max(axis=1), rtol=1e-4)
    # A wrong conversion (the red channel instead of luma) would be visible at this tolerance.
    red = np.stack([np.asarray(Image.fromarray(a[..., 0]).resize((28, 28), Image.Resampling.BILINEAR))
                    for a in images])[..., None]
    red_logits = fm.logits(normalize(red, cfg))
    assert not np.allclose(red_logits, logits, atol=1e-3)


def test_array_files_are_never_unpickled_and_bad_ones_are_one_line_errors(model, tmp_path) -> None:
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "floats.npz", images=np.zeros((2, 32, 32, 3), np.float32), labels=[0, 1])
    np.savez(tmp_path / "nokey.npz", pixels=np.zeros((2, 32, 32, 3), np.uint8))
    np.savez(tmp_path / "range.npz", images=np.zeros((2, 32, 32, 3), np.uint8), labels=[0, 10])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    cases = {"objects.npy": "readable .npy", "floats.npz": "uint8", "nokey.npz": "found pixels",
             "range.npz": "label(s) 10", "junk.npz": "readable .npz", "missing.npy": "file not found",
             "x.txt": ".npz or .npy"}
    for name, reason in cases.items():
        with pytest.raises(CifarzooError, match=re.escape(reason)) as err:
            cifarzoo.evaluate(model, array=tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)


def test_exactly_one_source_and_a_path_for_the_model(c10_checkpoint, class_dir) -> None:
    with pytest.raises(CifarzooError, match="exactly one"):
        cifarzoo.evaluate(c10_checkpoint)
    with pytest.raises(CifarzooError, match="exactly one"):
        cifarzoo.evaluate(c10_checkpoint, custom_dir=class_dir, array="x.npy")
    assert cifarzoo.evaluate(str(c10_checkpoint), custom_dir=class_dir).n == 8  # a folder is loaded for you
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", class_dir, "--dataset", "cifar10")
    assert result.exit_code == 1 and "exactly one test set" in result.stderr


# ----------------------------------------------------------------------------------------------------------
# Unlabeled input -> predictions CSV


def test_unlabeled_flat_folder_writes_a_submission_csv(c10_checkpoint, tmp_path, rng) -> None:
    flat = tmp_path / "test"
    for i in (1, 2, 10):
        png(flat / f"{i}.png", rng)
    (flat / "broken.png").write_bytes(b"")
    out = tmp_path / "preds.csv"
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", flat, "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["id", "label"] and [r[0] for r in rows[1:]] == ["1", "2", "10"]  # natural order
    assert all(r[1] in C10 for r in rows[1:])
    assert "3 images predicted" in result.stdout and "1 file skipped" in result.stdout
    assert "broken.png: empty file" in result.stderr

    # Without --out the CSV goes to stdout (so `> preds.csv` works) and the summary to stderr.
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", flat)
    assert result.stdout.splitlines()[0] == "id,label" and len(result.stdout.splitlines()) == 4
    data = json.loads(run("eval", "--model", c10_checkpoint, "--custom-dir", flat, "--json").stdout)
    assert data["labeled"] is False and data["top1"] is None and len(data["predictions"]) == 3


# ----------------------------------------------------------------------------------------------------------
# Bad files


def _bad_and_odd_files(folder: Path, rng: np.random.Generator) -> tuple[dict[str, str], list[str]]:
    """Write every bad-file case into ``folder``; returns {name: expected reason} and the readable odd names."""
    folder.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(good, "PNG")
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(jpeg, "JPEG")  # under the pixel limit
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "text.png").write_text("this is a text file, not a PNG\n")
    os.symlink("loop.png", folder / "loop.png")  # points at itself
    png(folder / "huge.png", rng, size=64)  # over the (lowered) decompression-bomb limit
    png(folder / "big.png", rng, size=48)  # between the limit and twice it: PIL only warns there
    with open(os.fsencode(folder) + b"/empty-\xff\xfe.png", "wb"):
        pass
    bad = {
        "zero.png": "empty file",
        "truncated.png": "truncated",
        "truncated.jpg": "truncated",
        "text.png": "not an image",
        "loop.png": "symlink loop",
        "huge.png": "too large",
        "big.png": "too large",
        "empty-\\xff\\xfe.png": "empty file",
    }

    # Readable oddities: each must be evaluated, not skipped.
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    Image.fromarray(np.full((32, 32), 40000, np.uint16)).save(folder / "sixteen.png")
    palette = Image.new("P", (32, 32))
    palette.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    palette.paste(1, (0, 0, 16, 32))
    palette.save(folder / "palette-alpha.png", transparency=0)
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(folder / "gray.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    Image.fromarray(rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)).save(folder / "rotated.jpg", exif=exif)
    png(os.fsencode(folder) + b"/caf\xe9-latin1.png", rng)  # not UTF-8, but a fine image
    odd = ["animated", "cmyk", "sixteen", "palette-alpha", "gray", "rotated", "caf\\xe9-latin1"]
    return bad, odd


def test_bad_files_are_listed_and_the_rest_evaluated(model, c10_checkpoint, tmp_path, rng, monkeypatch) -> None:
    root = tmp_path / "set"
    bad, odd = _bad_and_odd_files(root / "cat", rng)
    png(root / "dog" / "fine.png", rng)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 32x32 = 1024 passes; 48x48 and 64x64 do not
    report = cifarzoo.evaluate(model, custom_dir=root, batch_size=4)  # several batches: the prefetch path
    reasons = {Path(s["path"]).name: s["reason"] for s in report.skipped}
    assert set(reasons) == set(bad)
    for name, reason in bad.items():
        assert reason in reasons[name], (name, reasons[name])
    # truncated.png and truncated.jpg share a stem, so ids keep their extensions here.
    assert sorted(os.path.splitext(i)[0] for i in report.ids) == sorted([f"cat/{name}" for name in odd] + ["dog/fine"])
    assert report.n == len(odd) + 1
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")  # undecodable names stay printable

    # --strict: the first bad file is a one-line error, exit 1, no traceback (CIFARZOO_DEBUG=1 shows it).
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", root, "--strict")
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "strict" in line and str(root) in line
    with pytest.raises(CifarzooError, match="strict"):
        cifarzoo.evaluate(model, custom_dir=root, strict=True)
    monkeypatch.setenv("CIFARZOO_DEBUG", "1")
    debug = run("eval", "--model", c10_checkpoint, "--custom-dir", root, "--strict")
    assert isinstance(debug.exception, CifarzooError)


def test_summary_line_counts_skipped_files_and_lists_them(c10_checkpoint, class_dir) -> None:
    (class_dir / "cats" / "bad.png").write_text("nope")
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", class_dir)
    assert result.exit_code == 0, result.output
    assert "n=8" in result.stdout.splitlines()[0] and "(1 file skipped)" in result.stdout.splitlines()[0]
    assert "warning: skipped" in result.stderr and "bad.png: not an image" in result.stderr
    assert "true \\ predicted" in result.stdout  # the confusion table


def test_permission_denied_is_reported(model, class_dir, monkeypatch) -> None:
    # Runs as root too, where chmod 000 changes nothing: the OS refusal is simulated at open().
    target = str(class_dir / "cats" / "0.png")
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if os.fspath(file) == target if isinstance(file, (str, os.PathLike)) else False:
            raise PermissionError(errno.EACCES, "Permission denied", target)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    report = cifarzoo.evaluate(model, custom_dir=class_dir)
    assert report.skipped == [{"path": target, "reason": "permission denied"}] and report.n == 7


def test_unlistable_folder_is_reported(class_dir) -> None:
    real_scandir = os.scandir
    locked = str(class_dir / "DOG")

    def refusing_scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", locked)
        return real_scandir(path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "scandir", refusing_scandir)
        testset = read_custom_dir(class_dir, C10)
    assert testset.skipped == [{"path": locked, "reason": "cannot list folder (permission denied)"}]


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not stop root from reading; "
                    "test_permission_denied_is_reported covers this path by simulating the refusal")
def test_chmod_000_file_is_skipped(model, class_dir) -> None:
    target = class_dir / "cats" / "0.png"
    target.chmod(0)
    try:
        report = cifarzoo.evaluate(model, custom_dir=class_dir)
    finally:
        target.chmod(0o644)
    assert report.skipped == [{"path": str(target), "reason": "permission denied"}]


# ----------------------------------------------------------------------------------------------------------
# Reports


def test_json_has_the_documented_keys(c10_checkpoint, class_dir) -> None:
    (class_dir / "DOG" / "zero.png").write_bytes(b"")
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", class_dir, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= REQUIRED_JSON_KEYS
    assert data["n"] == 8 and len(data["confusion"]) == 10 and set(data["per_class"]) == set(C10)
    assert set(data["per_class"]["cat"]) == {"precision", "recall", "f1", "support"}
    assert data["skipped"] == [{"path": str(class_dir / "DOG" / "zero.png"), "reason": "empty file"}]
    assert 0.0 <= data["ece"] <= 1.0 and sum(b["count"] for b in data["reliability"]) == 8


def test_report_folder_has_every_file(c10_checkpoint, class_dir, tmp_path) -> None:
    folder = tmp_path / "report"
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", class_dir, "--report", folder)
    assert result.exit_code == 0, result.output
    expected = {"report.json", "confusion.png", "reliability.png", "misclassified.png", "predictions.csv", "index.html"}
    assert {p.name for p in folder.iterdir()} == expected
    for name in ("confusion.png", "reliability.png", "misclassified.png"):
        with Image.open(folder / name) as img:
            assert img.format == "PNG" and img.width > 200
    assert set(json.loads((folder / "report.json").read_text())) >= REQUIRED_JSON_KEYS
    rows = list(csv.DictReader((folder / "predictions.csv").read_text().splitlines()))
    assert len(rows) == 8 and set(rows[0]) == {"id", "label", "prob", "true"}
    assert {r["true"] for r in rows} == {"automobile", "airplane", "cat", "dog"}


def test_misclassified_examples_are_bounded_and_most_confident_first(model, class_dir) -> None:
    report = cifarzoo.evaluate(model, custom_dir=class_dir, batch_size=3)
    wrong = int((report.pred != report.labels).sum())
    assert len(report.examples) == min(wrong, 64)
    confidences = [e.confidence for e in report.examples]
    assert confidences == sorted(confidences, reverse=True)
    assert all(e.image.shape == (32, 32, 3) and e.label != e.pred for e in report.examples)


# ----------------------------------------------------------------------------------------------------------
# TTA


def _asymmetric_logits(x: np.ndarray) -> np.ndarray:
    """A fixed linear "model" that is not flip-invariant: class scores from weighted pixel sums."""
    weights = np.random.default_rng(7).normal(size=(3, *x.shape[1:])).astype(np.float32)
    return np.einsum("nchw,kchw->nk", x, weights)


@pytest.mark.parametrize(("tta", "views"), [("none", 1), ("flip", 2), ("flip-translate", 6)])
def test_tta_shapes(rng, tta, views) -> None:
    x = rng.normal(size=(5, 3, 32, 32)).astype(np.float32)
    assert tta_batch(x, tta).shape == (views, 5, 3, 32, 32)
    assert tta_logits(_asymmetric_logits, x, tta).shape == (5, 3)
    assert tta in TTA_MODES


@pytest.mark.parametrize("tta", ["flip", "flip-translate"])
def test_flip_tta_is_invariant_to_mirroring_the_input(rng, tta) -> None:
    x = rng.normal(size=(4, 3, 32, 32)).astype(np.float32)
    mirrored = np.ascontiguousarray(x[..., ::-1])
    plain = tta_logits(_asymmetric_logits, x, "none")
    assert not np.allclose(plain, tta_logits(_asymmetric_logits, mirrored, "none"), atol=1e-3)  # the model is not
    np.testing.assert_allclose(tta_logits(_asymmetric_logits, x, tta), tta_logits(_asymmetric_logits, mirrored, tta),
                               rtol=1e-5, atol=1e-4)


def test_flip_tta_is_invariant_end_to_end(model, tmp_path, rng) -> None:
    pixels = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=pixels, labels=[0, 1])
    np.savez(tmp_path / "m.npz", images=pixels[:, :, ::-1], labels=[0, 1])
    a = cifarzoo.evaluate(model, array=tmp_path / "a.npz", tta="flip")
    m = cifarzoo.evaluate(model, array=tmp_path / "m.npz", tta="flip")
    np.testing.assert_allclose(a.confidence, m.confidence, rtol=1e-4)
    assert a.pred.tolist() == m.pred.tolist()


def test_torch_and_numpy_tta_agree(model, rng) -> None:
    import torch

    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    from cifarzoo.data.preprocess import normalize

    cfg = model.config.preprocess
    expected = tta_logits(model.logits, normalize(images, cfg), "flip-translate")
    got = TorchRunner(model.net).uint8_logits(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), cfg, tta="flip-translate"
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-3, atol=1e-4)


def test_cli_tta_modes(c10_checkpoint, class_dir) -> None:
    for mode in TTA_MODES:
        data = json.loads(
            run("eval", "--model", c10_checkpoint, "--custom-dir", class_dir, "--tta", mode, "--json").stdout
        )
        assert data["tta"] == mode and data["n"] == 8
    assert run("eval", "--model", c10_checkpoint, "--custom-dir", class_dir, "--tta", "rotate").exit_code == 2
    with pytest.raises(CifarzooError, match="flip-translate"):
        cifarzoo.evaluate(c10_checkpoint, custom_dir=class_dir, tta="rotate")


# ----------------------------------------------------------------------------------------------------------
# Streaming


def test_decode_stream_prefetches_the_next_chunk_in_order(tmp_path, rng) -> None:
    paths = [str(png(tmp_path / f"{i}.png", rng)) for i in range(7)]
    consumed = []

    def source():
        for i, path in enumerate(paths):
            consumed.append(i)
            yield path

    seen = []
    for chunk, decoded in decode_stream(source(), CIFAR10.preprocess_config(), batch_size=3, workers=2):
        # When a chunk arrives, the next one has already been taken from the source and submitted.
        seen.append((chunk, len(consumed)))
        assert all(isinstance(d, np.ndarray) for d in decoded)
    assert [c for c, _ in seen] == [paths[0:3], paths[3:6], paths[6:7]]
    assert [n for _, n in seen] == [6, 7, 7]


# ----------------------------------------------------------------------------------------------------------
# ONNX: no torch


@pytest.fixture(scope="module")
def onnx_checkpoint(c10_checkpoint, tmp_path_factory) -> Path:
    from cifarzoo.engines.export import export

    folder = tmp_path_factory.mktemp("onnx") / "ckpt"
    shutil.copytree(c10_checkpoint, folder)
    export(folder, fmt="onnx")
    return folder


def test_onnx_eval_never_imports_torch(onnx_checkpoint, class_dir, tmp_path) -> None:
    (class_dir / "cats" / "bad.png").write_bytes(b"")
    report_dir = tmp_path / "report"
    data = json.loads(run_cli_without_torch([
        "eval", "--model", str(onnx_checkpoint), "--backend", "onnx", "--custom-dir", str(class_dir),
        "--tta", "flip", "--report", str(report_dir), "--json",
    ]))
    assert data["n"] == 8 and data["skipped"][0]["reason"] == "empty file"
    assert (report_dir / "confusion.png").is_file()

"""``cifarzoo eval --corruptions``: the CIFAR-10-C grid on any test set, deterministic, batch-size independent.

The plumbing runs on tiny generated images and an untrained resnet26-c10; what the network is fed is checked
through a recording backend; one test runs the bundled resnet26-fm on real Fashion-MNIST test images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli_without_torch
from PIL import Image
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.config import PreprocessConfig
from cifarzoo.data.corruptions import CORRUPTIONS, RANDOM_CORRUPTIONS, SEVERITIES, corrupt_batch
from cifarzoo.data.datasets import SYSTEM_FASHION_MNIST
from cifarzoo.data.preprocess import normalize
from cifarzoo.data.specs import CIFAR10
from cifarzoo.data.testsets import TestSet
from cifarzoo.engines.robustness import corrupt_indexed, evaluate_robustness
from cifarzoo.errors import CifarzooError

runner = CliRunner()
needs_fm = pytest.mark.skipif(not (SYSTEM_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                              reason="needs Debian's dataset-fashion-mnist (make test installs it)")
NOISE = ("gaussian_noise", "shot_noise", "impulse_noise")


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def eval_json(*args: object) -> dict:
    result = run("eval", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Ten 32x32 RGB images with structure (gradients and a bar), so every corruption changes them."""
    yy, xx = np.mgrid[0:32, 0:32] / 31
    out = []
    for k in range(10):
        base = np.stack([xx, yy, 1 - xx], -1) * 150 + 50
        base[:, 4 + 2 * k : 7 + 2 * k] = 230
        out.append(base)
    return np.clip(np.asarray(out), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def array_set(c10_checkpoint, images, tmp_path_factory) -> Path:
    """An .npz whose labels are the untrained model's own clean predictions (clean top-1 is 100%)."""
    model = cifarzoo.load(c10_checkpoint, device="cpu", backend="auto")  # what the CLI's default loads
    labels = model.logits(normalize(images, model.config.preprocess)).argmax(1)
    path = tmp_path_factory.mktemp("robust") / "set.npz"
    np.savez(path, images=images, labels=labels)
    return path


# ----------------------------------------------------------------------------------------------------------
# The CLI


def test_all_gives_the_15x5_grid_with_its_summary(c10_checkpoint, array_set) -> None:
    report = eval_json("--model", c10_checkpoint, "--array", array_set, "--corruptions", "all")
    assert set(report) >= {"name", "n", "tta", "corruptions", "skipped", "ignored", "model", "backend"}
    assert report["n"] == 10 and report["skipped"] == []
    grid = report["corruptions"]
    assert set(grid) == {"clean_top1", "mean_corruption_accuracy", "relative_robustness", "seed", "severities",
                         "names", "top1", "mean_top1"}
    assert grid["names"] == list(CORRUPTIONS) == list(grid["top1"]) and len(CORRUPTIONS) == 15
    assert grid["severities"] == [1, 2, 3, 4, 5] and grid["seed"] == 0
    cells = [grid["top1"][name][str(s)] for name in CORRUPTIONS for s in SEVERITIES]
    assert len(cells) == 75 and all(0.0 <= c <= 100.0 for c in cells)
    assert grid["clean_top1"] == 100.0  # the labels are the model's own predictions
    assert grid["mean_corruption_accuracy"] == pytest.approx(np.mean(cells))
    assert grid["relative_robustness"] == pytest.approx(grid["mean_corruption_accuracy"] / 100.0)
    for name in CORRUPTIONS:
        assert grid["mean_top1"][name] == pytest.approx(np.mean([grid["top1"][name][str(s)] for s in SEVERITIES]))


def test_one_severity_and_the_text_grid(c10_checkpoint, array_set) -> None:
    args = ("--model", c10_checkpoint, "--array", array_set, "--corruptions", "fog,Gaussian-Noise", "--severity", 3)
    grid = eval_json(*args)["corruptions"]
    assert grid["severities"] == [3] and grid["names"] == ["fog", "gaussian_noise"]
    assert all(list(cells) == ["3"] for cells in grid["top1"].values())
    result = run("eval", *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "clean top-1 100.00%" in lines[0] and "mCA" in lines[0] and "relative robustness" in lines[0]
    assert lines[1].split() == ["corruption", "sev", "3", "mean"]
    assert [line.split()[0] for line in lines[3:]] == ["fog", "gaussian_noise", "mean"]


def test_same_seed_same_numbers_whatever_the_batch_size(c10_checkpoint, array_set) -> None:
    args = ("--model", c10_checkpoint, "--array", array_set, "--corruptions", ",".join(RANDOM_CORRUPTIONS),
            "--severity", "2,5", "--seed", 7)
    first = eval_json(*args, "--batch-size", 3)["corruptions"]
    assert eval_json(*args, "--batch-size", 3)["corruptions"] == first
    assert eval_json(*args, "--batch-size", 64)["corruptions"] == first
    assert first["seed"] == 7


def test_report_writes_the_heatmap_and_the_grid(c10_checkpoint, array_set, tmp_path) -> None:
    args = ("--model", c10_checkpoint, "--array", array_set, "--corruptions", "contrast,pixelate")
    report = eval_json(*args, "--report", tmp_path / "rep")
    with Image.open(tmp_path / "rep" / "corruptions.png") as png:
        assert png.format == "PNG" and png.size[0] > 300 and png.size[1] > 150
    assert json.loads((tmp_path / "rep" / "corruptions.json").read_text())["corruptions"] == report["corruptions"]
    assert not (tmp_path / "rep" / "report.json").exists()  # the clean report's files are not written


def test_a_folder_of_files_is_corrupted_after_decoding(c10_checkpoint, images, tmp_path) -> None:
    for k, image in enumerate(images[:6]):
        folder = tmp_path / "set" / ("cat" if k % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{k}.png")
    (tmp_path / "set" / "cat" / "broken.png").write_bytes(b"not a png")
    result = run("eval", "--model", c10_checkpoint, "--custom-dir", tmp_path / "set", "--corruptions", "snow",
                 "--severity", 1, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 6 and [s["path"].endswith("broken.png") for s in report["skipped"]] == [True]
    assert list(report["corruptions"]["top1"]["snow"]) == ["1"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--corruptions", "gaussian_noise,haze"), "unknown corruption 'haze'"),
        (("--corruptions", "all", "--severity", "6"), "invalid severity '6'"),
        (("--corruptions", "fog", "--severity", "0-3"), "invalid severity '0-3'"),
        (("--severity", "3"), "--severity needs --corruptions"),
    ],
)
def test_bad_names_and_severities_are_one_line_before_the_model_loads(args, expected, array_set) -> None:
    # The model does not exist: the option is checked first, so its error is the one shown.
    result = run("eval", "--model", "./no-such-model", "--array", array_set, *args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line
    if "corruption '" in expected:
        assert all(name in line for name in CORRUPTIONS)
    elif "severity '" in expected:
        assert "1 to 5" in line


def test_the_onnx_path_never_imports_torch(tmp_path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8)
    np.savez(tmp_path / "gray.npz", images=images, labels=np.arange(8) % 10)
    out = run_cli_without_torch(["eval", "--array", str(tmp_path / "gray.npz"), "--corruptions", "fog,snow",
                                 "--severity", "1", "--backend", "onnx", "--json"])
    assert json.loads(out)["corruptions"]["names"] == ["fog", "snow"]


def test_a_negative_seed_and_out_are_refused(c10_checkpoint, array_set, tmp_path) -> None:
    result = run("eval", "--model", c10_checkpoint, "--array", array_set, "--corruptions", "fog", "--seed", -1)
    assert result.exit_code == 2 and "--seed" in result.output
    result = run("eval", "--model", c10_checkpoint, "--array", array_set, "--corruptions", "fog",
                 "--out", tmp_path / "p.csv")
    assert result.exit_code == 1 and "--out" in result.stderr and not (tmp_path / "p.csv").exists()


# ----------------------------------------------------------------------------------------------------------
# The engine: what the network is fed


class Recorder:
    """A backend that predicts class 0 and keeps every normalised batch it was given."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        return np.eye(10, dtype=np.float32)[np.zeros(len(batch), np.int64)]


def fed(images: np.ndarray, *, seed: int, batch_size: int, names: tuple[str, ...], levels: tuple[int, ...]):
    """``{cell: the whole stream the network saw for it}``, with ``"clean"`` for the uncorrupted pass."""
    cfg = PreprocessConfig(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    testset = TestSet.from_arrays(images, np.zeros(len(images), np.int64), CIFAR10.classes, name="gen")
    record = Recorder()
    report = evaluate_robustness(record, cfg, testset, corruptions=names, severities=levels, seed=seed,
                                 batch_size=batch_size)
    cells = ["clean", *[(name, level) for name in names for level in levels]]
    per_batch = [record.batches[i : i + len(cells)] for i in range(0, len(record.batches), len(cells))]
    return report, {cell: np.concatenate([b[k] for b in per_batch]) for k, cell in enumerate(cells)}


def test_the_network_sees_the_same_corrupted_stream_for_a_seed_whatever_the_batching(images) -> None:
    names, levels = (*NOISE, "glass_blur", "contrast"), (1, 5)
    report, base = fed(images, seed=0, batch_size=10, names=names, levels=levels)
    assert report.clean_top1 == 100.0 and report.mean_corruption_accuracy == 100.0  # labels are all class 0
    assert report.relative_robustness == 1.0
    for batch_size in (3, 4):
        _, other = fed(images, seed=0, batch_size=batch_size, names=names, levels=levels)
        assert all(np.array_equal(base[cell], other[cell]) for cell in base)
    _, reseeded = fed(images, seed=1, batch_size=10, names=names, levels=levels)
    for cell in base:
        changed = not np.array_equal(base[cell], reseeded[cell])
        assert changed == (cell != "clean" and cell[0] in RANDOM_CORRUPTIONS), cell
    # what was fed is the corruption of the images at the model's size, normalised
    expected = normalize(corrupt_batch(images, "gaussian_noise", 5, seed=0), PreprocessConfig(
        input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    assert np.array_equal(base[("gaussian_noise", 5)], expected)
    assert not np.array_equal(base[("gaussian_noise", 5)], base["clean"])


def test_skipped_images_keep_the_others_draws(images) -> None:
    kept = np.array([0, 1, 2, 5, 6, 9])
    whole = corrupt_batch(images, "shot_noise", 4, seed=3)
    assert np.array_equal(corrupt_indexed(images[kept], kept, "shot_noise", 4, seed=3), whole[kept])


def test_an_unlabeled_set_is_refused(images) -> None:
    testset = TestSet.from_arrays(images, None, CIFAR10.classes, name="unlabeled")
    cfg = PreprocessConfig(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    with pytest.raises(CifarzooError, match="needs labelled images"):
        evaluate_robustness(Recorder(), cfg, testset)


# ----------------------------------------------------------------------------------------------------------
# Real data


@needs_fm
def test_bundled_model_loses_accuracy_under_heavy_noise_on_real_fashion_mnist(tmp_path) -> None:
    from cifarzoo.data.datasets import load_dataset

    test = load_dataset("fashion-mnist", "test")
    np.savez(tmp_path / "fm.npz", images=test.images[:400], labels=test.labels[:400])
    report = eval_json("--model", "resnet26-fm", "--array", tmp_path / "fm.npz", "--corruptions", "gaussian_noise",
                       "--severity", "1,5")
    grid = report["corruptions"]
    assert report["n"] == 400 and grid["clean_top1"] > 88.0
    noisy = grid["top1"]["gaussian_noise"]
    assert noisy["5"] < noisy["1"] < grid["clean_top1"]
    assert noisy["5"] < grid["clean_top1"] - 20.0

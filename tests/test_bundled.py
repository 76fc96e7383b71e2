"""The bundled offline default: intact, consistent with the registry, and its accuracy reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cifarzoo
from cifarzoo.data.datasets import SYSTEM_FASHION_MNIST
from cifarzoo.io.resolve import resolve_model_dir
from cifarzoo.registry import DEFAULT_MODEL, ZOO
from cifarzoo.releases import round_metric

REPO = Path(__file__).resolve().parents[1]
BUNDLED = [name for name, entry in ZOO.items() if entry.weights.kind == "bundled"]
needs_fm = pytest.mark.skipif(not (SYSTEM_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                              reason="needs Debian's dataset-fashion-mnist (make test installs it)")


def test_default_model_is_bundled_and_small() -> None:
    assert DEFAULT_MODEL in BUNDLED
    folder = resolve_model_dir(DEFAULT_MODEL)  # verifies every pinned sha256
    # Every bundled model together: the budget for weights inside the package.
    assert sum(p.stat().st_size for p in folder.parent.rglob("*") if p.is_file()) <= 64_000_000


@pytest.mark.parametrize("name", BUNDLED)
def test_registry_metrics_are_the_checkpoints(name: str) -> None:
    folder = resolve_model_dir(name)
    config = json.loads((folder / "config.json").read_text())
    # The registry reports metrics at their precision (round_metric); the file may hold the full floats.
    recorded = {key: round_metric(key, value) for key, value in config["metrics"].items()}
    assert dict(ZOO[name].metrics) == recorded and config["name"] == name
    assert ZOO[name].top1 is not None and ZOO[name].weights.available


@pytest.mark.parametrize("name", BUNDLED)
def test_backends_load_the_bundle_and_agree(name: str) -> None:
    """The bundle's safetensors and its model.onnx are the same model: same classes, same logits."""
    import numpy as np

    from cifarzoo.data.preprocess import normalize

    torch_model, onnx_model = cifarzoo.load(name, device="cpu"), cifarzoo.load(name, device="cpu", backend="onnx")
    assert torch_model.classes == onnx_model.classes == ZOO[name].dataset.classes
    assert torch_model.config == onnx_model.config
    pre = torch_model.config.preprocess
    images = np.random.default_rng(0).integers(0, 256, (64, pre.input_size, pre.input_size, pre.in_chans), np.uint8)
    batch = normalize(images, pre)
    expected, got = torch_model.logits(batch), onnx_model.logits(batch)
    assert np.abs(expected - got).max() <= 1e-4 * np.abs(expected).max()
    assert (expected.argmax(1) == got.argmax(1)).all()


@needs_fm
def test_eval_reproduces_the_recorded_accuracy_exactly() -> None:
    from typer.testing import CliRunner

    from cifarzoo.cli import app

    result = CliRunner().invoke(app, ["eval", "--dataset", "fashion-mnist", "--split", "test", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # Two decimals of a percentage of 10,000 images lose nothing, so this is still an exact comparison.
    assert report["n"] == 10_000 and round(report["top1"], 2) == ZOO[DEFAULT_MODEL].metrics["test_top1"]
    # Temperature scaling, fitted on the validation split by the release, brings the test ECE to 0.02 or less
    # (from 0.075 uncalibrated); the registry records both.
    calibration = report["calibration"]
    assert calibration["after"]["ece"] <= 0.02 < calibration["before"]["ece"]
    assert round(calibration["after"]["ece"], 4) == ZOO[DEFAULT_MODEL].metrics["test_ece"]
    assert round(calibration["before"]["ece"], 4) == ZOO[DEFAULT_MODEL].metrics["test_uncalibrated_ece"]


@pytest.mark.parametrize("name", BUNDLED)
def test_predict_gives_the_calibrated_probabilities_on_every_backend(name: str) -> None:
    import numpy as np

    from cifarzoo.data.preprocess import normalize
    from cifarzoo.runtime.predictor import softmax

    torch_model, onnx_model = cifarzoo.load(name, device="cpu"), cifarzoo.load(name, device="cpu", backend="onnx")
    temperature = torch_model.config.temperature
    assert torch_model.config.calibration is not None and temperature != 1.0
    pre = torch_model.config.preprocess
    images = list(np.random.default_rng(1).integers(0, 256, (8, pre.input_size, pre.input_size), np.uint8))
    calibrated = softmax(torch_model.logits(normalize(np.stack(images)[..., None], pre)) / temperature).max(axis=1)
    for model in (torch_model, onnx_model):
        probs = [p.prob for p in model.predict(images)]
        np.testing.assert_allclose(probs, calibrated, atol=1e-4)


@needs_fm
def test_eval_on_the_val_split_reproduces_the_recorded_val_accuracy() -> None:
    """`eval --split val`: the seeded 5,000 training images the run chose its best epoch on (ONNX, no TTA)."""
    from typer.testing import CliRunner

    from cifarzoo.cli import app

    result = CliRunner().invoke(app, ["eval", "--dataset", "fashion-mnist", "--split", "val", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["name"] == "fashion-mnist:val" and report["n"] == 5_000 and report["tta"] == "none"
    assert round(report["top1"], 2) == ZOO[DEFAULT_MODEL].metrics["val_top1"]


@needs_fm
def test_int8_on_the_trained_model_keeps_top1_on_images_calibration_never_saw(tmp_path) -> None:
    """int8 is calibrated on 512 training images; its accuracy change is measured on the test split (other
    images by construction), and its parity on 256 training images outside the calibration set."""
    import shutil

    from cifarzoo.engines.export import export
    from cifarzoo.runtime.onnx import OnnxModel

    folder = tmp_path / "fm"
    shutil.copytree(resolve_model_dir(DEFAULT_MODEL), folder)
    result = export(folder, fmt="onnx", dtype="int8", check=True)  # raises below 99% top-1 agreement
    assert result.parity.n == 256 and result.parity.top1_agreement >= 0.99
    # The bundled model.onnx stores its weights as fp16 (2 bytes each); int8 needs 1 byte each, plus the scales.
    assert result.path.stat().st_size < (folder / "model.onnx").stat().st_size * 2 / 3
    fp32 = cifarzoo.evaluate(OnnxModel.from_file(folder / "model.onnx", device="cpu"), "fashion-mnist")
    int8 = cifarzoo.evaluate(OnnxModel.from_file(result.path, device="cpu"), "fashion-mnist")
    assert fp32.n == int8.n == 10_000 and round(fp32.top1, 2) == ZOO[DEFAULT_MODEL].metrics["test_top1"]
    assert abs(int8.top1 - fp32.top1) <= 0.5  # points: the bar docs/benchmarks.md holds int8 to


@pytest.mark.parametrize("name", BUNDLED)
def test_every_release_records_its_calibration_and_info_shows_it(name: str) -> None:
    """The release script fitted a temperature on the validation split: it lowers the test ECE."""
    metrics = ZOO[name].metrics
    assert "test_ece" in metrics and "test_uncalibrated_ece" in metrics
    assert metrics["test_ece"] < metrics["test_uncalibrated_ece"]
    shown = _info(name)
    assert f"test_ece={metrics['test_ece']}" in shown


@pytest.mark.parametrize("name", BUNDLED)
def test_a_release_records_its_corruption_grid_or_none_and_info_shows_it(name: str) -> None:
    """A release measured the corruption grid (bundle.py, or add_robustness.py after ``--skip-corruptions``):
    docs/robustness/<name>/ holds it, and its clean top-1 and mean are the release's test_top1 and test_mca. A
    release without one records no mCA and leaves no grid file behind that would pass for its own."""
    metrics = ZOO[name].metrics
    grid_file = REPO / "docs" / "robustness" / name / "corruptions.json"
    if "test_mca" not in metrics:
        assert "test_mca_relative" not in metrics and not grid_file.exists()
        assert "test_mca" not in _info(name)
        return
    assert 0 < metrics["test_mca"] < metrics["test_top1"] and "test_mca_relative" in metrics
    grid = json.loads(grid_file.read_text())["corruptions"]
    cells = [value for row in grid["top1"].values() for value in row.values()]
    assert len(grid["names"]) == 15 and grid["severities"] == [1, 2, 3, 4, 5] and len(cells) == 75
    assert round_metric("test_mca", sum(cells) / len(cells)) == metrics["test_mca"]
    assert round_metric("test_top1", grid["clean_top1"]) == metrics["test_top1"]
    assert f"test_mca={metrics['test_mca']}" in _info(name)


def test_the_offline_default_records_its_corruption_grid() -> None:
    assert "test_mca" in ZOO[DEFAULT_MODEL].metrics


def _info(name: str) -> str:
    from typer.testing import CliRunner

    from cifarzoo.cli import app

    shown = CliRunner().invoke(app, ["info", name])
    assert shown.exit_code == 0, shown.output
    return shown.output

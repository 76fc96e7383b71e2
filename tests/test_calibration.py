"""Temperature scaling: fitted by NLL with L-BFGS, stored in config.json and model.onnx, applied by every backend
before the softmax, reported before and after by eval, and never changing a prediction's rank."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.config import CalibrationConfig, ModelConfig
from cifarzoo.engines.calibrate import calibration_metrics, fit_calibration, fit_temperature
from cifarzoo.engines.evaluate import compute_report
from cifarzoo.engines.export import export
from cifarzoo.errors import ConfigError
from cifarzoo.io.layout import CONFIG_NAME, ONNX_CONFIG_KEY, ONNX_NAME
from cifarzoo.registry import DEFAULT_MODEL
from cifarzoo.runtime.onnx import OnnxModel
from cifarzoo.runtime.predictor import softmax

runner = CliRunner()


def sampled(temperature: float, n: int = 20_000, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature): ``temperature`` is the calibrated one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (n, classes))
    probs = softmax(logits / temperature)
    labels = (probs.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_that_generated_the_labels(true_temperature: float) -> None:
    logits, labels = sampled(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    # It is the NLL minimum: a step either way is worse.
    nll = calibration_metrics(logits, labels, fitted)["nll"]
    assert nll < calibration_metrics(logits, labels, fitted * 1.1)["nll"]
    assert nll < calibration_metrics(logits, labels, fitted / 1.1)["nll"]


def test_fit_calibration_records_the_set_and_lowers_ece_and_nll() -> None:
    logits, labels = sampled(2.0)  # an over-confident model: its logits are twice what they should be
    calibration = fit_calibration(logits, labels, fitted_on="synthetic:val")
    assert calibration.fitted_on == "synthetic:val" and calibration.n == len(labels)
    assert calibration.ece_after < 0.02 < calibration.ece_before
    assert calibration.nll_after < calibration.nll_before
    assert calibration.ece_after == pytest.approx(calibration_metrics(logits, labels, calibration.temperature)["ece"],
                                                  abs=1e-6)


def test_too_few_or_broken_logits_are_refused() -> None:
    logits, labels = sampled(1.0, n=50)
    with pytest.raises(cifarzoo.CifarzooError, match="at least 100 labelled images"):
        fit_temperature(logits, labels)
    logits, labels = sampled(1.0, n=200)
    logits[3, 2] = np.nan
    with pytest.raises(cifarzoo.CifarzooError, match="non-finite logits"):
        fit_temperature(logits, labels)


def test_temperature_moves_probabilities_never_rankings() -> None:
    logits, labels = sampled(0.7, n=3000)
    classes = [str(i) for i in range(10)]
    plain = compute_report(logits, labels, classes)
    scaled = compute_report(logits, labels, classes, temperature=0.7)
    assert (scaled.top1, scaled.top5, scaled.confusion) == (plain.top1, plain.top5, plain.confusion)
    assert scaled.ece != plain.ece and scaled.loss < plain.loss
    assert plain.calibration_summary() is None and plain.to_dict()["calibration"] is None
    summary = scaled.to_dict()["calibration"]
    assert summary["temperature"] == 0.7
    assert summary["before"] == pytest.approx({"ece": plain.ece, "nll": plain.loss, "brier": plain.brier})
    assert summary["after"] == pytest.approx({"ece": scaled.ece, "nll": scaled.loss, "brier": scaled.brier})
    assert len(scaled.reliability_uncalibrated) == len(scaled.reliability)
    np.testing.assert_array_equal(scaled.logits, logits.astype(np.float32))  # raw: what a refit needs


def config_with(folder: Path, temperature: float | None) -> ModelConfig:
    config = ModelConfig.load(folder / CONFIG_NAME)
    calibration = None if temperature is None else CalibrationConfig(temperature=temperature, fitted_on="t", n=100)
    return config.replace(calibration=calibration)


def test_the_calibration_round_trips_through_config_json_and_bad_values_are_one_line(tmp_path) -> None:
    folder = tmp_path / "ckpt"
    cifarzoo.create_model("resnet26-fm").save_pretrained(folder)
    config = config_with(folder, 0.8)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["calibration"]["temperature"] == 0.8 and ModelConfig.from_dict(data) == config
    assert ModelConfig.from_dict({**data, "calibration": None}).temperature == 1.0
    assert ModelConfig.from_dict({**data, "calibration": {"temperature": 2}}).temperature == 2.0
    bad = [({"temperature": 0}, "from 0.001 to 1000"), ({"temperature": 1e9}, "from 0.001 to 1000"),
           ({"temperature": "hot"}, "must be a number"), ({"temperature": 1, "ece_after": "low"}, "finite number"),
           ({"temperatur": 1}, "unknown keys"), ([1.0], "must be a table")]
    for value, message in bad:
        with pytest.raises(ConfigError, match=message) as err:
            ModelConfig.from_dict({**data, "calibration": value})
        assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def calibrated_folder(tmp_path_factory) -> Path:
    """A random-weight resnet26-fm folder with an ONNX export, calibrated with temperature 0.5."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("cal") / "ckpt"
    cifarzoo.create_model("resnet26-fm", zero_init_last=False).save_pretrained(folder)
    (folder / CONFIG_NAME).write_text(json.dumps(config_with(folder, 0.5).to_dict()))
    export(folder, fmt="onnx")
    return folder


def test_every_backend_applies_the_temperature_before_the_softmax(calibrated_folder) -> None:
    images = [np.random.default_rng(i).integers(0, 256, (28, 28), dtype=np.uint8) for i in range(6)]
    batch = np.random.default_rng(9).standard_normal((4, 1, 28, 28)).astype(np.float32)
    torch_model = cifarzoo.load(calibrated_folder, backend="torch", device="cpu")
    assert torch_model.config.temperature == 0.5
    logits = torch_model.logits(batch)
    expected = softmax(logits / 0.5)
    from cifarzoo.runtime.predictor import predictions_from_logits

    rows = predictions_from_logits(logits, torch_model.classes, 10, [None] * 4, torch_model.config.temperature)
    got = np.array([[dict(r.topk)[c] for c in torch_model.classes] for r in rows])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    backends = {
        "torch": torch_model,
        "onnx": cifarzoo.load(calibrated_folder, backend="onnx", device="cpu"),
        "torchscript": None,
    }
    export(calibrated_folder, fmt="torchscript")
    backends["torchscript"] = cifarzoo.load(calibrated_folder, backend="torchscript", device="cpu", trust_code=True)
    answers = {name: model.predict(images, topk=10) for name, model in backends.items()}
    for name, preds in answers.items():
        assert backends[name].config.temperature == 0.5, name
        for pred, ref in zip(preds, answers["torch"]):
            assert pred.label == ref.label
            assert pred.prob == pytest.approx(ref.prob, abs=1e-4), name
    # Without the calibration the same network is less confident (T = 0.5 sharpens): the temperature did act.
    uncalibrated = shutil.copytree(calibrated_folder, calibrated_folder.parent / "plain")
    (uncalibrated / CONFIG_NAME).write_text(json.dumps(config_with(uncalibrated, None).to_dict()))
    plain = cifarzoo.load(uncalibrated, backend="torch", device="cpu").predict(images)
    assert [p.label for p in plain] == [p.label for p in answers["torch"]]
    assert all(p.prob < q.prob for p, q in zip(plain, answers["torch"]))


def fm_array(path: Path, n: int = 160) -> Path:
    rng = np.random.default_rng(3)
    np.savez(path, images=rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), labels=rng.integers(0, 10, n))
    return path


def test_cli_calibrate_updates_a_folder_and_its_onnx_file_in_place(calibrated_folder, tmp_path) -> None:
    folder = shutil.copytree(calibrated_folder, tmp_path / "model")
    data = fm_array(tmp_path / "set.npz")
    result = runner.invoke(app, ["calibrate", str(folder), "--array", str(data), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["folder"] == str(folder)
    calibration = answer["calibration"]
    assert calibration["fitted_on"] == "set.npz" or calibration["fitted_on"].endswith("set.npz")
    assert calibration["n"] == 160 and calibration["nll_after"] <= calibration["nll_before"]
    assert ModelConfig.load(folder / CONFIG_NAME).calibration == CalibrationConfig(**calibration)
    # The ONNX file carries it too: copied alone, without config.json beside it, it still calibrates.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(folder / ONNX_NAME, alone / "model.onnx")
    assert OnnxModel.from_file(alone / "model.onnx", device="cpu").config.calibration == CalibrationConfig(
        **calibration
    )
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(folder / ONNX_NAME)).metadata_props}
    assert json.loads(meta[ONNX_CONFIG_KEY])["calibration"]["temperature"] == calibration["temperature"]
    # A refit starts from the raw logits, whatever temperature the model had: the same set gives the same fit.
    again = runner.invoke(app, ["calibrate", str(folder), "--array", str(data), "--json"])
    assert math.isclose(json.loads(again.stdout)["calibration"]["temperature"], calibration["temperature"],
                        rel_tol=1e-4)


def test_cli_calibrate_writes_zoo_models_only_to_a_new_out_folder(tmp_path) -> None:
    data = fm_array(tmp_path / "set.npz")
    refused = runner.invoke(app, ["calibrate", DEFAULT_MODEL, "--array", str(data)])
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: {DEFAULT_MODEL}: a zoo model is not changed in place; write the calibrated copy with --out DIR"
    ]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    refused = runner.invoke(app, ["calibrate", DEFAULT_MODEL, "--array", str(data), "--out", str(taken)])
    assert refused.exit_code == 1 and "already exists and is not empty" in refused.stderr
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    none = runner.invoke(app, ["calibrate", DEFAULT_MODEL, "--out", str(tmp_path / "x")])
    assert none.exit_code == 1 and "exactly one test set" in none.stderr and not (tmp_path / "x").exists()

    out = tmp_path / "copy"
    done = runner.invoke(app, ["calibrate", DEFAULT_MODEL, "--array", str(data), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("temperature ") and f"wrote {out}" in done.stdout
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json"}
    assert cifarzoo.load(out, device="cpu").config.calibration.n == 160


def test_eval_json_shows_before_and_after_and_the_same_top1(calibrated_folder, tmp_path) -> None:
    data = fm_array(tmp_path / "set.npz", n=200)
    result = runner.invoke(app, ["eval", "--model", str(calibrated_folder), "--array", str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["calibration"]["temperature"] == 0.5
    assert set(report["calibration"]["before"]) == set(report["calibration"]["after"]) == {"ece", "nll", "brier"}
    after = report["calibration"]["after"]
    assert report["ece"] == after["ece"] and report["loss"] == after["nll"]
    text = runner.invoke(app, ["eval", "--model", str(calibrated_folder), "--array", str(data)])
    assert "calibrated (temperature 0.5000): ECE " in text.stdout

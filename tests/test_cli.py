"""The command line, through typer's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cifarzoo.cli import app
from cifarzoo.registry import ZOO

runner = CliRunner()
CLI = [sys.executable, "-m", "cifarzoo"]


def run(*args: str):
    return runner.invoke(app, list(args))


def test_list_shows_every_entry() -> None:
    result = run("list")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()[2:]]
    assert names == list(ZOO)
    for family in ("resnet", "plain"):
        for depth in (26, 34, 50):
            for tag in ("c10", "c100"):
                assert f"{family}{depth}-{tag}" in names


def test_list_json_has_the_table_fields() -> None:
    result = run("list", "resnet*-c10", "--json")
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["resnet26-c10", "resnet34-c10", "resnet50-c10"]
    assert set(rows[0]) >= {"name", "params", "gflops", "top1", "weights"}
    assert rows[2]["params"] == ZOO["resnet50-c10"].num_params


def test_info_text_and_json() -> None:
    text = run("info", "resnet50-c10").stdout
    assert "bottleneck blocks, depths [3, 4, 6, 3], widths [32, 64, 128, 208]" in text
    assert "0.247, 0.2435, 0.2616" in text and "4,725,354" in text
    data = json.loads(run("info", "plain26-c100", "--json").stdout)
    assert data["architecture"]["residual"] is False and data["num_classes"] == 100


def test_unknown_name_is_one_line_without_traceback() -> None:
    result = run("info", "resnet50-c1")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: unknown model 'resnet50-c1'; did you mean resnet50-c10, resnet50-c100, tv_resnet50-c10?"
    ]


def test_predict_table_and_json(c10_checkpoint, image_dir) -> None:
    result = run("predict", str(image_dir), "--model", str(c10_checkpoint), "--topk", "3")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 + 3  # header, rule, three images (one in a subfolder)

    result = run("predict", str(image_dir / "*.png"), "--model", str(c10_checkpoint), "--json", "-k", "3")
    preds = json.loads(result.stdout)
    assert [Path(p["path"]).name for p in preds] == ["a.png", "b.png"]
    classes = ZOO["resnet26-c10"].dataset.classes
    for p in preds:
        # "model": the resolved source; "backend": what ran (onnx: the folder's cached export)
        assert set(p) == {"path", "label", "index", "prob", "topk", "model", "backend"} and p["backend"] == "onnx"
        assert classes[p["index"]] == p["label"] == p["topk"][0]["label"]
        probs = [t["prob"] for t in p["topk"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and probs[0] == p["prob"]


def test_predict_matches_the_python_api(c10_checkpoint, image_dir) -> None:
    import cifarzoo

    paths = sorted(str(p) for p in image_dir.glob("*.png"))
    api = cifarzoo.load(c10_checkpoint).predict(paths, topk=2)
    cli = json.loads(run("predict", *paths, "--model", str(c10_checkpoint), "--json", "-k", "2").stdout)
    assert [(p.label, round(p.prob, 5)) for p in api] == [(p["label"], round(p["prob"], 5)) for p in cli]


def test_predict_keeps_going_past_bad_files(c10_checkpoint, image_dir) -> None:
    (image_dir / "broken.png").write_text("not an image")
    missing = image_dir / "missing.png"
    result = run("predict", str(image_dir), str(missing), "--model", str(c10_checkpoint), "--json")
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)) == 3  # the three good images still predicted
    errors = result.stderr.strip().splitlines()
    assert f"error: {missing}: file not found" in errors
    assert f"error: {image_dir / 'broken.png'}: not an image, or an unsupported format" in errors
    assert errors[-1] == "error: 2 input(s) failed; 3 predicted"


def test_predict_without_weights_names_the_problem() -> None:
    result = run("predict", "x.png", "--model", "resnet50-c10")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: resnet50-c10 has no released weights yet")


def test_predict_subprocess_json(c10_checkpoint, tmp_path) -> None:
    image = tmp_path / "one.png"
    Image.new("RGB", (48, 40), (10, 200, 30)).save(image)  # not 32x32: exercises the resize policy too
    out = subprocess.run(
        [*CLI, "predict", str(image), "--model", str(c10_checkpoint), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    (pred,) = json.loads(out.stdout)
    assert pred["path"] == str(image) and len(pred["topk"]) == 5
    # The exact answer, computed here from the network's logits: the model's own preprocessing of the file, a
    # softmax, and the five largest probabilities in order.
    import cifarzoo
    from cifarzoo.data.preprocess import preprocess

    model = cifarzoo.load(c10_checkpoint, device="cpu")
    logits = model.logits(preprocess([image], model.config.preprocess))[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs, kind="stable")[:5]
    classes = ZOO["resnet26-c10"].dataset.classes
    assert [t["label"] for t in pred["topk"]] == [classes[i] for i in top]
    np.testing.assert_allclose([t["prob"] for t in pred["topk"]], probs[top], rtol=1e-5, atol=1e-7)
    assert pred["index"] == top[0] and pred["prob"] == pred["topk"][0]["prob"]


def test_debug_env_shows_traceback(tmp_path) -> None:
    quiet = subprocess.run([*CLI, "info", "nope-c10"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr and quiet.stderr.startswith("error: ")
    loud = subprocess.run(
        [*CLI, "info", "nope-c10"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "CIFARZOO_DEBUG": "1"},
    )
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "UnknownModelError" in loud.stderr


def test_console_script_is_installed() -> None:
    script = shutil.which("cifarzoo", path=str(Path(sys.executable).parent))
    assert script is not None
    out = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    import cifarzoo

    assert out.stdout.strip() == cifarzoo.__version__

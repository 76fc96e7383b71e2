"""``cifarzoo publish``: the repo folder file by file, the model card, and the upload up to the HfApi boundary.

One real build (ONNX, TorchScript and int8 on real Fashion-MNIST, all parity-checked) serves the module; the
upload test reuses its exports.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tomllib
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.config import ModelConfig
from cifarzoo.engines import publish as publish_engine
from cifarzoo.engines.publish import group_metrics, render_model_card, split_metric_key
from cifarzoo.errors import CifarzooError
from cifarzoo.io.checkpoint import load_weights, save_checkpoint
from cifarzoo.registry import ZOO
from cifarzoo.runtime.onnx import OnnxModel
from cifarzoo.runtime.torchscript import TorchScriptModel
from cifarzoo.training import run_files
from cifarzoo.training.recipe import Recipe, load_recipe

REPO = "someone/resnet26-fm"
ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "hf_SENTINELdoNotLeak1234567890abcdef"
METRICS = {
    "val_top1": 91.24, "val_loss": 0.2875, "best_epoch": 14, "epochs": 15,
    "test_top1": 90.51, "test_top5": 99.83, "test_loss": 0.3102, "test_n": 10000,
    "test_top1_flip_tta": 90.93, "photos_top1": 71.0, "photos_n": 50, "ece": 0.0213,
}
EXPECTED_FILES = [
    "README.md", "config.json", "curves.png", "metrics.jsonl", "model.int8.onnx", "model.onnx",
    "model.safetensors", "model.torchscript.pt",
]
runner = CliRunner()


def fashion_mnist_available() -> bool:
    from cifarzoo.data.datasets import load_dataset

    try:
        load_dataset("fm", "test")
    except CifarzooError:
        return False
    return True


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory as training leaves it: checkpoint with metrics and the full recipe, log and curves."""
    torch.manual_seed(0)
    model = cifarzoo.create_model("resnet26-fm", zero_init_last=False)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.8, 1.2)
    run = tmp_path_factory.mktemp("runs") / "resnet26-fm"
    config = model.config.replace(metrics=dict(METRICS), recipe=load_recipe("resnet26-fm").to_dict())
    save_checkpoint(model.net.state_dict(), config, run)
    for epoch in range(1, 4):
        run_files.append_metrics(run, {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch,
                                       "train_top1": 80 + epoch, "val_top1": 79 + epoch})
    assert run_files.plot_curves(run, "resnet26-fm") is not None
    return run


@pytest.fixture(scope="module")
def dry_run(run_dir, tmp_path_factory) -> SimpleNamespace:
    """``cifarzoo publish --dry-run``: the module's one real build, int8 included."""
    out = tmp_path_factory.mktemp("dry") / "repo"
    result = runner.invoke(app, ["publish", str(run_dir), "--repo-id", REPO, "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text(encoding="utf-8")
    front, body = re.match(r"^---\n(.*?)\n---\n(.*)$", card, re.S).groups()
    return SimpleNamespace(out=out, stdout=result.stdout, card=card, front=yaml.safe_load(front), body=body)


def section(body: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", body, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def code_block(text: str, lang: str, index: int = 0) -> str:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)[index]


# ----------------------------------------------------------------------------------------------------------
# The folder


def test_dry_run_folder_file_by_file(dry_run, run_dir) -> None:
    out = dry_run.out
    int8 = fashion_mnist_available()
    expected = [f for f in EXPECTED_FILES if int8 or f != "model.int8.onnx"]
    assert sorted(os.listdir(out)) == expected  # nothing else: no temp or intermediate files
    assert "dry run" in dry_run.stdout and "nothing uploaded" in dry_run.stdout

    # config.json + model.safetensors: the run's checkpoint, loaded strictly and re-saved.
    assert ModelConfig.load(out / "config.json") == ModelConfig.load(run_dir / "config.json")
    saved, trained = load_weights(out), load_weights(run_dir)
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    torch_model = cifarzoo.load(out, device="cpu")

    # Every export runs, carries the config, and matches torch.
    x = np.random.default_rng(1).standard_normal((8, 1, 28, 28)).astype(np.float32)
    reference = torch_model.logits(x)
    onnx_model = OnnxModel.from_file(out / "model.onnx", device="cpu")
    np.testing.assert_allclose(onnx_model.logits(x), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    script = TorchScriptModel.from_file(out / "model.torchscript.pt", trust_code=True)
    np.testing.assert_allclose(script.logits(x), reference, rtol=1e-5, atol=1e-5)
    assert onnx_model.config == script.config == torch_model.config
    if int8:
        assert "int8 left out" not in dry_run.stdout
        assert OnnxModel.from_file(out / "model.int8.onnx", device="cpu").logits(x).shape == (8, 10)
    else:
        assert "note: int8 left out: Fashion-MNIST not found" in dry_run.stdout

    # The run's own files travel unchanged.
    for name in ("curves.png", "metrics.jsonl"):
        assert (out / name).read_bytes() == (run_dir / name).read_bytes()
    with Image.open(out / "curves.png") as image:
        assert image.format == "PNG"
    assert dry_run.card.startswith("---\n")


def test_front_matter_is_yaml_with_the_runs_metrics(dry_run) -> None:
    front = dry_run.front
    assert front["library_name"] == "cifarzoo" and front["license"] == "apache-2.0"
    assert front["datasets"] == ["zalando-datasets/fashion_mnist"] and front["pipeline_tag"] == "image-classification"
    assert {"image-classification", "cifarzoo", "resnet26", "fashion-mnist"} <= set(front["tags"])
    (index,) = front["model-index"]
    assert index["name"] == "resnet26-fm"
    found = {
        (result["dataset"]["split"], metric["type"], metric["name"]): metric["value"]
        for result in index["results"] for metric in result["metrics"]
    }
    assert all(result["task"]["type"] == "image-classification" for result in index["results"])
    assert found == {
        ("test", "accuracy", "test top-1 accuracy (%)"): METRICS["test_top1"],
        ("test", "top_5_accuracy", "test top-5 accuracy (%)"): METRICS["test_top5"],
        ("test", "accuracy", "test top-1 accuracy (%) with flip TTA"): METRICS["test_top1_flip_tta"],
        ("val", "accuracy", "val top-1 accuracy (%)"): METRICS["val_top1"],
        ("test", "accuracy", "photos top-1 accuracy (%)"): METRICS["photos_top1"],
    }
    photos = next(r for r in index["results"] if r["dataset"]["type"] == "photos")
    assert photos["dataset"]["name"] == "photos"


def test_card_sections_come_in_order(dry_run) -> None:
    titles = re.findall(r"^## (.+)$", dry_run.body, re.M)
    assert titles == ["Intended use", "Architecture", "Training recipe", "Metrics", "Training curves", "Files",
                      "Limitations", "Usage", "Citation"]
    assert re.search(r"^# resnet26-fm$", dry_run.body, re.M)
    assert "${" not in dry_run.card  # every placeholder was filled


def test_card_architecture_counts_the_real_network(dry_run) -> None:
    from cifarzoo.models.factory import count_flops, count_params

    net = cifarzoo.load(dry_run.out, device="cpu").net
    params, gflops = count_params(net), count_flops(net, 28, 1) / 1e9
    assert params == ZOO["resnet26-fm"].num_params
    text = section(dry_run.body, "Architecture")
    for row in (f"| parameters | {params:,} |", f"| GFLOPs | {gflops:.3f} per image", "| block | bottleneck |",
                "| blocks per stage | 2, 2, 2, 2 |", "| stage widths (3x3 conv) | 32, 64, 128, 288 |",
                "| skip connections | yes |"):
        assert row in text, row


def test_card_recipe_is_the_runs_recipe(dry_run, run_dir) -> None:
    recipe = ModelConfig.load(run_dir / "config.json").recipe
    block = code_block(section(dry_run.body, "Training recipe"), "toml")
    assert tomllib.loads(block) == recipe
    assert Recipe.from_dict(tomllib.loads(block)) == Recipe.from_dict(recipe)  # `cifarzoo train recipe.toml` runs it


def test_card_metrics_table_matches_the_config(dry_run) -> None:
    text = section(dry_run.body, "Metrics")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    header, sets = rows[0], {r[0]: dict(zip(rows[0][1:], r[1:])) for r in rows[2:] if len(r) == len(rows[0])}
    assert header == ["evaluation set", "top-1 %", "top-5 %", "top-1 % (flip TTA)", "loss", "images"]
    assert sets["test"] == {
        "top-1 %": "90.51", "top-5 %": "99.83", "top-1 % (flip TTA)": "90.93", "loss": "0.3102", "images": "10,000"
    }
    assert sets["val (5,000 images held out from train; chose the best epoch)"]["top-1 %"] == "91.24"
    assert sets["photos"] == {
        "top-1 %": "71.00", "top-5 %": "-", "top-1 % (flip TTA)": "-", "loss": "-", "images": "50"
    }
    assert "| best epoch (on val) | 14 |" in text and "| epochs | 15 |" in text and "| ECE | 0.0213 |" in text


def test_card_curves_files_limitations(dry_run) -> None:
    assert "](curves.png)" in section(dry_run.body, "Training curves")
    files = section(dry_run.body, "Files")
    for name in os.listdir(dry_run.out):
        assert f"| `{name}` |" in files
    assert "parity vs torch: n=256" in files and str(dry_run.out) not in dry_run.card  # no local paths
    limits = section(dry_run.body, "Limitations")
    assert (
        "28x28 grayscale" in limits
        and "T-shirt/top, Trouser, Pullover" in limits
        and "Real photos downscaled" in limits
    )


def test_card_onnxruntime_snippet_runs(dry_run, tmp_path, monkeypatch, capsys) -> None:
    import huggingface_hub

    snippet = code_block(section(dry_run.body, "Usage"), "python", index=1)
    assert f'hf_hub_download("{REPO}", "model.onnx")' in snippet
    # The Hub is out of reach: hand out the built folder's files instead.
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo_id, name, **kw: str(dry_run.out / name))
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save("image.png")
    exec(compile(snippet, "MODEL_CARD.md", "exec"), {})
    expected = cifarzoo.load(dry_run.out, backend="onnx", device="cpu").predict(["image.png"])[0]
    label, prob = capsys.readouterr().out.strip().rsplit(" ", 1)
    # The snippet's probability is the calibrated one cifarzoo gives (plain PIL resize vs cifarzoo's policy agree
    # at the model's own size).
    assert label == expected.label and float(prob) == pytest.approx(expected.prob, abs=1e-4)


def test_card_python_snippet_loads_the_published_folder_from_the_hub_cache(
    dry_run, tmp_path, monkeypatch, capsys
) -> None:
    """The folder as the Hub would serve it, through huggingface_hub's real cache, offline."""
    from huggingface_hub import constants

    commit = hashlib.sha1(b"publish").hexdigest()
    storage = tmp_path / "hf-cache" / f"models--{REPO.replace('/', '--')}"
    for path in dry_run.out.iterdir():
        blob = storage / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        (storage / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (storage / "snapshots" / commit / path.name).symlink_to(os.path.relpath(blob, storage / "snapshots" / commit))
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save("image.png")
    exec(compile(code_block(section(dry_run.body, "Usage"), "python", index=0), "MODEL_CARD.md", "exec"), {})
    label = cifarzoo.load(dry_run.out, device="cpu").predict(["image.png"])[0].label
    assert capsys.readouterr().out.startswith(f"image.png {label} ")


# ----------------------------------------------------------------------------------------------------------
# Upload, up to the HfApi boundary


@pytest.fixture
def hub_api(monkeypatch) -> SimpleNamespace:
    """HfApi.create_repo / upload_folder replaced by recorders; upload_folder reads the folder as it is then."""
    from huggingface_hub import HfApi

    calls = SimpleNamespace(create_repo=[], upload_folder=[], files={})

    def create_repo(self, repo_id, **kwargs):
        calls.create_repo.append({"repo_id": repo_id, **kwargs})
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        calls.upload_folder.append(kwargs)
        folder = Path(kwargs["folder_path"])
        calls.files = {p.name: p.read_bytes() for p in folder.iterdir()}
        oid = hashlib.sha1(b"commit").hexdigest()
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{oid}", oid=oid)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_publish_uploads_one_commit_and_never_shows_the_token(dry_run, run_dir, hub_api, tmp_path, monkeypatch) -> None:
    from cifarzoo.engines.export import _calibration_images

    monkeypatch.setenv("HF_TOKEN", SENTINEL)

    def exported_before(
        folder, fmt="onnx", out=None, dtype="fp32", opset=None, check=False, calib_dir=None, data_dir=None
    ):
        """The dry run's export of the same checkpoint (the real one is tested above); int8 really looks for
        its calibration data, in an empty folder."""
        if dtype == "int8":
            _calibration_images(ModelConfig.load(Path(folder) / "config.json"), None, data_dir, 1)
        name = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}[fmt]
        shutil.copyfile(dry_run.out / name, Path(folder) / name)
        return SimpleNamespace(path=Path(folder) / name, format=fmt, dtype=dtype, exporter="copy", parity=None)

    monkeypatch.setattr(publish_engine, "export", exported_before)
    empty = tmp_path / "no-data"
    empty.mkdir()
    result = runner.invoke(app, ["publish", str(run_dir), "--repo-id", REPO, "--private", "--data-dir", str(empty)])
    assert result.exit_code == 0, result.output

    (create,) = hub_api.create_repo
    assert create == {"repo_id": REPO, "private": True, "repo_type": "model", "exist_ok": True}
    (upload,) = hub_api.upload_folder
    assert upload["repo_id"] == REPO and upload["repo_type"] == "model" and upload["delete_patterns"] == "*"
    assert "token" not in create and "token" not in upload  # huggingface_hub finds the token itself
    assert sorted(hub_api.files) == [f for f in EXPECTED_FILES if f != "model.int8.onnx"]
    # Same tensors as the dry run (the bytes may differ: safetensors does not fix its metadata order).
    from safetensors.torch import load as load_safetensors_bytes

    uploaded, built = load_safetensors_bytes(hub_api.files["model.safetensors"]), load_weights(dry_run.out)
    assert uploaded.keys() == built.keys() and all(torch.equal(uploaded[k], built[k]) for k in built)
    assert not Path(upload["folder_path"]).exists()  # the temporary folder is gone

    assert f"commit: https://huggingface.co/{REPO}/commit/" in result.stdout
    assert "note: int8 left out: Fashion-MNIST not found" in result.stdout
    assert "No int8 ONNX file" in hub_api.files["README.md"].decode()
    assert SENTINEL not in result.stdout + result.stderr
    assert not [name for name, data in hub_api.files.items() if SENTINEL.encode() in data]


def test_publish_keeps_the_folder_with_out(dry_run, run_dir, hub_api, tmp_path, monkeypatch) -> None:
    def exported_before(folder, fmt="onnx", **kwargs):
        name = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}[fmt]
        shutil.copyfile(dry_run.out / name, Path(folder) / name)
        return SimpleNamespace(path=Path(folder) / name, format=fmt, dtype="fp32", exporter="copy", parity=None)

    monkeypatch.setattr(publish_engine, "export", exported_before)
    result = runner.invoke(
        app, ["publish", str(run_dir), "--repo-id", REPO, "--no-int8", "--out", str(tmp_path / "kept")]
    )
    assert result.exit_code == 0, result.output
    assert hub_api.create_repo[0]["private"] is False
    assert sorted(os.listdir(tmp_path / "kept")) == sorted(hub_api.files)


def test_upload_errors_are_one_line_and_masked(tmp_path, monkeypatch) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    from cifarzoo.io.hub import upload_folder

    def refuse(self, repo_id, **kwargs):
        error = HfHubHTTPError.__new__(HfHubHTTPError)  # no HTTP response object needed for the message
        Exception.__init__(error, f"401 Unauthorized: Invalid credentials in Authorization header {SENTINEL}\nmore")
        raise error

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(CifarzooError, match=rf"^{REPO}: upload failed \(HfHubHTTPError: 401 Unauthorized") as err:
        upload_folder(tmp_path, REPO)
    assert "\n" not in str(err.value) and SENTINEL not in str(err.value) and "hf_***" in str(err.value)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--repo-id", REPO, "--dry-run"], "a dry run needs --out DIR"),
        (["--repo-id", "no-namespace", "--dry-run", "--out", "{tmp}/o"], "a Hub repo id is USER/NAME"),
        (["--repo-id", "bad--id/x", "--dry-run", "--out", "{tmp}/o"], "invalid Hub repo id"),
        (["--repo-id", REPO, "--dry-run", "--out", "{tmp}/full"], "already exists and is not empty"),
    ],
)
def test_bad_publish_input_is_one_line(run_dir, tmp_path, args, reason) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    result = runner.invoke(app, ["publish", str(run_dir), *[a.format(tmp=tmp_path) for a in args]])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], lines
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep" and not (tmp_path / "o").exists()


def test_publishing_a_folder_without_a_checkpoint_fails(tmp_path) -> None:
    result = runner.invoke(
        app, ["publish", str(tmp_path), "--repo-id", REPO, "--dry-run", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "config.json: file not found" in result.stderr


# ----------------------------------------------------------------------------------------------------------
# The card template and metrics grouping, without a build


def test_template_ships_in_the_package_and_the_root_links_to_it() -> None:
    root = ROOT / "MODEL_CARD.md"
    assert root.is_symlink() and root.resolve() == (ROOT / "cifarzoo" / "templates" / "MODEL_CARD.md").resolve()
    assert publish_engine.read_template() == root.read_text(encoding="utf-8")
    assert '"templates/*.md"' in (ROOT / "pyproject.toml").read_text()


def test_metric_keys_group_by_evaluation_set() -> None:
    assert split_metric_key("test_top1_flip_tta") == ("test", "top1_flip_tta")
    assert split_metric_key("cifar10.1_top1") == ("cifar10.1", "top1")
    assert split_metric_key("best_epoch") == ("", "best_epoch")
    groups = group_metrics({"ece": 0.1, "cifar10.1_top1": 80.0, "val_top1": 90.0, "test_n": 10, "test_top1": 91.0})
    assert list(groups) == ["test", "val", "cifar10.1", ""]
    assert groups["test"] == {"n": 10, "top1": 91.0}


def test_calibration_and_robustness_metrics_stay_in_the_test_row() -> None:
    # test_uncalibrated_ece is the test set's ECE before temperature scaling, not a set called "test_uncalibrated"
    assert split_metric_key("test_uncalibrated_ece") == ("test", "uncalibrated_ece")
    assert split_metric_key("test_mca_relative") == ("test", "mca_relative")
    config = cifarzoo.create_model("resnet26", classes=["ant", "bee"]).config.replace(
        metrics={"test_top1": 94.03, "test_ece": 0.0174, "test_uncalibrated_ece": 0.0753, "test_mca": 71.2345,
                 "test_mca_relative": 0.757534},
    )
    card = render_model_card(config, "someone/insects", 4_100_000, 0.386, {"model.safetensors": "weights"})
    header = next(line for line in card.splitlines() if line.startswith("| evaluation set"))
    assert "mCA % (15 corruptions x 5 severities)" in header and "mCA / clean top-1" in header
    assert "| test | 94.03 | 0.0174 | 0.0753 | 71.23 | 0.7575 |" in card
    assert "test_uncalibrated" not in card


def test_card_for_a_custom_dataset_with_unmeasured_metrics() -> None:
    config = cifarzoo.create_model("resnet26", classes=["ant", "bee"]).config.replace(
        dataset="insects",
        metrics={"val_top1": math.nan, "test_top1": 88.0, "cifar10.1_top1": 77.5},
        recipe="resnet26-c10",
    )
    card = render_model_card(config, "someone/insects", 4_100_000, 0.386, {"model.safetensors": "weights"})
    front = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", card, re.S).group(1))
    assert "datasets" not in front
    values = [m["value"] for r in front["model-index"][0]["results"] for m in r["metrics"]]
    assert values == [88.0, 77.5]  # NaN is not a measurement
    assert "| CIFAR-10.1 | 77.50 |" in card and "`cifarzoo train resnet26-c10` reproduces it" in card
    assert "insects is not built into cifarzoo" in card and "ant, bee" in card


def test_release_script_skips_entries_without_runs(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "export" / "release.py"), "--namespace", "someone", "--runs", str(tmp_path),
         "--only", "resnet26-*", "--out", str(tmp_path / "hub")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"skip resnet26-{tag}: no trained run in {tmp_path / f'resnet26-{tag}'} "
        f"(`cifarzoo train resnet26-{tag} --out {tmp_path / f'resnet26-{tag}'}` makes one)"
        for tag in ("c10", "c100", "fm")
    ]

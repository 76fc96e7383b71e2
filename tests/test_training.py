"""The training engine on real Fashion-MNIST: it learns, it resumes exactly, and DDP keeps ranks in sync."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.data.datasets import SYSTEM_FASHION_MNIST
from cifarzoo.training import run_files
from cifarzoo.training.loop import train
from cifarzoo.training.recipe import load_recipe

pytestmark = pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist (make test installs it)",
)

CLI = [sys.executable, "-m", "cifarzoo"]
# A tiny but real run: 192 training images, 3 epochs, exact fp32 arithmetic.
TINY = [
    "data.train_subset=192", "data.val_size=64", "data.test_subset=64", "train.batch_size=32",
    "train.epochs=3", "train.precision=fp32", "train.deterministic=true", "train.ema_decay=0.9",
    "train.tta=none", "schedule.warmup_epochs=0",
]


def test_two_epochs_on_fashion_mnist_beat_chance_clearly(tmp_path) -> None:
    recipe = load_recipe("resnet26-fm", overrides=[
        "data.train_subset=2000", "data.val_size=500", "data.test_subset=1000", "train.epochs=2",
        "train.batch_size=64", "train.tta=none", "schedule.warmup_epochs=0.5",
    ])
    result = train(recipe, tmp_path / "run", device="cpu", progress=False)
    assert result.metrics["test_n"] == 1000
    assert result.metrics["test_top1"] > 50.0  # chance is 10%
    rows = run_files.read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "train_top1", "val_loss", "val_top1", "lr", "seconds", "img_per_s"} <= set(rows[0])
    assert rows[1]["train_loss"] < rows[0]["train_loss"]

    # The run directory is a checkpoint cifarzoo.load reads, with the recipe and metrics inside.
    model = cifarzoo.load(tmp_path / "run")
    assert model.config.metrics["test_top1"] == result.metrics["test_top1"]
    assert model.config.recipe["name"] == "resnet26-fm" and model.config.dataset == "fm"
    assert model.classes[0] == "T-shirt/top"
    assert (tmp_path / "run" / "curves.png").stat().st_size > 10_000


def _state(run_dir: Path) -> dict:
    return torch.load(run_dir / run_files.STATE_NAME, weights_only=True)


def test_resume_after_sigkill_gives_the_same_weights(tmp_path) -> None:
    recipe = load_recipe("resnet26-fm", overrides=TINY)
    train(recipe, tmp_path / "straight", device="cpu", progress=False)

    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [*CLI, "train", "resnet26-fm", "--out", str(interrupted), "--device", "cpu", "-q",
         *[arg for item in TINY for arg in ("--set", item)]],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (interrupted / run_files.STATE_NAME).is_file():
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)  # mid-epoch 2: state.pt holds epoch 1
    proc.wait()
    assert _state(interrupted)["epoch"] < 3
    assert not list(interrupted.glob(".*.tmp"))  # the atomic writes left no half file behind

    train(recipe, interrupted, device="cpu", resume=True, progress=False)
    a, b = _state(tmp_path / "straight"), _state(interrupted)
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][key], b["ema"]["module"][key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "img_per_s")} for r in rows]  # noqa: E731
    assert strip(run_files.read_metrics(interrupted)) == strip(run_files.read_metrics(tmp_path / "straight"))


class _Killed(Exception):
    """Stands for a kill at one precise point of the epoch-end writes."""


@pytest.mark.parametrize("window", ["after the state is saved", "before the state is saved"])
def test_a_kill_at_the_epoch_end_loses_no_metrics_row(tmp_path, monkeypatch, window) -> None:
    """Whatever instant of the epoch-end writes a kill hits, the resumed run's metrics.jsonl is the
    uninterrupted run's, row for row. (Writing state.pt before the epoch's row, a kill between the two lost
    that row for good: the resumed run's rows read epochs 1, 3.)"""
    recipe = load_recipe("resnet26-fm", overrides=TINY)
    train(recipe, tmp_path / "straight", device="cpu", progress=False)

    real_save_state = run_files.save_state

    def killed_at_epoch_2(run_dir: Path, state: dict) -> None:
        if state["epoch"] == 2:
            if window == "after the state is saved":
                real_save_state(run_dir, state)
            raise _Killed(window)
        real_save_state(run_dir, state)

    monkeypatch.setattr(run_files, "save_state", killed_at_epoch_2)
    with pytest.raises(_Killed):
        train(recipe, tmp_path / "killed", device="cpu", progress=False)
    monkeypatch.setattr(run_files, "save_state", real_save_state)
    train(recipe, tmp_path / "killed", device="cpu", resume=True, progress=False)

    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "img_per_s")} for r in rows]  # noqa: E731
    resumed = strip(run_files.read_metrics(tmp_path / "killed"))
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    assert resumed == strip(run_files.read_metrics(tmp_path / "straight"))


def test_two_process_ddp_on_gloo(tmp_path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "cifarzoo", "train", "resnet26-fm", "--out", str(out), "--device", "cpu",
         *[arg for item in TINY[:-4] + ["train.epochs=2", "train.tta=none"] for arg in ("--set", item)]],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ranks in sync: 2 ranks share weight checksum" in proc.stdout + proc.stderr
    assert proc.stdout.count('"run_dir"') == 1  # only rank 0 reports
    assert [r["epoch"] for r in run_files.read_metrics(out)] == [1, 2]  # rows written once, not per rank
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.safetensors", "state.pt", "metrics.jsonl", "recipe.json", "curves.png"]
    )
    assert cifarzoo.load(out).config.metrics["epochs"] == 2


def test_grad_norm_logging_per_stage(tmp_path) -> None:
    recipe = load_recipe("plain26-fm", overrides=TINY[:-4] + ["train.epochs=1", "train.log_grad_norms=true",
                                                             "schedule.warmup_epochs=0"])
    train(recipe, tmp_path / "run", device="cpu", progress=False)
    (row,) = run_files.read_metrics(tmp_path / "run")
    assert set(row["grad_norms"]) == {"stem", "stages.0", "stages.1", "stages.2", "stages.3", "fc"}
    assert all(v > 0 for v in row["grad_norms"].values())


@pytest.mark.parametrize(
    "extra",
    [["optim.sam_rho=0.05", "optim.grad_clip=1.0"], ["optim.name=adamw", "optim.lr=0.001", "schedule.name=plateau"]],
)
def test_optimiser_variants_train(tmp_path, extra) -> None:
    recipe = load_recipe("resnet26-fm", overrides=TINY[:-4] + ["train.epochs=1", "schedule.warmup_epochs=0", *extra])
    before = cifarzoo.create_model("resnet26-fm").net.state_dict()
    train(recipe, tmp_path / "run", device="cpu", progress=False)
    after = _state(tmp_path / "run")["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())


def test_cli_train_refuses_to_overwrite_and_to_resume_nothing(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "resnet26-fm", "--out", str(tmp_path / "none"), "--resume"])
    assert result.exit_code == 1 and "nothing to resume" in result.stderr
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "state.pt").write_bytes(b"")
    result = runner.invoke(app, ["train", "resnet26-fm", "--out", str(tmp_path / "old")])
    assert result.exit_code == 1 and "already holds a run; pass --resume" in result.stderr
    result = runner.invoke(app, ["train", "resnet26-fm", "--set", "optim.lr=-1"])
    assert result.exit_code == 1 and "optim.lr must be > 0" in result.stderr


def test_folder_dataset_trains(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, colour in (("red", 0), ("blue", 2)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(40):
            arr = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            arr[..., colour] += 150
            Image.fromarray(arr).save(tmp_path / "data" / label / f"{i}.png")
    recipe = load_recipe("resnet26-c10", overrides=[
        "data.dataset=folder", f"data.train_dir={tmp_path / 'data'}", "data.val_size=16", "train.epochs=2",
        "train.batch_size=16", "schedule.warmup_epochs=0", "train.precision=fp32", "model.drop_rate=0.0",
    ])
    result = train(recipe, tmp_path / "run", device="cpu", progress=False)
    model = cifarzoo.load(tmp_path / "run")
    assert model.classes == ("blue", "red") and result.metrics["val_top1"] >= 50
    assert model.config.preprocess.mean[0] > model.config.preprocess.mean[1]  # statistics measured from the data

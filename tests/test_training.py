"""The training engine on real Fashion-MNIST: it learns, it resumes exactly, and DDP equals one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing
from torch import nn
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.data.datasets import SYSTEM_FASHION_MNIST
from cifarzoo.data.specs import CIFAR10
from cifarzoo.training import run_files
from cifarzoo.training.distributed import DistContext
from cifarzoo.training.loop import TrainData, Trainer, prepare_data, train
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
    # Temperature scaling fitted on the validation split at the end, and it lowered that split's NLL.
    calibration = model.config.calibration
    assert calibration is not None and calibration.fitted_on == "fashion-mnist:val" and calibration.n == 500
    assert calibration.temperature != 1.0 and calibration.nll_after < calibration.nll_before


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
    """The CLI under torchrun: rank 0 alone writes the files (and takes and releases the folder's lock)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "cifarzoo", "train", "resnet26-fm", "--out", str(out), "--device", "cpu",
         *[arg for item in TINY[:-4] + ["train.epochs=2", "train.tta=none", "data.train_subset=64"]
           for arg in ("--set", item)]],
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


class _NoNormNet(nn.Module):
    """A small CNN without BatchNorm. Its gradient on a batch is the mean of the per-image gradients, so a DDP step
    (each rank half the batch, gradients averaged) is exactly the one-process step on the whole batch. With
    BatchNorm it is not: each rank normalises with its own half-batch's statistics (plain DDP, no SyncBatchNorm,
    which needs CUDA), so the zoo's nets cannot be compared this way."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.fc = nn.Linear(8 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank of a ``world``-process gloo job: the real Trainer (sharding, DDP, gradient averaging, EMA,
    all-reduced metrics, sharded evaluation) on a net without BatchNorm; rank 0 saves what the test compares."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from cifarzoo.training import loop

    def no_norm_build(config, pretrained=False) -> nn.Module:
        return _NoNormNet(config.num_classes)

    gathered: list[np.ndarray] = []
    real_report = loop.compute_report

    def capture_report(logits, labels, classes):
        gathered.append(np.array(logits))
        return real_report(logits, labels, classes)

    loop.build = no_norm_build  # type: ignore[assignment]
    loop.compute_report = capture_report  # type: ignore[assignment]
    # No augmentation: each rank would draw its own crops for its half of the batch.
    recipe = load_recipe("resnet26-c10", overrides=[
        "data.crop_padding=0", "data.flip=false", "model.drop_rate=0", "train.precision=fp32",
        "train.channels_last=false", "train.batch_size=16", "train.epochs=2", "train.ema_decay=0.9",
        "schedule.warmup_epochs=0", "train.label_smoothing=0.1",
    ])
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64 + 37, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (64 + 37,), generator=generator)
    data = TrainData(images[:64], labels[:64], images[64:], labels[64:], None, None, CIFAR10.classes,
                     CIFAR10.preprocess_config(), CIFAR10.tag)
    ctx = DistContext.from_env("cpu")
    finished = False
    try:
        trainer = Trainer(recipe, Path(out), data, ctx, progress=False)
        rows = [trainer.train_epoch(epoch) for epoch in (1, 2)]
        trainer._check_ranks_in_sync()
        report = trainer.evaluate(data.val_images, data.val_labels)
        if ctx.is_main:
            torch.save({"weights": trainer.net.state_dict(), "ema": trainer.eval_net.state_dict(),
                        "losses": [row["train_loss"] for row in rows], "n": report.n,
                        "logits": torch.from_numpy(gathered[-1])}, Path(out) / f"world{world}.pt")
        finished = True
    finally:
        ctx.close(wait_for_all=finished)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_train_the_same_weights_as_one_with_the_same_global_batch(tmp_path) -> None:
    """Two gloo ranks with 8 images each per step end with the weights (and EMA, losses) of one process with 16;
    the sharded evaluation of 37 images (19 + 18) gathers every image once, in order."""
    for world in (1, 2):
        torch.multiprocessing.spawn(_ddp_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    one, two = torch.load(tmp_path / "world1.pt"), torch.load(tmp_path / "world2.pt")
    torch.manual_seed(0)
    untrained = _NoNormNet(10).state_dict()
    for key, value in one["weights"].items():
        assert (value - untrained[key]).abs().max() > 1e-3, key  # training moved it: the comparison means something
        torch.testing.assert_close(two["weights"][key], value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(two["ema"][key], one["ema"][key], rtol=1e-5, atol=1e-6)
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert one["n"] == two["n"] == 37
    torch.testing.assert_close(two["logits"], one["logits"], rtol=1e-5, atol=1e-6)


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
    """Every weight tensor of the seeded model the run starts from takes real steps. Parameters only: BatchNorm's
    running statistics move in any forward pass, stepping or not."""
    recipe = load_recipe("resnet26-fm", overrides=TINY[:-4] + ["train.epochs=1", "schedule.warmup_epochs=0", *extra])
    # The Trainer seeds the model from train.seed, so this one is the run's starting point exactly.
    start = Trainer(recipe, tmp_path / "unused", prepare_data(recipe, torch.device("cpu")), DistContext()).net
    before = {name: p.detach().clone() for name, p in start.named_parameters()}
    train(recipe, tmp_path / "run", device="cpu", progress=False)
    after = _state(tmp_path / "run")["model"]
    # Conv and linear weights (BatchNorm's scale, near 1, may move less than float32 resolves in six steps).
    moved = {name: float((after[name] - value).abs().max()) for name, value in before.items() if value.ndim > 1}
    assert len(moved) == 30 and min(moved.values()) > 1e-5, sorted(moved.items(), key=lambda kv: kv[1])[:3]


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
    assert model.classes == ("blue", "red")
    assert result.metrics["val_top1"] == 100.0  # red against blue: a colour channel separates them
    # Normalisation statistics measured from these very pixels (80 images), not defaults.
    pixels = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "data").rglob("*.png"))]) / 255.0
    assert model.config.preprocess.mean == pytest.approx(pixels.reshape(-1, 3).mean(0), abs=1e-4)
    assert model.config.preprocess.std == pytest.approx(pixels.reshape(-1, 3).std(0), abs=1e-4)


def test_cli_resume_continues_a_stopped_run_to_the_same_weights(tmp_path) -> None:
    """`train --epochs 1`, then `train --resume --epochs 2`, from the command line, ends as one `--epochs 2` run:
    the same weights, EMA and metrics rows. (A schedule that does not depend on the run's length, so that stopping
    after one epoch is the same as being interrupted there.)"""
    items = ["data.train_subset=64", "data.val_size=32", "data.test_subset=32", "train.batch_size=32",
             "train.precision=fp32", "train.deterministic=true", "train.ema_decay=0.9", "train.tta=none",
             "schedule.warmup_epochs=0", "schedule.name=constant"]
    runner = CliRunner()

    def cli(out: Path, *args: str):
        result = runner.invoke(app, ["train", "resnet26-fm", "--out", str(out), "--device", "cpu", "-q", *args,
                                     *[arg for item in items for arg in ("--set", item)]])
        assert result.exit_code == 0, (result.output, result.exception)
        return json.loads(result.stdout)

    cli(tmp_path / "straight", "--epochs", "2")
    assert cli(tmp_path / "resumed", "--epochs", "1")["metrics"]["epochs"] == 1
    resumed = cli(tmp_path / "resumed", "--epochs", "2", "--resume")
    assert resumed["metrics"]["epochs"] == 2
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][key], b["ema"]["module"][key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "img_per_s")} for r in rows]  # noqa: E731
    assert strip(run_files.read_metrics(tmp_path / "resumed")) == strip(run_files.read_metrics(tmp_path / "straight"))
    assert [r["epoch"] for r in run_files.read_metrics(tmp_path / "resumed")] == [1, 2]
    assert json.loads((tmp_path / "resumed" / run_files.RECIPE_NAME).read_text())["train"]["epochs"] == 2

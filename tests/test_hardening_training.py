"""Training against careless and hostile use (issue #15): one training per run folder (a lock), run names that stay
inside runs/, temp files a killed run left, a diverging run, and every user mistake as one ``error:`` line."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from typer.testing import CliRunner

from cifarzoo.cli import app
from cifarzoo.data.datasets import SYSTEM_FASHION_MNIST
from cifarzoo.errors import CifarzooError, ConfigError
from cifarzoo.io.layout import LOCK_NAME, METRICS_NAME, RECIPE_NAME, STATE_NAME, WEIGHTS_NAME
from cifarzoo.training import loop, run_files
from cifarzoo.training.optim import LRSchedule
from cifarzoo.training.recipe import load_recipe, recipe_dir, recipe_for_run
from cifarzoo.training.run_lock import LockHolder, RunLock, RunLockedError, _process_start

needs_fashion_mnist = pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs Debian's dataset-fashion-mnist (make test installs it)",
)

# The smallest real run: 32 training images in batches of 16 (two steps an epoch), exact fp32, no EMA.
MICRO = [
    "data.train_subset=32", "data.val_size=16", "data.test_subset=16", "train.batch_size=16", "train.epochs=1",
    "train.precision=fp32", "train.tta=none", "schedule.warmup_epochs=0", "train.ema_decay=0",
]


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _train_cli(run: Path, *extra: str, items: list[str] = MICRO):
    return CliRunner().invoke(app, ["train", "resnet26-fm", "--out", str(run), "--device", "cpu", "-q",
                                    *_sets(items), *extra])


def _one_error_line(result, *fragments: str) -> str:
    """The command failed with exit code 1 and printed exactly one line, ``error: ...``, holding ``fragments``:
    no traceback (an unexpected exception would reach CliRunner as something other than SystemExit)."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished one-epoch run folder (state.pt, metrics.jsonl, recipe.json, checkpoint); tests copy it."""
    if not (SYSTEM_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    run = tmp_path_factory.mktemp("finished") / "run"
    loop.train(load_recipe("resnet26-fm", overrides=MICRO), run, device="cpu", progress=False)
    return run


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# ----------------------------------------------------------------------------------------------------------
# One training per run folder

# Runs `cifarzoo train ...` held at its start (lock taken, data not yet loaded) until the file argv[1] exists.
GATED_TRAIN = """
import pathlib, sys, time
import cifarzoo.training.loop as loop
real_prepare_data = loop.prepare_data
def gated(*args, **kwargs):
    while not pathlib.Path(sys.argv[1]).exists():
        time.sleep(0.05)
    return real_prepare_data(*args, **kwargs)
loop.prepare_data = gated
from cifarzoo.cli import main
sys.argv = ["cifarzoo", *sys.argv[2:]]
main()
"""


@needs_fashion_mnist
def test_a_second_training_on_the_same_out_is_refused_and_the_first_is_unaffected(tmp_path) -> None:
    run, go = tmp_path / "run", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", GATED_TRAIN, str(go), "train", "resnet26-fm", "--out", str(run), "--device", "cpu",
         "-q", *_sets(MICRO)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:
            if (run / LOCK_NAME).is_file() and LockHolder.parse((run / LOCK_NAME).read_text()) is not None:
                break
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        assert LockHolder.parse((run / LOCK_NAME).read_text()).pid == first.pid  # type: ignore[union-attr]
        second = _train_cli(run, items=MICRO + ["optim.lr=0.05"])
        _one_error_line(second, str(run), f"pid {first.pid}", "another training")
        assert first.poll() is None  # still held at its start: the refusal happened while it ran
    finally:
        go.touch()
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    # The first run is whole and its own: one row per epoch, its recipe (not the second's lr), no lock left.
    assert [row["epoch"] for row in run_files.read_metrics(run)] == [1]
    assert json.loads((run / RECIPE_NAME).read_text())["optim"]["lr"] == load_recipe("resnet26-fm").optim.lr
    assert json.loads(out)["run_dir"] == str(run)
    assert not (run / LOCK_NAME).exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(run: Path, holder: LockHolder) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / LOCK_NAME).write_text(holder.to_text())


def test_a_stale_lock_is_taken_over_with_a_note(tmp_path, caplog) -> None:
    pid = _dead_pid()
    _write_lock(tmp_path, LockHolder(pid, socket.gethostname(), "123"))
    with RunLock(tmp_path) as lock:
        assert LockHolder.parse((tmp_path / LOCK_NAME).read_text()) == lock.holder
        assert lock.holder.pid == os.getpid()
    assert f"took over a stale lock left by pid {pid}" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists() and list(tmp_path.iterdir()) == []


@pytest.fixture
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        deadline = time.time() + 30
        while _process_start(proc.pid) is None and time.time() < deadline:
            time.sleep(0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_live_lock_is_refused_naming_the_folder_and_pid(tmp_path, live_process) -> None:
    _write_lock(tmp_path, LockHolder(live_process.pid, socket.gethostname(), _process_start(live_process.pid)))
    with pytest.raises(RunLockedError, match=rf"^{tmp_path}: another training \(pid {live_process.pid}\)"):
        RunLock(tmp_path).acquire()
    assert LockHolder.parse((tmp_path / LOCK_NAME).read_text()).pid == live_process.pid  # type: ignore[union-attr]


def test_a_lock_from_another_host_is_refused(tmp_path) -> None:
    _write_lock(tmp_path, LockHolder(_dead_pid(), "another-host", None))  # cannot be checked from here
    with pytest.raises(RunLockedError, match="on host another-host"):
        RunLock(tmp_path).acquire()


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path, live_process, caplog) -> None:
    """The pid runs, but it is another process than the one that took the lock (it started at another time)."""
    _write_lock(tmp_path, LockHolder(live_process.pid, socket.gethostname(), "1"))
    with RunLock(tmp_path):
        pass
    assert "took over a stale lock" in caplog.text


def test_an_unwritten_lock_is_refused_while_fresh_and_taken_over_when_old(tmp_path) -> None:
    (tmp_path / LOCK_NAME).write_text("")  # a process between creating the lock and writing its pid
    with pytest.raises(RunLockedError, match="another training is starting"):
        RunLock(tmp_path).acquire()
    an_hour_ago = time.time() - 3600
    os.utime(tmp_path / LOCK_NAME, (an_hour_ago, an_hour_ago))
    with RunLock(tmp_path):
        pass
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("exit_by", [None, ValueError, KeyboardInterrupt])
def test_the_lock_is_removed_on_every_exit(tmp_path, exit_by) -> None:
    run = tmp_path / "new" / "run"
    try:
        with RunLock(run):
            assert (run / LOCK_NAME).is_file()
            (run / "kept.txt").write_text("a file the run wrote")
            if exit_by is not None:
                raise exit_by()
    except BaseException as exc:
        assert exit_by is not None and isinstance(exc, exit_by)
    assert sorted(p.name for p in run.iterdir()) == ["kept.txt"]


def test_a_folder_the_lock_created_is_removed_if_the_run_wrote_nothing(tmp_path) -> None:
    with pytest.raises(CifarzooError, match="nothing to resume"):
        loop.train(load_recipe("resnet26-fm", overrides=MICRO), tmp_path / "run", device="cpu", resume=True)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------------------
# Run names stay inside runs/

BAD_NAMES = ["../../x", "a/b", "..", ".", "", "a\\b", "x\x00y", "x\ny", "/abs", "n" * 129]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_recipe_names_must_be_single_path_components(tmp_path, name) -> None:
    with pytest.raises(ConfigError, match="must be a single file name"):
        load_recipe("resnet26-fm", overrides=[f"name={name!r}"])
    toml = tmp_path / "mine.toml"
    toml.write_text(f'base = "{recipe_dir() / "_fm.toml"}"\nname = {json.dumps(name)}\n'
                    '[model]\narch = "resnet26"\n')
    with pytest.raises(ConfigError, match="must be a single file name"):
        recipe_for_run(toml)


@pytest.mark.parametrize("name", ["my-run_1.2", "..x", "x..", "résumé", "a b"])
def test_good_names_run_in_one_folder_under_runs(name) -> None:
    recipe, run_dir = recipe_for_run("resnet26-fm", overrides=[f"name={name!r}"])
    assert recipe.name == name and run_dir == Path("runs") / name
    _, with_variant = recipe_for_run("resnet26-fm", variant="fast", overrides=[f"name={name!r}"])
    assert with_variant == Path("runs") / f"{name}-fast"


def test_the_cli_refuses_a_traversing_name_and_creates_nothing(tmp_path, monkeypatch) -> None:
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    toml = cwd / "evil.toml"
    toml.write_text('base = "' + str(recipe_dir() / "_fm.toml") + '"\n'
                    'name = "../../x"\n[model]\narch = "resnet26"\n')
    _one_error_line(CliRunner().invoke(app, ["train", str(toml), "--device", "cpu", "-q"]), "'../../x'",
                    "single file name")
    _one_error_line(CliRunner().invoke(app, ["train", "resnet26-fm", "--set", "name=../../x", "-q"]), "'../../x'")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["a", "a/b", "a/b/evil.toml"]


# ----------------------------------------------------------------------------------------------------------
# Temp files a killed run left

# Takes the run's lock and dies (SIGKILL) in the middle of an atomic write of argv[2]: what `kill -9` leaves.
KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from cifarzoo.atomic import atomic_path
from cifarzoo.training.run_lock import RunLock
run = Path(sys.argv[1])
RunLock(run).acquire()
with atomic_path(run / sys.argv[2]) as tmp:
    tmp.write_bytes(b"half a file")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _kill_mid_write(run: Path, name: str) -> list[Path]:
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(run), name])
    assert proc.returncode == -signal.SIGKILL
    leftovers = sorted(run.glob(f".{name}.*.tmp"))
    assert len(leftovers) == 1 and (run / LOCK_NAME).is_file()
    return leftovers


@needs_fashion_mnist
def test_a_new_run_and_a_resume_remove_the_temp_files_a_killed_run_left(tmp_path, caplog) -> None:
    run = tmp_path / "run"
    recipe = load_recipe("resnet26-fm", overrides=MICRO)
    # Killed during its first checkpoint write: recipe.json, a stale lock and a half model.safetensors.
    run.mkdir()
    (run / RECIPE_NAME).write_text(json.dumps(recipe.to_dict()))
    leftover = _kill_mid_write(run, WEIGHTS_NAME)
    loop.train(recipe, run, device="cpu", progress=False)
    assert not any(p.exists() for p in leftover)
    assert "removed 1 temp file(s) a killed run left behind" in caplog.text
    assert "took over a stale lock" in caplog.text
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["config.json", "curves.png", "metrics.jsonl", "model.safetensors", "recipe.json", "state.pt"]
    )
    # Killed while writing state.pt: the resume cleans up too.
    leftover = _kill_mid_write(run, STATE_NAME)
    loop.train(recipe, run, device="cpu", resume=True, progress=False)
    assert not any(p.exists() for p in leftover) and not list(run.glob(".*"))


# ----------------------------------------------------------------------------------------------------------
# A diverging run stops


@needs_fashion_mnist
def test_a_diverging_run_stops_with_exit_1_keeping_the_last_good_epoch(tmp_path, monkeypatch) -> None:
    """Epoch 1 trains normally; from epoch 2 the learning rate is 1e30 and the loss goes NaN. The run stops with
    one line naming epoch 2, and its files are epoch 1's: never NaN weights."""
    real_lr_at = LRSchedule.lr_at

    def exploding_in_epoch_2(self: LRSchedule, step: int) -> float:
        return 1e30 if step >= self.total_steps // 2 else real_lr_at(self, step)

    monkeypatch.setattr(LRSchedule, "lr_at", exploding_in_epoch_2)
    run = tmp_path / "run"
    _one_error_line(_train_cli(run, items=MICRO + ["train.epochs=2"]), f"{run}: training diverged in epoch 2",
                    "the training loss is nan", "keeps the state of epoch 1")
    state = torch.load(run / STATE_NAME, weights_only=True)
    assert state["epoch"] == 1
    assert [row["epoch"] for row in run_files.read_metrics(run)] == [1]
    weights = load_file(run / WEIGHTS_NAME)
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    for key, tensor in weights.items():  # the checkpoint is epoch 1's weights, not overwritten in epoch 2
        assert torch.equal(tensor, state["model"][key]), key
    assert not (run / LOCK_NAME).exists()


@needs_fashion_mnist
def test_a_run_diverging_at_once_is_stopped_mid_epoch_with_nothing_saved(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(loop, "_FINITE_CHECK_STEPS", 1)  # check after every step (50 in real runs)
    run = tmp_path / "run"
    _one_error_line(_train_cli(run, items=MICRO + ["optim.lr=1e30"]), "diverged in epoch 1 (step 2 of 2)",
                    "no checkpoint saved", "optim.lr (now 1e+30)")
    assert sorted(p.name for p in run.iterdir()) == [RECIPE_NAME]


# ----------------------------------------------------------------------------------------------------------
# Every user mistake is one line


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("optim.lr=1e308", ["optim.lr must be at most 3.403e+38", "1e+308"]),
        ("optim.lr=1e999", ["optim.lr must be a finite number, got inf"]),
        ("optim.lr=" + "9" * 400, ["optim.lr must be below 2**63", "400-digit"]),
        ("optim.weight_decay=-1e999", ["optim.weight_decay must be a finite number"]),
        ("optim.betas=[0.9]", ["optim.betas must be two numbers"]),
        ("train.seed=-1", ["train.seed must be >= 0"]),
        ("schedule.warmup_start=2", ["schedule.warmup_start"]),
        ("optim.lr=[[[[", ["optim.lr must be a number, got '[[[['"]),
    ],
)
def test_bad_recipe_numbers_are_one_line(tmp_path, override, fragments) -> None:
    _one_error_line(_train_cli(tmp_path / "run", "--set", override), *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("device", "fragment"), [("banana", "'banana'"), ("cuda:7", "'cuda:7'"), ("cuda:x", "cuda:x"),
                                                  ("", "''")])
def test_a_bad_device_is_one_line(tmp_path, device, fragment) -> None:
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    result = CliRunner().invoke(app, ["train", "resnet26-fm", "--out", str(tmp_path / "run"), "--device", device])
    _one_error_line(result, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"\xff\xfe\x00 not json", "not a readable JSON recipe file"), (b"[" * 100_000, "nested too deeply"),
     (b"[]", "recipe must be a table"), (b'{"name": "../../x"}', "single file name"),
     (b'{"optim": {"lr": 1e999}}', "optim.lr must be a finite number")],
)
def test_a_corrupt_recipe_json_on_resume_is_one_line(tmp_path, content, fragment) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / RECIPE_NAME).write_bytes(content)
    (run / STATE_NAME).write_bytes(b"")
    _one_error_line(_train_cli(run, "--resume"), str(run / RECIPE_NAME), fragment)


def test_a_corrupt_state_on_resume_is_one_line(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / RECIPE_NAME).write_text(json.dumps(load_recipe("resnet26-fm", overrides=MICRO).to_dict()))
    cases = {
        b"": "not a readable training state",
        os.urandom(3000): "not a readable training state",
        b"PK\x03\x04" + b"\x00" * 100: "not a readable training state",
    }
    for content, fragment in cases.items():
        (run / STATE_NAME).write_bytes(content)
        _one_error_line(_train_cli(run, "--resume"), str(run / STATE_NAME), fragment)
    torch.save({"epoch": 1, "model": {}}, run / STATE_NAME)
    _one_error_line(_train_cli(run, "--resume"), str(run / STATE_NAME), "not a training state (no optimizer")
    torch.save([1, 2], run / STATE_NAME)
    _one_error_line(_train_cli(run, "--resume"), "not a training state")
    assert not (run / LOCK_NAME).exists()


@needs_fashion_mnist
def test_a_truncated_or_foreign_state_on_resume_is_one_line(tmp_path, finished_run) -> None:
    run = _copy(finished_run, tmp_path / "truncated")
    data = (run / STATE_NAME).read_bytes()
    (run / STATE_NAME).write_bytes(data[: len(data) // 2])
    _one_error_line(_train_cli(run, "--resume"), str(run / STATE_NAME), "not a readable training state")
    # The state of a resnet26, resumed as a plain26 (recipe.json replayed with --set model.arch=plain26).
    run = _copy(finished_run, tmp_path / "foreign")
    _one_error_line(_train_cli(run, "--resume", items=MICRO + ["model.arch=plain26"]), str(run / STATE_NAME),
                    "does not fit this run's recipe")


@needs_fashion_mnist
@pytest.mark.parametrize(
    ("content", "fragment"),
    [('{"epoch": 1}\n{not json\n{"epoch": 2}\n', "metrics.jsonl:2: not a JSON object"),
     ('{"epoch": "one"}\n', "row 1 has no integer epoch"),
     ("[" * 100_000 + "\n", "a row is nested too deeply")],
)
def test_a_corrupt_metrics_file_on_resume_is_one_line(tmp_path, finished_run, content, fragment) -> None:
    run = _copy(finished_run, tmp_path / "run")
    (run / METRICS_NAME).write_text(content)
    _one_error_line(_train_cli(run, "--resume"), str(run / METRICS_NAME), fragment)


def test_a_read_only_out_folder_is_one_line(tmp_path, monkeypatch) -> None:
    run = tmp_path / "read-only"
    run.mkdir()
    run.chmod(0o555)
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):  # what a read-only folder does to root too
        if Path(path).parent == run and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    try:
        _one_error_line(_train_cli(run), f"cannot write {run / LOCK_NAME}: Permission denied")
        assert list(run.iterdir()) == []
    finally:
        run.chmod(0o755)


@needs_fashion_mnist
def test_a_full_disk_writing_the_state_is_one_line(tmp_path, monkeypatch) -> None:
    """The disk fills while torch.save writes state.pt: torch itself would report "inline_container.cc: unexpected
    pos"; the run says what happened, removes its temp file and keeps what it wrote before."""
    run = tmp_path / "run"

    class FullDisk:
        def __init__(self, file):
            self.file, self.room = file, 4096

        def write(self, data) -> int:
            if len(data) > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= len(data)
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        file = open(path, mode, *args, **kwargs)  # noqa: SIM115 - FullDisk closes it
        return FullDisk(file) if Path(path).name.startswith(f".{STATE_NAME}.") else file

    monkeypatch.setattr(run_files, "open", open_on_a_full_disk, raising=False)
    _one_error_line(_train_cli(run), f"no space left on device writing {run / STATE_NAME}")
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors",
                                                     "recipe.json"]


def test_write_errors_are_worded_per_cause(tmp_path) -> None:
    path = tmp_path / "model.safetensors"
    serialising = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    cases = [
        (OSError(errno.ENOSPC, "No space left on device"), f"no space left on device writing {path}"),
        (serialising, f"no space left on device writing {path}"),
        (PermissionError(errno.EACCES, "Permission denied"), f"cannot write {path}: Permission denied"),
        (OSError(errno.EROFS, "Read-only file system"), f"cannot write {path}: Read-only file system"),
    ]
    for raised, message in cases:
        with pytest.raises(run_files.RunWriteError) as info, run_files.writing(path):
            raise raised
        assert str(info.value) == message

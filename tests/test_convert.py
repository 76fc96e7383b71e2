"""``cifarzoo convert``: foreign .pth/.pt checkpoints -> cifarzoo folders, read with weights_only only."""

from __future__ import annotations

import argparse
from collections import OrderedDict

import pytest
import torch
from conftest import CodeRunningObject, write_code_running_pickle
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.engines.convert import convert_checkpoint, read_foreign_state_dict
from cifarzoo.errors import CheckpointError, CifarzooError

runner = CliRunner()


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """The weights a foreign script would have trained: a resnet26 for Fashion-MNIST."""
    torch.manual_seed(0)
    return cifarzoo.create_model("resnet26-fm", zero_init_last=False).net.state_dict()


def convert(*args: str):
    return runner.invoke(app, ["convert", *args])


def assert_loads_with(folder, state) -> None:
    model = cifarzoo.load(folder, device="cpu")
    loaded = model.net.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="bare"),
        pytest.param(lambda sd: {"net": sd, "acc": 93.1, "epoch": 199}, id="kuangliu-net"),
        pytest.param(
            lambda sd: {"state_dict": OrderedDict((f"module.{k}", v) for k, v in sd.items()), "best_prec1": 92.0},
            id="dataparallel",
        ),
        pytest.param(
            lambda sd: {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}, "optimizer": {"lr": 0.1}},
            id="compiled",
        ),
    ],
)
def test_accepted_shapes_convert_exactly(tmp_path, source, wrap) -> None:
    path = tmp_path / "old.pth"
    torch.save(wrap(source), path)
    result = convert(str(path), "--arch", "resnet26", "--dataset", "fm", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]
    assert_loads_with(tmp_path / "out", source)


def test_converted_config_is_the_zoo_entrys_without_its_metrics(tmp_path, source) -> None:
    path = tmp_path / "old.pt"
    torch.save(source, path)
    folder = convert_checkpoint(path, arch="resnet26", dataset="fashion-mnist", out=tmp_path / "out")
    config = cifarzoo.load(folder, device="cpu").config
    expected = cifarzoo.create_model("resnet26-fm").config
    assert (config.arch, config.classes, config.preprocess) == (expected.arch, expected.classes, expected.preprocess)
    assert config.name is None and config.metrics == {} and config.recipe is None and config.dataset == "fm"


def test_key_mismatch_is_reported_by_name(tmp_path, source) -> None:
    state = dict(source)
    del state["fc.weight"]
    state["linear.weight"] = torch.zeros(10, 1152)
    path = tmp_path / "kuangliu.pth"
    torch.save({"net": state}, path)
    result = convert(str(path), "--arch", "resnet26", "--dataset", "fm", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: weights do not match the model: missing keys (1): fc.weight; "
        "unexpected keys (1): linear.weight"
    ]
    assert not (tmp_path / "out").exists()


def test_wrong_arch_is_a_shape_mismatch_by_name(tmp_path, source) -> None:
    path = tmp_path / "old.pth"
    torch.save(source, path)
    with pytest.raises(CheckpointError, match=r"fc\.weight \(10, 1152\) != \(100, 1152\)"):
        convert_checkpoint(path, arch="resnet26", dataset="c100", out=tmp_path / "out")


def test_pickle_with_code_does_not_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write_code_running_pickle(path, marker)
    result = convert(str(path), "--arch", "resnet26", "--dataset", "c10", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {path}: refused: torch.load(weights_only=True) found pickled objects"
    )
    assert "posix.system" in lines[0] and "weights_only=False" not in lines[0]  # the reason, not torch's advice
    assert not marker.exists() and not (tmp_path / "out").exists()
    # The same file through torch's zip format (what torch.save writes) is refused as well.
    zipped = tmp_path / "evil.pt"
    torch.save({"conv1.weight": CodeRunningObject(marker)}, zipped)
    with pytest.raises(CheckpointError, match=r"refused: .*GLOBAL posix\.system"):
        read_foreign_state_dict(zipped)
    assert not marker.exists()


def test_pickled_objects_besides_tensors_are_refused_with_a_fix(tmp_path, source) -> None:
    path = tmp_path / "with-args.pth"
    torch.save({"net": source, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(
        CheckpointError,
        match=r"argparse\.Namespace.*re-save only the weights with torch\.save\(model\.state_dict\(\), PATH\)",
    ) as err:
        read_foreign_state_dict(path)
    assert "\n" not in str(err.value) and "add_safe_globals" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            {"epoch": 3, "acc": 91.0},
            "no state dict inside: expected tensors, or a dict with one of state_dict, model, net; "
            "found keys epoch, acc",
        ),
        (
            {"net": {"conv.weight": torch.zeros(1), "step": 3}},
            r"not a state dict of tensors \(non-tensor values under: step\)",
        ),
        ([torch.zeros(1)], "not a state dict \\(found list\\)"),
    ],
)
def test_files_without_a_state_dict_say_what_they_hold(tmp_path, content, reason) -> None:
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=reason):
        read_foreign_state_dict(path)


def test_bad_arguments_are_one_line_errors(tmp_path, source) -> None:
    path = tmp_path / "old.pth"
    torch.save(source, path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    cases = [
        ((str(tmp_path / "missing.pth"), "--arch", "resnet26", "--dataset", "fm"), "missing.pth: file not found"),
        ((str(path), "--arch", "resnet27", "--dataset", "fm"), "unknown arch 'resnet27'"),
        ((str(path), "--arch", "resnet26", "--dataset", "mnist"), "mnist"),
        (
            (str(path), "--arch", "resnet26", "--dataset", "fm", "--out", str(tmp_path / "full")),
            "already exists and is not empty",
        ),
    ]
    for args, reason in cases:
        full = [*args] if "--out" in args else [*args, "--out", str(tmp_path / "new")]
        result = convert(*full)
        assert result.exit_code == 1, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0], lines
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and not (tmp_path / "new").exists()


def test_a_corrupt_file_is_one_line(tmp_path) -> None:
    path = tmp_path / "truncated.pth"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CifarzooError, match="not a readable torch checkpoint") as err:
        read_foreign_state_dict(path)
    assert "\n" not in str(err.value)


def test_the_load_hint_names_the_folder_not_the_zoo_entry(tmp_path, source, monkeypatch) -> None:
    """Converted into ./resnet26-fm, the hint must say cifarzoo.load('./resnet26-fm'): the bare name is the zoo's."""
    monkeypatch.chdir(tmp_path)
    torch.save(source, tmp_path / "old.pth")
    result = convert("old.pth", "--arch", "resnet26", "--dataset", "fm", "--out", "resnet26-fm")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "wrote resnet26-fm (model.safetensors + config.json); load it with cifarzoo.load('./resnet26-fm')"
    )
    assert_loads_with("./resnet26-fm", source)  # what the hint says loads these weights ...
    assert cifarzoo.load("resnet26-fm", device="cpu").source.kind == "zoo"  # ... the bare name does not
    absolute = convert("old.pth", "--arch", "resnet26", "--dataset", "fm", "--out", str(tmp_path / "abs"))
    assert absolute.stdout.strip().endswith(f"cifarzoo.load({str(tmp_path / 'abs')!r})")

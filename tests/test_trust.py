"""Hardening: no code runs from a model file unasked, a zoo name means the zoo entry, training never overwrites
a folder it did not make."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cifarzoo
from cifarzoo.errors import CifarzooError
from cifarzoo.io.layout import CONFIG_NAME, TORCHSCRIPT_NAME, WEIGHTS_NAME
from cifarzoo.training.loop import train
from cifarzoo.training.recipe import load_recipe

MARKER = "CIFARZOO-TEST-MARKER: code in the TorchScript file ran"


class _CodeOnLoad(torch.nn.Module):
    """A TorchScript module whose ``__setstate__`` (run by ``torch.jit.load``) prints a marker."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        print("CIFARZOO-TEST-MARKER: code in the TorchScript file ran")
        self.w = state[0]
        self.training = state[1]


@pytest.fixture(scope="module")
def code_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("untrusted")
    cifarzoo.create_model("resnet26-fm").save_pretrained(folder)
    torch.jit.save(torch.jit.script(_CodeOnLoad()), str(folder / TORCHSCRIPT_NAME))
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "img.png")
    return folder


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifarzoo", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


@pytest.mark.parametrize("how", ["file", "folder"])
def test_torchscript_is_refused_without_trust_code(code_file, how) -> None:
    model = [str(code_file / TORCHSCRIPT_NAME)] if how == "file" else [str(code_file), "--backend", "torchscript"]
    done = _run(["predict", str(code_file / "img.png"), "--model", *model])
    assert done.returncode == 1
    assert MARKER not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust-code" in lines[0] and TORCHSCRIPT_NAME in lines[0]
    # The same file with the opt-in does run its code: the refusal above is what kept it from running.
    trusted = _run(["predict", str(code_file / "img.png"), "--model", *model, "--trust-code"])
    assert MARKER in trusted.stdout


def test_the_python_api_refuses_it_too(code_file) -> None:
    code = (
        "import cifarzoo\n"
        f"try:\n    cifarzoo.load({str(code_file / TORCHSCRIPT_NAME)!r})\n"
        "except cifarzoo.CifarzooError as exc:\n    print('REFUSED', exc)\n"
        f"try:\n    cifarzoo.load({str(code_file)!r}, backend='torchscript')\n"
        "except cifarzoo.CifarzooError as exc:\n    print('REFUSED', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("REFUSED") == 2 and "trust_code=True" in done.stdout
    assert MARKER not in done.stdout + done.stderr


def test_a_folder_named_like_a_zoo_entry_does_not_replace_it(tmp_path, c10_checkpoint) -> None:
    """`./resnet26-fm/` in the working directory changes nothing; `./resnet26-fm` names the folder."""
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "img.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = _run(["predict", str(tmp_path / "img.png"), "--json"], cwd=elsewhere)
    shutil.copytree(c10_checkpoint, tmp_path / "resnet26-fm")
    after = _run(["predict", str(tmp_path / "img.png"), "--json"], cwd=tmp_path)
    assert before.returncode == after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert json.loads(after.stdout)[0]["label"] in cifarzoo.load("resnet26-fm", backend="onnx").classes
    folder = _run(["predict", str(tmp_path / "img.png"), "--json", "--model", "./resnet26-fm"], cwd=tmp_path)
    assert folder.returncode == 0, folder.stderr
    assert json.loads(folder.stdout)[0]["label"] in cifarzoo.load(c10_checkpoint).classes  # CIFAR-10 labels


def _sha256s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_train_refuses_a_folder_it_did_not_make(tmp_path, c10_checkpoint) -> None:
    folder = tmp_path / "converted"
    shutil.copytree(c10_checkpoint, folder)
    assert {WEIGHTS_NAME, CONFIG_NAME} <= set(_sha256s(folder))
    before = _sha256s(folder)
    recipe = load_recipe("resnet26-fm", overrides=["train.epochs=1"])
    with pytest.raises(CifarzooError, match="already exists and is not empty.*--overwrite"):
        train(recipe, folder, device="cpu", progress=False)
    done = _run(["train", "resnet26-fm", "--out", str(folder), "--epochs", "1", "--device", "cpu"])
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0 and "--overwrite" in done.stderr
    assert _sha256s(folder) == before
    with pytest.raises(CifarzooError, match="pass one of them"):
        train(recipe, folder, device="cpu", resume=True, overwrite=True)

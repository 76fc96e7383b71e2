"""The fast path for a checkpoint folder without model.onnx: one parity-checked export into the cache, keyed by the
checkpoint's sha256, reused by every later load; ``--backend torch`` stays exact fp32."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import cifarzoo
from cifarzoo.errors import CifarzooError
from cifarzoo.io.layout import ONNX_NAME
from cifarzoo.io.onnx_cache import cache_root, cached_onnx_path, checkpoint_key
from cifarzoo.model import ZooModel
from cifarzoo.runtime.onnx import OnnxModel


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CIFARZOO_CACHE", str(folder))
    return folder


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(1)
    folder = tmp_path / "ckpt"
    cifarzoo.create_model("resnet26-fm", zero_init_last=False).save_pretrained(folder)
    return folder


def test_cache_root_follows_cifarzoo_cache_then_xdg(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CIFARZOO_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("CIFARZOO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "cifarzoo"


def test_auto_exports_once_then_reuses_the_file(cache, checkpoint, rng) -> None:
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(8)]
    first = cifarzoo.load(checkpoint, device="cpu", backend="auto")
    assert isinstance(first, OnnxModel) and first.cached_export and first.backend == "onnx"
    path = cached_onnx_path(checkpoint)
    assert first.path == path and path.is_file() and path.is_relative_to(cache)
    assert not (checkpoint / ONNX_NAME).exists()  # the user's folder is left as it was
    assert [p for p in path.parent.iterdir()] == [path]  # no staging file left behind
    stamp = path.stat().st_mtime_ns
    second = cifarzoo.load(checkpoint, device="cpu", backend="auto")
    assert second.path == path and path.stat().st_mtime_ns == stamp  # reused, not exported again

    exact = cifarzoo.load(checkpoint, device="cpu", backend="torch")
    assert isinstance(exact, ZooModel) and not exact.cached_export  # --backend torch: the fp32 network itself
    batch = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(second.logits(batch), exact.logits(batch), rtol=1e-4, atol=1e-4)
    assert [p.label for p in second.predict(images)] == [p.label for p in exact.predict(images)]


def test_the_key_changes_with_the_weights_and_the_config(cache, checkpoint, tmp_path) -> None:
    key = checkpoint_key(checkpoint)
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    assert checkpoint_key(copy) == key  # the content, not the place
    model = cifarzoo.load(copy, device="cpu")
    with torch.no_grad():
        model.net.fc.bias.add_(1.0)
    model.save_pretrained(copy)
    assert checkpoint_key(copy) != key
    config = json.loads((checkpoint / "config.json").read_text())
    config["classes"] = [c.upper() for c in config["classes"]]
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert checkpoint_key(checkpoint) != key
    cifarzoo.load(checkpoint, device="cpu", backend="auto")
    cifarzoo.load(copy, device="cpu", backend="auto")
    assert len(list((cache / "onnx").iterdir())) == 2


def test_onnx_backend_on_a_folder_without_its_file_uses_the_cache(cache, checkpoint) -> None:
    model = cifarzoo.load(checkpoint, device="cpu", backend="onnx")
    assert isinstance(model, OnnxModel) and model.cached_export and model.path == cached_onnx_path(checkpoint)


def test_a_folder_with_its_own_onnx_file_uses_it(cache, checkpoint) -> None:
    from cifarzoo.engines.export import export

    export(checkpoint, fmt="onnx")
    model = cifarzoo.load(checkpoint, device="cpu", backend="auto")
    assert model.path == checkpoint / ONNX_NAME and not model.cached_export
    assert not cache.exists()


def test_an_unwritable_cache_falls_back_to_torch_for_auto_and_is_one_line_for_onnx(
    tmp_path, monkeypatch, checkpoint
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CIFARZOO_CACHE", str(blocker))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cifarzoo.load(checkpoint, device="cpu", backend="auto")
    assert isinstance(model, ZooModel)
    assert any("running on torch" in str(w.message) for w in caught)
    with pytest.raises(CifarzooError, match="cannot create the export cache") as err:
        cifarzoo.load(checkpoint, device="cpu", backend="onnx")
    assert "\n" not in str(err.value)


def test_cli_says_which_backend_ran_and_a_cached_load_never_imports_torch(cache, checkpoint, tmp_path) -> None:
    from PIL import Image

    image = tmp_path / "one.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(image)
    env = {**os.environ, "CIFARZOO_CACHE": str(cache)}
    cli = [sys.executable, "-m", "cifarzoo"]
    first = subprocess.run([*cli, "predict", str(image), "--model", str(checkpoint), "--json", "--verbose"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)[0]["backend"] == "onnx"  # stdout stays one JSON document, export included
    assert f"backend: onnx (cached export: {cached_onnx_path(checkpoint)})" in first.stderr
    exact = subprocess.run([*cli, "predict", str(image), "--model", str(checkpoint), "--json", "--backend", "torch"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert json.loads(exact.stdout)[0]["backend"] == "torch"
    code = (
        "import json, sys, cifarzoo\n"
        f"model = cifarzoo.load({str(checkpoint)!r}, device='cpu', backend='auto')\n"
        f"print(json.dumps([model.predict({str(image)!r})[0].label, 'torch' in sys.modules]))\n"
    )
    cached = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert cached.returncode == 0, cached.stderr
    label, torch_imported = json.loads(cached.stdout.splitlines()[-1])
    assert label == json.loads(first.stdout)[0]["label"] and torch_imported is False

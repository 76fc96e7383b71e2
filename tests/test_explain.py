"""Grad-CAM: exact on a network whose answer is known, sensible on the trained model, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import cifarzoo
import cifarzoo.io.resolve
from cifarzoo.cli import app
from cifarzoo.data.preprocess import preprocess
from cifarzoo.engines.explain import grad_cam, overlay
from cifarzoo.errors import CifarzooError
from cifarzoo.registry import DEFAULT_MODEL

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class ChannelVote(nn.Module):
    """Class c's logit is the spatial mean of input channel c: its Grad-CAM is that channel, scaled to [0, 1]."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _halves(n: int = 2, size: int = 8) -> torch.Tensor:
    x = torch.zeros(n, 2, size, size)
    x[:, 0, :, : size // 2] = 1.0  # class 0's evidence on the left
    x[:, 1, :, size // 2 :] = 2.0  # class 1's (stronger) on the right
    return x


def test_grad_cam_follows_the_chosen_class_exactly() -> None:
    x = _halves()
    left = grad_cam(ChannelVote(), x, class_index=0)
    right = grad_cam(ChannelVote(), x, class_index=1)
    np.testing.assert_allclose(left.heatmaps, x[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(right.heatmaps, x[:, 1].numpy() / 2, atol=1e-6)
    top = grad_cam(ChannelVote(), x)  # default: each image's top class, here 1
    assert top.class_indices.tolist() == [1, 1]
    np.testing.assert_allclose(top.heatmaps, right.heatmaps)
    per_image = grad_cam(ChannelVote(), x, class_index=[0, 1])
    np.testing.assert_allclose(per_image.heatmaps[0], left.heatmaps[0])
    np.testing.assert_allclose(per_image.heatmaps[1], right.heatmaps[1])


@pytest.fixture(scope="module")
def trained():
    return cifarzoo.load("resnet26-fm")


def test_grad_cam_on_the_trained_model(trained) -> None:
    paths = sorted(EXAMPLES.glob("*.png"))[:4]
    x = torch.from_numpy(preprocess(paths, trained.config.preprocess))
    net = trained.net.train()  # grad_cam must evaluate in eval mode and give the mode back
    result = grad_cam(net, x)
    assert net.training and all(p.grad is None for p in net.parameters())
    assert result.heatmaps.shape == (4, 28, 28) and result.heatmaps.dtype == np.float32
    assert result.heatmaps.min() >= 0 and np.allclose(result.heatmaps.max((1, 2)), 1.0)
    with torch.no_grad():
        logits = trained.net.eval()(x)
    assert result.class_indices.tolist() == logits.argmax(1).tolist()
    np.testing.assert_allclose(result.probs, logits.softmax(1).numpy(), atol=1e-5)

    # Another class's evidence lies elsewhere: the maps differ clearly.
    other = grad_cam(net, x, class_index=[(int(c) + 5) % 10 for c in result.class_indices])
    assert np.abs(other.heatmaps - result.heatmaps).mean() > 0.05

    finer = grad_cam(net, x, layer="stages.1")
    assert finer.heatmaps.shape == (4, 28, 28) and np.allclose(finer.heatmaps.max((1, 2)), 1.0)

    net.train().stages[0].eval()  # a submodule deliberately in eval mode (frozen) keeps its mode
    grad_cam(net, x)
    assert net.training and not net.stages[0].training and net.stages[1].training


def test_grad_cam_input_errors(trained) -> None:
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(CifarzooError, match="class index 10 is out of range for a 10-class model"):
        grad_cam(trained.net, x, class_index=10)
    with pytest.raises(CifarzooError, match="3 class indices for a batch of 2"):
        grad_cam(trained.net, x, class_index=[1, 2, 3])
    with pytest.raises(CifarzooError, match="no layer 'stages.9'"):
        grad_cam(trained.net, x, layer="stages.9")
    with pytest.raises(CifarzooError, match="does not output a .N, C, H, W. feature map"):
        grad_cam(trained.net, x, layer="fc")


def test_overlay_is_an_rgb_image_of_the_requested_size() -> None:
    image = np.zeros((28, 28, 1), np.uint8)
    heat = np.zeros((28, 28), np.float32)
    heat[:14] = 1.0
    out = overlay(image, heat, size=112, alpha=1.0)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    # jet: hot (red) where the map is 1, cold (blue) where it is 0
    assert out[10, 50, 0] > 100 and out[10, 50, 2] < 50
    assert out[100, 50, 2] > 100 and out[100, 50, 0] < 50


def test_cli_explain(tmp_path, trained) -> None:
    image = EXAMPLES / "test00000_ankle-boot.png"
    runner = CliRunner()
    result = runner.invoke(app, ["explain", str(image), "--out", str(tmp_path / "cam.png"), "--json"])
    assert result.exit_code == 0, result.output
    assert '"class": "Ankle boot"' in result.stdout and '"top_class": "Ankle boot"' in result.stdout
    with Image.open(tmp_path / "cam.png") as img:
        assert img.size == (2 * 224 + 8, 224 + 22) and img.mode == "RGB"
    result = runner.invoke(app, ["explain", str(image), "--out", str(tmp_path / "b.png"), "--class", "sandals"])
    assert result.exit_code == 0 and "Grad-CAM for Sandal" in result.stdout and "top class Ankle boot" in result.stdout
    with Image.open(tmp_path / "cam.png") as a, Image.open(tmp_path / "b.png") as b:
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean() > 1.0

    result = runner.invoke(app, ["explain", str(image), "--out", str(tmp_path / "c.png"), "--class", "zebra"])
    assert result.exit_code == 1 and "--class 'zebra' is not one of the model's classes" in result.stderr
    # The default release always ships an ONNX file (registry.offline_default); explain refuses it.
    onnx_file = Path(cifarzoo.io.resolve.resolve_model_dir(DEFAULT_MODEL)) / "model.onnx"
    assert onnx_file.is_file()
    result = runner.invoke(app, ["explain", str(image), "--model", str(onnx_file), "--out", str(tmp_path / "e.png")])
    assert result.exit_code == 1 and "explain needs the torch weights" in result.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    result = runner.invoke(app, ["explain", str(bad), "--out", str(tmp_path / "d.png")])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {bad}")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "d.png").exists()

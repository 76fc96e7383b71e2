"""The architecture's single implementations: one runner, one resolver, one config factory, one option list."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import cifarzoo
from cifarzoo.cli.evaluate import Tta
from cifarzoo.cli.predict import Backend
from cifarzoo.data.specs import IMAGENET_MEAN, IMAGENET_STD
from cifarzoo.data.tta import TTA_MODES
from cifarzoo.io.layout import ONNX_NAME, WEIGHTS_NAME
from cifarzoo.io.resolve import resolve
from cifarzoo.model import ZooModel
from cifarzoo.registry import ZOO, model_config
from cifarzoo.runtime.backends import BACKENDS
from cifarzoo.runtime.torch_runner import TorchRunner


def _is_channels_last(module: torch.nn.Module) -> bool:
    convs = [p for p in module.parameters() if p.dim() == 4 and p.shape[2] > 1]
    return all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)


def test_torch_runner_restores_the_users_module() -> None:
    """ZooModel.logits runs in eval mode and channels_last, and hands the module back as it found it."""
    torch.manual_seed(0)
    model = cifarzoo.create_model("resnet26-c10").train()
    assert not _is_channels_last(model.net)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    logits = model.logits(x)
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    assert model.training and model.net.training
    assert not _is_channels_last(model.net)
    assert all(p.is_contiguous() for p in model.net.parameters())
    # BatchNorm statistics did not move: the forward ran in eval mode.
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, before[key]), key
    # The same logits as a plain eval-mode forward in the default layout.
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_torch_runner_keeps_a_channels_last_module_channels_last() -> None:
    net = cifarzoo.create_model("resnet26-c10").net.to(memory_format=torch.channels_last)
    TorchRunner(net)(np.zeros((1, 3, 32, 32), np.float32))
    assert _is_channels_last(net)


def test_uint8_and_numpy_paths_agree() -> None:
    """Training's on-device validation and every backend's numpy path normalise the same way."""
    torch.manual_seed(1)
    model = cifarzoo.create_model("resnet26-fm").eval()
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8))
    runner = TorchRunner(model.net)
    from cifarzoo.data.preprocess import normalize

    via_numpy = runner(normalize(images.permute(0, 2, 3, 1).numpy(), model.config.preprocess))
    via_tensor = runner.uint8_logits(images, model.config.preprocess).numpy()
    np.testing.assert_allclose(via_tensor, via_numpy, rtol=1e-4, atol=1e-4)


def test_one_resolver_for_every_kind_of_reference(tmp_path, c10_checkpoint) -> None:
    assert resolve(c10_checkpoint).kind == "folder"
    assert resolve(str(c10_checkpoint)).path == c10_checkpoint
    (tmp_path / ONNX_NAME).write_bytes(b"not really onnx")
    file_source = resolve(tmp_path / ONNX_NAME)
    assert (file_source.kind, file_source.directory) == ("file", tmp_path)
    zoo = resolve("resnet26-fm")
    assert zoo.kind == "zoo" and (zoo.path / WEIGHTS_NAME).is_file()
    with pytest.raises(cifarzoo.CifarzooError, match="architecture, not a trained model"):
        resolve("resnet26")
    with pytest.raises(cifarzoo.CifarzooError, match="no such checkpoint directory"):
        resolve("./missing-folder")


def test_from_pretrained_is_what_load_returns_for_torch(tmp_path, c10_checkpoint) -> None:
    a = ZooModel.from_pretrained(c10_checkpoint, device="cpu")
    b = cifarzoo.load(c10_checkpoint, device="cpu")
    assert isinstance(b, ZooModel) and a.config == b.config
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    (tmp_path / ONNX_NAME).write_bytes(b"an exported file")
    with pytest.raises(cifarzoo.CifarzooError, match="not torch weights"):
        ZooModel.from_pretrained(tmp_path / ONNX_NAME, device="cpu")


def test_one_config_factory() -> None:
    # A zoo entry's config, through the entry and through the factory by name, is one and the same.
    for name, entry in ZOO.items():
        assert entry.model_config() == model_config(name), name
    # An arch gets CIFAR-10's classes and preprocessing; a transfer arch always normalises with ImageNet's.
    plain = model_config("resnet26")
    assert plain.classes == ZOO["resnet26-c10"].dataset.classes and plain.name is None
    tv = model_config("tv_resnet50", classes=["a", "b"])
    assert (tv.preprocess.mean, tv.preprocess.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert tv.num_classes == 2 and tv.name is None and not tv.metrics
    # A new head drops the entry's name and metrics; the same head keeps them.
    assert model_config("resnet26-fm", num_classes=3).name is None
    assert model_config("resnet26-fm").metrics == dict(ZOO["resnet26-fm"].metrics)
    with pytest.raises(cifarzoo.CifarzooError, match="conflicts"):
        model_config("resnet26", classes=["a", "b"], num_classes=3)


def test_cli_choices_are_the_library_lists() -> None:
    assert tuple(member.value for member in Backend) == BACKENDS
    assert tuple(member.value for member in Tta) == TTA_MODES


def test_push_to_hub_builds_the_publish_folder(tmp_path) -> None:
    """push_to_hub delegates to publish: a dry run builds the same repo folder `cifarzoo publish` would."""
    torch.manual_seed(0)
    model = cifarzoo.create_model("resnet26-fm")
    result = model.push_to_hub("user/resnet26-fm-test", dry_run=True, out=tmp_path / "repo", int8=False)
    assert result.upload is None
    files = set(result.folder.files)
    assert {"config.json", "model.safetensors", "model.onnx", "model.torchscript.pt", "README.md"} <= files
    reloaded = cifarzoo.load(tmp_path / "repo", device="cpu")
    assert dataclasses.replace(reloaded.config, cifarzoo_version="") == dataclasses.replace(
        model.config, cifarzoo_version=""
    )

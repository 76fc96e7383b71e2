"""The torchvision ResNet-50 transfer arch: freeze modes and ImageNet weights from file or cache."""

from __future__ import annotations

import pytest
import torch
from conftest import write_code_running_pickle
from torch import nn

import cifarzoo
from cifarzoo.errors import CifarzooError
from cifarzoo.io import pretrained


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A state dict with torchvision's ResNet-50 layout (random values: the real file is not reachable)."""
    from torchvision.models import resnet50

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("imagenet") / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    return path


def _grads_after_step(model: nn.Module) -> set[str]:
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1]))
    loss.backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_freeze_all_but_head_trains_exactly_the_head() -> None:
    model = cifarzoo.create_model("tv_resnet50-c10", freeze="all-but-head")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"net.fc.weight", "net.fc.bias"}
    assert _grads_after_step(model) == {"net.fc.weight", "net.fc.bias"}
    assert not model.net.backbone.training  # frozen BatchNorm statistics stay put in train mode


def test_freeze_none_trains_everything() -> None:
    model = cifarzoo.create_model("tv_resnet50-c10", freeze="none")
    assert _grads_after_step(model) == {n for n, _ in model.named_parameters()}


def test_input_policy_upsamples_to_224() -> None:
    model = cifarzoo.create_model("tv_resnet50-c10").eval()
    with torch.no_grad():
        assert model.net.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 2048, 7, 7)


def test_forward_equals_torchvision_resnet50_after_upsampling_to_224(imagenet_file) -> None:
    """Golden reference: with torchvision's ResNet-50 weights (random, seeded) in the backbone and its ImageNet
    head as ours, tv_resnet50 on a 32x32 image is torchvision's resnet50 on that image upsampled to 224x224
    (bilinear, align_corners=False): the same network behind the documented input policy, nothing else."""
    import torch.nn.functional as F
    from torchvision.models import resnet50

    reference = resnet50(weights=None)
    reference.load_state_dict(torch.load(imagenet_file, weights_only=True))
    reference.eval()
    model = cifarzoo.create_model("tv_resnet50-c10", num_classes=1000, pretrained=imagenet_file).eval()
    model.net.fc.load_state_dict(reference.fc.state_dict())  # the one part load_backbone leaves out
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False))
        got = model(x)
        nearest = reference(F.interpolate(x, size=(224, 224), mode="nearest"))
    assert got.shape == (4, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    # The tolerance is tight enough to tell the upsampling apart: another resize gives other logits.
    assert not torch.allclose(got, nearest, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_imagenet_weights_from_a_local_file(imagenet_file) -> None:
    model = cifarzoo.create_model("tv_resnet50-c100", pretrained=imagenet_file)
    expected = torch.load(imagenet_file, weights_only=True)
    assert torch.equal(model.net.backbone.conv1.weight, expected["conv1.weight"])
    assert torch.equal(model.net.backbone.layer4[2].bn3.running_var, expected["layer4.2.bn3.running_var"])
    assert model.net.fc.out_features == 100  # the ImageNet head is replaced, not loaded


def test_imagenet_weights_from_torchvision_cache(imagenet_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = pretrained.torchvision_cache_dir()
    assert cache == tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / pretrained.TORCHVISION_RESNET50_FILES[0]).write_bytes(imagenet_file.read_bytes())
    model = cifarzoo.create_model("tv_resnet50-c10", pretrained=True)
    assert torch.equal(model.net.backbone.conv1.weight, torch.load(imagenet_file, weights_only=True)["conv1.weight"])


def test_offline_without_weights_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*_args, **_kwargs):
        import urllib.error

        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CifarzooError, match=r"not in torchvision's cache .* could not be downloaded .*URLError"):
        cifarzoo.create_model("tv_resnet50-c10", pretrained=True)
    with pytest.raises(CifarzooError, match="ImageNet weights file not found"):
        cifarzoo.create_model("tv_resnet50-c10", pretrained=tmp_path / "missing.pth")


def test_pickle_with_code_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write_code_running_pickle(path, marker)
    with pytest.raises(CifarzooError, match="cannot read ImageNet weights"):
        pretrained.imagenet_state_dict(path)
    assert not marker.exists()


def test_pretrained_is_only_for_backbones() -> None:
    with pytest.raises(CifarzooError, match="cifarzoo.load"):
        cifarzoo.create_model("resnet26-c10", pretrained=True)

"""Every registered arch: shapes, gradients, the plain twins' missing skip path, options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifarzoo.models.factory import build_model, count_params
from cifarzoo.models.resnet import ResidualBlock
from cifarzoo.models.specs import ARCHS, CifarResNetSpec

CIFAR_ARCHS = [name for name, spec in ARCHS.items() if isinstance(spec, CifarResNetSpec)]


def _input(arch: str, batch: int = 2, in_chans: int = 3, size: int = 32) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, in_chans, size, size)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("num_classes", [10, 100])
def test_forward_shape(arch: str, num_classes: int) -> None:
    model = build_model(arch, num_classes=num_classes).eval()
    with torch.no_grad():
        logits = model(_input(arch))
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_gradient_reaches_every_parameter(arch: str) -> None:
    # zero_init_last would make the first step's gradient exactly zero inside each residual branch, which
    # says nothing about connectivity; switch it off to see every parameter wired into the loss.
    args = {"zero_init_last": False} if arch in CIFAR_ARCHS else {}
    model = build_model(arch, num_classes=10, **args).train()
    loss = nn.functional.cross_entropy(model(_input(arch, batch=4)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reaches: {dead[:5]}"


@pytest.mark.parametrize("arch", CIFAR_ARCHS)
def test_grayscale_and_other_sizes(arch: str) -> None:
    model = build_model(arch, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        assert model(_input(arch, in_chans=1, size=28)).shape == (2, 10)
        assert model(_input(arch, in_chans=1, size=40)).shape == (2, 10)


def _blocks(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


@pytest.mark.parametrize("arch", CIFAR_ARCHS)
def test_zeroed_branch_gives_zeros_only_without_skip(arch: str) -> None:
    model = build_model(arch, num_classes=10).eval()
    is_plain = not ARCHS[arch].residual
    for block in _blocks(model):
        in_ch = block.branch[0].in_channels
        x = torch.randn(2, in_ch, 8, 8).abs() + 0.1  # positive, so relu(x) == x
        handle = block.branch.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
        with torch.no_grad():
            out = block(x)
        handle.remove()
        if is_plain:
            assert block.shortcut is None
            assert torch.count_nonzero(out) == 0
        else:
            assert torch.count_nonzero(out) > 0
            if isinstance(block.shortcut, nn.Identity):
                assert torch.equal(out, x)  # an identity skip passes the input straight through


@pytest.mark.parametrize("depth", ["26", "34", "50"])
def test_plain_twin_is_the_same_network_minus_skips(depth: str) -> None:
    residual, plain = build_model(f"resnet{depth}"), build_model(f"plain{depth}")
    assert len(_blocks(residual)) == len(_blocks(plain))
    branch_shapes = lambda m: [tuple(p.shape) for b in _blocks(m) for p in b.branch.parameters()]  # noqa: E731
    assert branch_shapes(residual) == branch_shapes(plain)
    assert all(b.shortcut is not None for b in _blocks(residual))
    # The only parameters the plain twin lacks are the residual net's projection shortcuts.
    projections = sum(p.numel() for b in _blocks(residual) if b.shortcut is not None for p in b.shortcut.parameters())
    assert count_params(residual) - count_params(plain) == projections


@pytest.mark.parametrize("arch", ["resnet26", "resnet34", "resnet50"])
def test_zero_init_makes_blocks_start_as_identity_paths(arch: str) -> None:
    model = build_model(arch).eval()
    for block in _blocks(model):
        x = torch.randn(1, block.branch[0].in_channels, 8, 8)
        assert torch.count_nonzero(block.branch(x)) == 0


@pytest.mark.parametrize("arch", CIFAR_ARCHS)
def test_under_five_million_parameters(arch: str) -> None:
    assert count_params(build_model(arch, num_classes=10)) < 5_000_000


# The original studies' parameter counts for CIFAR-10 (recorded in cifarzoo/models/specs.py and the design
# issue). Our widths land 2.08%, 1.99% and 1.88% below them, so the bound is their real gap, 2.1%, not a
# generous 10% that a wrong width or a missing stage would still pass.
STUDY_COUNTS = {"resnet26": 4_196_906, "resnet34": 4_348_082, "resnet50": 4_815_794}


@pytest.mark.parametrize(("arch", "reference"), list(STUDY_COUNTS.items()))
def test_within_the_original_studies_real_gap(arch: str, reference: int) -> None:
    assert abs(count_params(build_model(arch, num_classes=10)) - reference) / reference <= 0.021


# The studies give no counts for the plain nets (and ours are defined as the ResNets minus every skip
# connection), so their counts are pinned exactly: the same numbers as README.md and the registry.
EXACT_COUNTS = {
    "resnet26": 4_109_482, "resnet34": 4_261_674, "resnet50": 4_725_354,
    "plain26": 3_347_626, "plain34": 4_224_010, "plain50": 4_127_978,
}


@pytest.mark.parametrize(("arch", "count"), list(EXACT_COUNTS.items()))
def test_exact_parameter_counts_for_cifar10(arch: str, count: int) -> None:
    assert count_params(build_model(arch, num_classes=10)) == count


def test_se_blocks_add_gates_and_parameters() -> None:
    plain_model, se_model = build_model("resnet26"), build_model("resnet26", se=True)
    gates = [m for m in se_model.modules() if type(m).__name__ == "SqueezeExcite"]
    assert len(gates) == len(_blocks(se_model)) and count_params(se_model) > count_params(plain_model)
    with torch.no_grad():
        assert se_model.eval()(_input("resnet26")).shape == (2, 10)


def test_dropout_before_head_is_active_only_in_training() -> None:
    model = build_model("resnet26", drop_rate=0.5)
    x = _input("resnet26")
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        features = model.forward_features(x)
        assert not torch.equal(model.forward_head(features), model.forward_head(features))


def test_unknown_model_args_are_a_clear_error() -> None:
    from cifarzoo.errors import ConfigError

    with pytest.raises(ConfigError, match="resnet26"):
        build_model("resnet26", dropout=0.1)

"""The optimiser-study variants (SGD + L2 in the loss, Adam + weight decay, AdamW, ReduceLROnPlateau) and the
per-stage gradient norms that make vanishing gradients visible."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import cifarzoo
from cifarzoo.registry import ZOO
from cifarzoo.training.loop import Trainer
from cifarzoo.training.optim import build_optimizer, l2_penalty
from cifarzoo.training.recipe import load_recipe


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_recipe_has_the_optimiser_study_variants(name) -> None:
    base = load_recipe(name)
    sgd_l2 = load_recipe(name, variant="sgd-l2")
    assert (
        sgd_l2.optim.l2_in_loss and sgd_l2.optim.name == "sgd" and sgd_l2.optim.weight_decay == base.optim.weight_decay
    )
    adam = load_recipe(name, variant="adam-wd")
    assert (adam.optim.name, adam.optim.lr, adam.optim.weight_decay, adam.optim.l2_in_loss) == (
        "adam", 1e-3, 5e-4, False
    )
    assert load_recipe(name, variant="adamw").optim.name == "adamw"
    plateau = load_recipe(name, variant="plateau")
    assert (plateau.schedule.name, plateau.schedule.patience, plateau.schedule.gamma) == ("plateau", 2, 0.1)
    # Only the optimiser or schedule changes: the data, model and epochs stay the study's.
    for variant in (sgd_l2, adam, plateau):
        assert (variant.model, variant.data, variant.train) == (base.model, base.data, base.train)


def _one_step(recipe_variant: str | None, seed: int = 0) -> dict[str, torch.Tensor]:
    # float64: a freshly initialised deep net amplifies float32 rounding (1e-8 after one step) to 1e-4
    # within three, which would hide whether the two updates are really the same.
    recipe = load_recipe("resnet26-c10", variant=recipe_variant, overrides=["model.drop_rate=0"])
    torch.manual_seed(seed)
    net = cifarzoo.create_model("resnet26-c10", zero_init_last=False).net.double().train()
    optimizer = build_optimizer(net, recipe.optim)
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(8)
    for _ in range(3):  # several steps, so the momentum buffer takes part
        loss = F.cross_entropy(net(x), y)
        penalty = l2_penalty(net, recipe.optim)
        (loss + penalty if penalty is not None else loss).backward()
        optimizer.step()
        optimizer.zero_grad()
    return copy.deepcopy(net.state_dict())


def test_l2_in_the_loss_equals_sgds_weight_decay() -> None:
    """For SGD the two are the same update (the gradient of wd/2 ||w||^2 is wd * w); the variant exists to
    show that, and that they part ways for Adam."""
    built_in, in_loss = _one_step(None), _one_step("sgd-l2")
    assert load_recipe("resnet26-c10", variant="sgd-l2").optim.l2_in_loss
    for key in built_in:
        torch.testing.assert_close(in_loss[key], built_in[key], rtol=1e-9, atol=1e-10)
    recipe = load_recipe("resnet26-c10", variant="sgd-l2")
    assert all(group["weight_decay"] == 0.0 for group in build_optimizer(cifarzoo.create_model("resnet26-c10").net,
                                                                          recipe.optim).param_groups)


def test_adam_wd_is_coupled_weight_decay_on_the_weights_only() -> None:
    net = cifarzoo.create_model("resnet26-c10").net
    optimizer = build_optimizer(net, load_recipe("resnet26-c10", variant="adam-wd").optim)
    assert type(optimizer) is torch.optim.Adam
    decayed, not_decayed = optimizer.param_groups
    assert decayed["weight_decay"] == 5e-4 and not_decayed["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in not_decayed["params"])


def test_grad_norms_are_per_stage_l2_norms() -> None:
    net = cifarzoo.create_model("plain26-fm").net
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.5)
    fake_trainer = type("T", (), {"net": net})()
    norms: dict[str, float] = {}
    Trainer._accumulate_grad_norms(fake_trainer, norms)
    Trainer._accumulate_grad_norms(fake_trainer, norms)  # accumulated over steps; the loop divides by steps
    counts: dict[str, int] = {}
    for name, p in net.named_parameters():
        stage = name.split(".")[0] if not name.startswith("stages.") else ".".join(name.split(".")[:2])
        counts[stage] = counts.get(stage, 0) + p.numel()
    assert list(norms) == ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "fc"]
    for stage, count in counts.items():
        assert norms[stage] == pytest.approx(2 * 0.5 * math.sqrt(count), rel=1e-6)

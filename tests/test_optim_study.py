"""The optimiser-study variants (SGD + L2 in the loss, Adam + weight decay, AdamW, ReduceLROnPlateau), SAM and
gradient clipping, each checked in effect (the update it makes), and the per-stage gradient norms that make
vanishing gradients visible."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cifarzoo
from cifarzoo.data.specs import CIFAR10
from cifarzoo.engines.evaluate import compute_report
from cifarzoo.registry import ZOO
from cifarzoo.training import run_files
from cifarzoo.training.distributed import DistContext
from cifarzoo.training.loop import TrainData, Trainer
from cifarzoo.training.optim import build_optimizer, l2_penalty
from cifarzoo.training.recipe import OptimSection, load_recipe


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


# ----------------------------------------------------------------------------------------------------------
# Each optimiser feature, in effect: the update one real training step makes, against the update worked out by hand.

# Plain SGD (no momentum, no weight decay, fp32, no dropout or label smoothing), so an update is -lr * gradient.
PLAIN = ["model.drop_rate=0", "train.precision=fp32", "train.channels_last=false", "train.ema_decay=0",
         "train.batch_size=8", "train.label_smoothing=0", "data.val_size=0", "data.crop_padding=0", "data.flip=false",
         "optim.momentum=0", "optim.weight_decay=0", "schedule.warmup_epochs=0", "schedule.name=constant"]


def _trainer(run_dir: Path, *overrides: str) -> Trainer:
    """A Trainer of resnet26-c10 (seeded from train.seed) on 8 generated 16x16 images."""
    recipe = load_recipe("resnet26-c10", overrides=[*PLAIN, *overrides])
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8)
    data = TrainData(images, labels, images[:0], labels[:0], None, None, CIFAR10.classes,
                     CIFAR10.preprocess_config(), CIFAR10.tag)
    return Trainer(recipe, run_dir, data, DistContext(), progress=False)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.arange(8)


def _params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _gradient(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The gradient the trainer's loss has at ``net``'s weights, on a copy (BatchNorm statistics untouched)."""
    probe = copy.deepcopy(net).train()
    F.cross_entropy(probe(x), y).backward()
    return [p.grad.detach().clone() for p in probe.parameters()]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def test_sam_steps_with_the_gradient_at_the_perturbed_weights(tmp_path) -> None:
    """SAM (Foret et al.): g1 at w, ascend to w + rho * g1 / ||g1||, step with the gradient g2 there. Plain SGD on
    the same batch steps with g1; the two updates differ."""
    rho, lr = 0.05, 0.1
    sam, sgd = _trainer(tmp_path, f"optim.sam_rho={rho}", f"optim.lr={lr}"), _trainer(tmp_path, f"optim.lr={lr}")
    x, y = _batch()
    start = _params(sam.net)
    assert all(torch.equal(a, b) for a, b in zip(start, _params(sgd.net)))  # the same seeded start
    g1 = _gradient(sam.net, x, y)
    ascended = copy.deepcopy(sam.net)
    with torch.no_grad():
        scale = rho / _flat(g1).norm()
        for p, g in zip(ascended.parameters(), g1):
            p.add_(g * scale)
    g2 = _gradient(ascended, x, y)

    sam.train_step(x, y)
    sgd.train_step(x, y)
    for w, g_sam, g_sgd, p_sam, p_sgd in zip(start, g2, g1, sam.net.parameters(), sgd.net.parameters()):
        torch.testing.assert_close(p_sam.detach(), w - lr * g_sam, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(p_sgd.detach(), w - lr * g_sgd, rtol=1e-5, atol=1e-7)
    sam_update = _flat(_params(sam.net)) - _flat(start)
    sgd_update = _flat(_params(sgd.net)) - _flat(start)
    assert (sam_update - sgd_update).norm() > 0.05 * sgd_update.norm()


def test_gradient_clipping_bounds_the_update_norm(tmp_path) -> None:
    """With lr 1 and grad_clip c the update is the gradient scaled to norm c: its norm is c, its direction the
    gradient's."""
    clip = 0.01
    trainer = _trainer(tmp_path, f"optim.grad_clip={clip}", "optim.lr=1.0")
    x, y = _batch()
    start = _params(trainer.net)
    gradient = _flat(_gradient(trainer.net, x, y))
    assert gradient.norm() > 10 * clip  # the clip really bites
    trainer.train_step(x, y)
    update = _flat(_params(trainer.net)) - _flat(start)
    assert float(update.norm()) == pytest.approx(clip, rel=1e-4)
    assert float(F.cosine_similarity(update.double(), -gradient.double(), dim=0)) == pytest.approx(1.0, abs=1e-5)


def test_adamw_decay_is_decoupled_and_adams_is_not() -> None:
    """With a zero gradient AdamW still shrinks every decayed weight by exactly lr * weight_decay; BatchNorm and
    biases do not decay. Adam adds the decay to the gradient instead, so its adaptive step moves each weight by
    about lr, whatever the weight's size."""
    lr, wd = 0.01, 0.1
    for name in ("adamw", "adam"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
        start = copy.deepcopy(model.state_dict())
        optimizer = build_optimizer(model, OptimSection(name=name, lr=lr, weight_decay=wd))
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        weight = model[0].weight.detach()
        if name == "adamw":
            torch.testing.assert_close(weight, start["0.weight"] * (1 - lr * wd), rtol=0, atol=1e-8)
        else:
            torch.testing.assert_close(weight - start["0.weight"], -lr * start["0.weight"].sign(), rtol=1e-4, atol=0)
        for key in ("0.bias", "1.weight", "1.bias"):
            assert torch.equal(model.state_dict()[key], start[key]), (name, key)


@pytest.mark.parametrize(("val_losses", "expected_lrs"), [
    ([2.0] * 5, [0.1, 0.1, 0.1, 0.05, 0.05]),  # no improvement after epoch 1: lowered once 2 epochs exceed patience 1
    ([2.0, 1.0, 0.5, 0.25, 0.125], [0.1] * 5),  # improving every epoch: never lowered
])
def test_plateau_lowers_the_lr_in_the_loop_after_patience(tmp_path, monkeypatch, val_losses, expected_lrs) -> None:
    """ReduceLROnPlateau's rule (torch's): after more than `patience` epochs without a lower validation loss the
    rate is multiplied by gamma, from the next epoch on. Checked in the rows five real epochs of fit() write."""
    trainer = _trainer(tmp_path / "run", "optim.lr=0.1", "schedule.name=plateau", "schedule.patience=1",
                       "schedule.gamma=0.5", "train.epochs=5")
    losses = iter(val_losses)
    labels = np.arange(10)

    def evaluate(images, labels_, tta="none"):
        # Logits that give this epoch's loss exactly: log(10) at zero, lower as the true class's logit grows.
        loss = next(losses)
        return compute_report(np.eye(10)[labels] * _logit_for_loss(loss), labels, CIFAR10.classes)

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    (tmp_path / "run").mkdir()
    trainer.fit()
    rows = run_files.read_metrics(tmp_path / "run")
    assert [row["val_loss"] for row in rows] == pytest.approx(val_losses)
    assert [row["lr"] for row in rows] == pytest.approx(expected_lrs)


def _logit_for_loss(loss: float) -> float:
    """The true-class logit c (others 0) whose cross-entropy is ``loss``: log(1 + 9 e^-c) = loss."""
    return -math.log((math.exp(loss) - 1) / 9)

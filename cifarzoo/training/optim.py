"""Optimisers, learning-rate schedules, SAM and the weight EMA, built from a recipe."""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from cifarzoo.training.recipe import OptimSection, ScheduleSection


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict[str, Any]]:
    """Two groups: weights that decay, and (unless asked) BatchNorm/bias parameters that do not."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if decay_norm_and_bias or param.ndim > 1 else no_decay).append(param)
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimSection) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW. With ``l2_in_loss`` the optimiser gets no weight decay;
    :func:`l2_penalty` adds it to the loss instead."""
    wd = 0.0 if cfg.l2_in_loss else cfg.weight_decay
    groups = param_groups(model, wd, cfg.decay_norm_and_bias)
    factories: dict[str, Callable[[], torch.optim.Optimizer]] = {
        "sgd": lambda: torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        ),
        "adam": lambda: torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas),
        "adamw": lambda: torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas),
    }
    return factories[cfg.name]()


def l2_penalty(model: nn.Module, cfg: OptimSection) -> torch.Tensor | None:
    """``weight_decay / 2 * sum ||w||^2`` over the decayed parameters, for ``l2_in_loss`` recipes."""
    if not cfg.l2_in_loss or cfg.weight_decay == 0:
        return None
    params = param_groups(model, 1.0, cfg.decay_norm_and_bias)[0]["params"]
    return 0.5 * cfg.weight_decay * sum(p.pow(2).sum() for p in params)


class LRSchedule:
    """The learning rate as a function of progress, set on the optimiser every step.

    ``cosine``, ``onecycle``, ``step`` and ``constant`` depend only on the step count (so resuming needs no
    state beyond it); ``plateau`` lowers the rate by ``gamma`` after ``patience`` epochs without a
    val-loss improvement and keeps that state in :meth:`state_dict`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: ScheduleSection,
        base_lr: float,
        total_steps: int,
        steps_per_epoch: int,
    ):
        self.optimizer = optimizer
        self.cfg = cfg
        self.base_lr = base_lr
        self.total_steps = max(1, total_steps)
        # A recipe's warm-up stays as written, but never takes more than half a shortened run (`--epochs 1`).
        self.warmup_steps = min(round(cfg.warmup_epochs * steps_per_epoch), total_steps // 2)
        self.plateau_scale = 1.0
        self.best_loss = math.inf
        self.bad_epochs = 0

    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if step < self.warmup_steps:
            start = cfg.warmup_start
            return self.base_lr * (start + (1 - start) * step / self.warmup_steps)
        t = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        low = cfg.final_lr_fraction
        if cfg.name == "cosine":
            factor = low + (1 - low) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        elif cfg.name == "onecycle":
            peak = cfg.onecycle_peak
            factor = (cfg.warmup_start + (1 - cfg.warmup_start) * t / peak) if t < peak else (
                low + (1 - low) * (1 - t) / (1 - peak))
        elif cfg.name == "step":
            factor = cfg.gamma ** sum(t >= m for m in cfg.milestones)
        else:  # constant, plateau
            factor = self.plateau_scale
        return self.base_lr * max(factor, 0.0)

    def step(self, step: int) -> float:
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def end_epoch(self, val_loss: float) -> None:
        """ReduceLROnPlateau's rule, for ``plateau`` schedules; a no-op for the others."""
        if self.cfg.name != "plateau":
            return
        # An improvement must beat the best by a relative 1e-4 (torch's default threshold).
        if math.isinf(self.best_loss) or val_loss < self.best_loss * (1 - 1e-4):
            self.best_loss, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg.patience:
                self.plateau_scale *= self.cfg.gamma
                self.bad_epochs = 0

    def state_dict(self) -> dict[str, float]:
        return {"plateau_scale": self.plateau_scale, "best_loss": self.best_loss, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.plateau_scale = float(state["plateau_scale"])
        self.best_loss = float(state["best_loss"])
        self.bad_epochs = int(state["bad_epochs"])


@torch.no_grad()
def sam_perturb(params: Sequence[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """Sharpness-Aware Minimisation's ascent step (Foret et al., 2021): move each weight by
    ``rho * g / ||g||`` and return the offsets, so :func:`sam_restore` can undo them after the second pass."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.norm(torch.stack([g.norm(2) for g in grads]), 2) if grads else torch.tensor(0.0)
    scale = rho / (norm + 1e-12)
    offsets = []
    for p in params:
        e = p.grad * scale if p.grad is not None else torch.zeros_like(p)
        p.add_(e)
        offsets.append(e)
    return offsets


@torch.no_grad()
def sam_restore(params: Sequence[torch.Tensor], offsets: Sequence[torch.Tensor]) -> None:
    for p, e in zip(params, offsets):
        p.sub_(e)


class WeightEMA:
    """Exponential moving average of a model's parameters and floating-point buffers.

    The effective decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early in
    training (and in short runs) the average follows the weights instead of staying near the random init.
    Integer buffers (BatchNorm's step counter) are copied. ``module`` is a full copy to evaluate and save.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_state, live_state = self.module.state_dict(), model.state_dict()
        floats = [(ema_state[k], v) for k, v in live_state.items() if v.is_floating_point()]
        torch._foreach_lerp_([e for e, _ in floats], [v for _, v in floats], 1.0 - decay)
        for key, value in live_state.items():
            if not value.is_floating_point():
                ema_state[key].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"])


def build_ema(model: nn.Module, decay: float) -> WeightEMA | None:
    """The weight EMA, or ``None`` when ``decay`` is 0."""
    return WeightEMA(model, decay) if decay > 0 else None

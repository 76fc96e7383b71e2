"""The training loop: data on the device, batched augmentation, mixed precision, EMA, SAM, DDP, resume.

Reproducibility by construction: every epoch's shuffling, augmentation and dropout draw from generators
seeded with ``(seed, epoch)``, so a run resumed from the state saved after epoch ``k`` replays epochs
``k+1...`` exactly as an uninterrupted run would. The best epoch is chosen on the validation split; the test
split is evaluated once, at the end, with the chosen weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cifarzoo.atomic import atomic_write_text
from cifarzoo.config import CalibrationConfig, ModelConfig, PreprocessConfig
from cifarzoo.data.datasets import ArrayDataset, load_dataset, load_image_folder, train_val_split
from cifarzoo.data.specs import get_dataset_spec
from cifarzoo.engines.calibrate import MIN_IMAGES as MIN_CALIBRATION_IMAGES
from cifarzoo.engines.calibrate import fit_calibration
from cifarzoo.engines.evaluate import EvalReport, compute_report
from cifarzoo.errors import CifarzooError
from cifarzoo.io.checkpoint import build, load_weights, save_checkpoint
from cifarzoo.io.layout import LOCK_NAME, WEIGHTS_NAME
from cifarzoo.models.specs import ARCHS
from cifarzoo.registry import model_config
from cifarzoo.runtime.host_memory import reuse_freed_memory
from cifarzoo.runtime.torch_runner import TorchRunner
from cifarzoo.training import run_files
from cifarzoo.training.augment import BatchAugment
from cifarzoo.training.distill import distillation_loss, load_teacher
from cifarzoo.training.distributed import DistContext
from cifarzoo.training.optim import LRSchedule, build_ema, build_optimizer, l2_penalty, sam_perturb, sam_restore
from cifarzoo.training.recipe import Recipe
from cifarzoo.training.run_lock import RunLock

log = logging.getLogger(__name__)

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
# Steps between mid-epoch checks of the running loss for NaN/inf: each check waits for the device (one sync), so
# it is not done every step; the epoch's end checks again.
_FINITE_CHECK_STEPS = 50


class TrainingDivergedError(CifarzooError):
    """The loss or the weights became NaN or infinite: training stopped, keeping the last finite epoch's files."""


@dataclass
class TrainData:
    """The three splits as uint8 NCHW tensors on the training device, plus the model's preprocessing."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor | None
    test_labels: torch.Tensor | None
    classes: tuple[str, ...]
    preprocess: PreprocessConfig
    dataset_tag: str


def _to_device(ds: ArrayDataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # A writable NCHW copy: the readers' arrays may be read-only views of the files' bytes.
    images = torch.from_numpy(ds.images.transpose(0, 3, 1, 2).copy()).to(device)
    return images, torch.from_numpy(ds.labels).to(device)


def prepare_data(
    recipe: Recipe, device: torch.device, data_dir: str | None = None, download: bool = False
) -> TrainData:
    """Load the recipe's dataset, split off the seeded validation set, and put everything on ``device``."""
    cfg = recipe.data
    if cfg.dataset == "folder":
        probe = PreprocessConfig(input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
        full = load_image_folder(cfg.train_dir, probe)
        test = load_image_folder(cfg.test_dir, probe, classes=full.classes) if cfg.test_dir else None
        pixels = full.images.reshape(-1, full.images.shape[-1]) / 255.0
        mean, std = tuple(pixels.mean(0).round(4)), tuple(pixels.std(0).round(4))
        preprocess = dataclasses.replace(probe, mean=mean, std=std)
        tag = "folder"
    else:
        spec = get_dataset_spec(cfg.dataset)
        full = load_dataset(spec.name, "train", data_dir=data_dir, download=download)
        test = load_dataset(spec.name, "test", data_dir=data_dir, download=download)
        preprocess = spec.preprocess_config()
        tag = spec.tag
    if cfg.val_size >= len(full):
        raise CifarzooError(f"data.val_size={cfg.val_size} leaves no training data in {full.name} ({len(full)} images)")
    train, val = (
        train_val_split(full, cfg.val_size, seed=recipe.train.seed) if cfg.val_size else (full, full.subset([]))
    )
    if cfg.train_subset:
        train = train.subset(np.arange(min(cfg.train_subset, len(train))))
    if cfg.test_subset and test is not None:
        test = test.subset(np.arange(min(cfg.test_subset, len(test))))
    train_images, train_labels = _to_device(train, device)
    val_images, val_labels = _to_device(val, device)
    test_images, test_labels = _to_device(test, device) if test is not None else (None, None)
    return TrainData(train_images, train_labels, val_images, val_labels, test_images, test_labels,
                     full.classes, preprocess, tag)


def model_config_for(recipe: Recipe, data: TrainData) -> ModelConfig:
    """The config the run's checkpoints carry: the recipe's arch and builder options on the data's classes."""
    model_args: dict[str, Any] = {"drop_rate": recipe.model.drop_rate}
    if ARCHS[recipe.model.arch].family == "cifar_resnet":
        model_args["se"] = recipe.model.se
    else:
        model_args["freeze"] = recipe.model.freeze
    return model_config(
        recipe.model.arch,
        classes=data.classes,
        preprocess=data.preprocess,
        dataset=data.dataset_tag,
        model_args=model_args,
        name=recipe.name,
        recipe=recipe.to_dict(),
    )


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    metrics: dict[str, float]


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    # Distinct, reproducible seeds per (run seed, epoch, stream); stream 0 = data, 1 + rank = dropout.
    return (seed * 1_000_003 + epoch * 7919 + stream * 104_729) % (2**63 - 1)


def _stage_of(name: str) -> str:
    """Group a parameter name by network stage for gradient-norm logging (``stages.2``, ``stem``, ``fc``)."""
    parts = name.split(".")
    if parts[0] in ("stages",) or (parts[0] == "backbone" and len(parts) > 1 and parts[1].startswith("layer")):
        return ".".join(parts[:2])
    return parts[0] if parts[0] != "backbone" else "stem"


class Trainer:
    """One training run. Use :func:`train` unless you need the pieces."""

    def __init__(self, recipe: Recipe, run_dir: Path, data: TrainData, ctx: DistContext, progress: bool = True):
        self.recipe = recipe
        self.run_dir = run_dir
        self.data = data
        self.ctx = ctx
        self.progress = progress and ctx.is_main and sys.stderr.isatty()
        tcfg = recipe.train
        self.device = ctx.device
        self.amp_dtype = _AMP_DTYPES[tcfg.precision]
        if tcfg.precision == "fp16" and self.device.type != "cuda":
            raise CifarzooError("train.precision = 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
        if tcfg.reuse_host_memory and self.device.type == "cpu":
            # Every step frees and reallocates activation-sized tensors; by default glibc unmaps them and the
            # kernel faults them in again, which costs more than the ReLUs and adds that write them.
            reuse_freed_memory()
        torch.manual_seed(tcfg.seed)  # model init: the same on every rank (DDP also broadcasts rank 0's)

        # The config's preprocessing (an ImageNet-pretrained arch normalises with ImageNet statistics) is what
        # training, validation and every later prediction use.
        self.config = model_config_for(recipe, data)
        pretrained = recipe.model.pretrained
        self.net = build(self.config, pretrained=True if pretrained == "torchvision" else (pretrained or False))
        memory_format = torch.channels_last if tcfg.channels_last else torch.contiguous_format
        self.net.to(self.device).to(memory_format=memory_format)
        self.memory_format = memory_format

        world, n_train = ctx.world_size, len(data.train_labels)
        if tcfg.batch_size % world:
            raise CifarzooError(f"train.batch_size={tcfg.batch_size} must divide evenly across {world} ranks")
        self.rank_batch = tcfg.batch_size // world
        self.steps_per_epoch = (n_train // world) // self.rank_batch
        if self.steps_per_epoch == 0:
            raise CifarzooError(f"{n_train} training images are fewer than one batch of {tcfg.batch_size}")

        self.optimizer = build_optimizer(self.net, recipe.optim)
        self.schedule = LRSchedule(self.optimizer, recipe.schedule, recipe.optim.lr,
                                   tcfg.epochs * self.steps_per_epoch, self.steps_per_epoch)
        self.ema = build_ema(self.net, tcfg.ema_decay)
        self.scaler = torch.amp.GradScaler("cuda") if tcfg.precision == "fp16" else None
        self.augment = BatchAugment(
            data.train_images, self.config.preprocess, recipe.data.crop_padding, recipe.data.flip,
            recipe.data.cutout, recipe.data.auto_augment, recipe.data.augment_group,
        )
        self.teacher = None
        if recipe.distill.teacher:
            self.teacher = load_teacher(recipe.distill.teacher, self.config, self.device,
                                        channels_last=tcfg.channels_last, amp_dtype=self.amp_dtype)
        self.model: nn.Module = self.net
        if ctx.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if tcfg.compile:
            self.model = cast(nn.Module, torch.compile(self.model))
        self.start_epoch = 1
        self.best = {"val_top1": -1.0, "epoch": 0}

    # ------------------------------------------------------------------------------------------------------
    def state_dict(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best": dict(self.best),
            "rng": {"torch": torch.get_rng_state()},
            "recipe": self.recipe.to_dict(),
            "teacher_checksum": self.teacher.checksum() if self.teacher is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved :meth:`state_dict`; one that does not fit this run (another arch or optimiser, a
        damaged file) is a one-line error naming ``state.pt``."""
        try:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            best = {**state["best"], "val_top1": float(state["best"]["val_top1"]), "epoch": int(state["best"]["epoch"])}
            rng = state["rng"]["torch"]
            if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
                raise TypeError("rng.torch is not a generator state")
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            text = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {text[0] if text else ''}"
            raise CifarzooError(
                f"{self.run_dir / run_files.STATE_NAME}: does not fit this run's recipe ({reason}); "
                "resume it with the recipe it was started with"
            ) from None
        saved = state.get("teacher_checksum")
        if (
            self.teacher is not None
            and saved is not None
            and not math.isclose(saved, self.teacher.checksum(), rel_tol=1e-9)
        ):
            raise CifarzooError(
                f"distill.teacher={self.recipe.distill.teacher} is not the teacher this run started with (its weights "
                "changed); resuming would distil from another network"
            )
        self.best = best
        torch.set_rng_state(rng)
        self.start_epoch = int(state["epoch"]) + 1

    @property
    def eval_net(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.net

    # ------------------------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        tcfg, ctx = self.recipe.train, self.ctx
        data_gen = torch.Generator(device=self.device).manual_seed(_epoch_seed(tcfg.seed, epoch, 0))
        torch.manual_seed(_epoch_seed(tcfg.seed, epoch, 1 + ctx.rank))  # dropout
        n_train = len(self.data.train_labels)
        order = torch.randperm(n_train, generator=data_gen, device=self.device)
        shard = order[ctx.rank :: ctx.world_size][: self.steps_per_epoch * self.rank_batch]
        self.net.train()
        loss_sum = torch.zeros((), device=self.device)
        kd_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        grad_norms: dict[str, float] = {}
        step0 = (epoch - 1) * self.steps_per_epoch
        start = time.perf_counter()
        bar = _progress(self.steps_per_epoch, f"epoch {epoch}/{tcfg.epochs}", self.progress)
        try:
            for i, indices in enumerate(shard.split(self.rank_batch)):
                lr = self.schedule.step(step0 + i)
                x = self.augment(indices, data_gen).contiguous(memory_format=self.memory_format)
                y = self.data.train_labels[indices]
                teacher_logits = self.teacher.logits(x) if self.teacher is not None else None
                logits, loss, kd = self.train_step(x, y, teacher_logits, grad_norms if tcfg.log_grad_norms else None)
                loss_sum += loss.detach() * len(y)
                if kd is not None:
                    kd_sum += kd.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                if (i + 1) % _FINITE_CHECK_STEPS == 0:
                    # Summed over ranks, so that every rank sees the same verdict and they stop together.
                    running = ctx.all_reduce_sum(loss_sum.detach().clone())
                    if not torch.isfinite(running):
                        raise self._diverged(epoch, f"the training loss is {float(running)}", step=i + 1)
                if bar is not None:
                    elapsed = time.perf_counter() - start
                    bar.set_postfix_str(
                        f"lr {lr:.4f} {(i + 1) * self.rank_batch * ctx.world_size / elapsed:.0f} img/s"
                    )
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        self._sync_buffers()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        totals = ctx.all_reduce_sum(torch.stack([loss_sum, correct, kd_sum]).float())
        seen = self.steps_per_epoch * self.rank_batch * ctx.world_size
        if not torch.isfinite(totals[0]):
            raise self._diverged(epoch, f"the training loss is {float(totals[0])}")
        # The last step can leave non-finite weights behind a finite loss; they must not be saved either.
        if not bool(torch.stack([p.isfinite().all() for p in self.net.parameters()]).all()):
            raise self._diverged(epoch, "the weights are no longer finite")
        row: dict[str, Any] = {
            "train_loss": float(totals[0] / seen),
            "train_top1": float(totals[1] / seen * 100),
            "lr": lr,
            "seconds": seconds,
            "img_per_s": seen / seconds,
        }
        if self.teacher is not None:
            row["train_kd"] = float(totals[2] / seen)
        if grad_norms:
            row["grad_norms"] = {k: v / self.steps_per_epoch for k, v in grad_norms.items()}
        return row

    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        grad_norms: dict[str, float] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One optimiser update on the batch ``(x, y)``: forward and backward, SAM's second pass at the perturbed
        weights, gradient clipping, the step (through the GradScaler for fp16) and the EMA. Returns
        :meth:`_forward_backward`'s logits, loss and distillation term; adds per-stage gradient norms to
        ``grad_norms`` when given."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        optim = self.recipe.optim
        logits, loss, kd = self._forward_backward(x, y, teacher_logits)
        if optim.sam_rho > 0:
            offsets = sam_perturb(params, optim.sam_rho)
            self.optimizer.zero_grad(set_to_none=True)
            self._forward_backward(x, y, teacher_logits)
            sam_restore(params, offsets)
        if grad_norms is not None:
            self._accumulate_grad_norms(grad_norms)
        if optim.grad_clip > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(params, optim.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.net)
        return logits, loss, kd

    def _diverged(self, epoch: int, what: str, step: int | None = None) -> TrainingDivergedError:
        """The one-line error that stops a diverged run, saying what is kept: the files of the last finite epoch
        (this epoch's are never written)."""
        where = f"epoch {epoch}" + (f" (step {step} of {self.steps_per_epoch})" if step is not None else "")
        if epoch > 1:
            kept = f"{self.run_dir} keeps the state of epoch {epoch - 1}"
        else:
            kept = "no epoch finished, no checkpoint saved"
        return TrainingDivergedError(
            f"{self.run_dir}: training diverged in {where}: {what}; stopped ({kept}). Lower optim.lr "
            f"(now {self.recipe.optim.lr:g}) or set optim.grad_clip"
        )

    def _sync_buffers(self) -> None:
        """Average BatchNorm statistics across ranks: each rank's last forward saw only its own shard, and
        the EMA's buffers follow them. Parameters are already identical (DDP averages the gradients)."""
        if not self.ctx.distributed:
            return
        modules = [self.net] + ([self.ema.module] if self.ema is not None else [])
        for module in modules:
            for buffer in module.buffers():
                if buffer.is_floating_point():
                    self.ctx.all_reduce_sum(buffer)
                    buffer.div_(self.ctx.world_size)

    def _check_ranks_in_sync(self) -> None:
        """Every rank must end with the same weights; a mismatch is a bug, never silently saved."""
        if not self.ctx.distributed:
            return
        total = torch.stack([t.double().sum() for t in self.net.state_dict().values() if t.is_floating_point()]).sum()
        sums = [torch.zeros_like(total) for _ in range(self.ctx.world_size)]
        torch.distributed.all_gather(sums, total)
        if any(not torch.equal(s, sums[0]) for s in sums):
            raise RuntimeError(f"DDP ranks diverged: weight checksums {[float(s) for s in sums]}")
        log.info("ranks in sync: %d ranks share weight checksum %.6f", self.ctx.world_size, float(sums[0]))

    def _forward_backward(
        self, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One forward and backward pass; returns the logits, the cross-entropy on the labels (what
        ``train_loss`` reports for every run, distilled or not) and the distillation term (or ``None``)."""
        smoothing = self.recipe.train.label_smoothing
        with torch.autocast(self.device.type, self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.model(x)
        kd = None
        if teacher_logits is None:
            loss = objective = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
        else:
            distill = self.recipe.distill
            objective, loss, kd = distillation_loss(logits, teacher_logits, y, distill.alpha, distill.temperature,
                                                    smoothing)
        penalty = l2_penalty(self.net, self.recipe.optim)
        total = objective + penalty if penalty is not None else objective
        (self.scaler.scale(total) if self.scaler is not None else total).backward()
        return logits, loss, kd

    def _accumulate_grad_norms(self, into: dict[str, float]) -> None:
        squares: dict[str, float] = {}
        for name, p in self.net.named_parameters():
            if p.grad is not None:
                stage = _stage_of(name)
                squares[stage] = squares.get(stage, 0.0) + float(p.grad.float().pow(2).sum())
        for stage, sq in squares.items():
            into[stage] = into.get(stage, 0.0) + math.sqrt(sq)

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor, tta: str = "none") -> EvalReport:
        """Evaluate the EMA (or live) weights on a split, sharded across ranks and gathered on every rank."""
        ctx, tcfg = self.ctx, self.recipe.train
        mine = torch.arange(ctx.rank, len(labels), ctx.world_size, device=self.device)
        runner = TorchRunner(self.eval_net, dtype=self.amp_dtype, channels_last=tcfg.channels_last)
        logits = runner.uint8_logits(images[mine], self.config.preprocess, batch_size=tcfg.eval_batch_size, tta=tta)
        if ctx.distributed:
            gathered: list[Any] = [None] * ctx.world_size
            torch.distributed.all_gather_object(gathered, (mine.cpu(), logits.cpu()))
            index = torch.cat([g[0] for g in gathered])
            logits = torch.cat([g[1] for g in gathered])[index.argsort()]
        return compute_report(logits.cpu().numpy(), labels.cpu().numpy(), self.data.classes)

    # ------------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        tcfg, ctx = self.recipe.train, self.ctx
        for epoch in range(self.start_epoch, tcfg.epochs + 1):
            row = {"epoch": epoch, **self.train_epoch(epoch)}
            val = self.evaluate(self.data.val_images, self.data.val_labels)
            if val.n and not math.isfinite(val.loss):
                raise self._diverged(epoch, f"the validation loss is {val.loss}")
            self.schedule.end_epoch(val.loss)
            row.update(val_loss=val.loss, val_top1=val.top1)
            # Without a validation split (data.val_size = 0) the last epoch is the one kept.
            improved = val.n == 0 or val.top1 > self.best["val_top1"]
            if improved:
                self.best = {"val_top1": val.top1, "val_loss": val.loss, "epoch": epoch}
            if ctx.is_main:
                if improved:
                    with run_files.writing(self.run_dir / WEIGHTS_NAME):
                        save_checkpoint(self.eval_net.state_dict(), self.config, self.run_dir)
                # The epoch's row first, then the state that marks the epoch done: a kill in between leaves a
                # row that a resume drops and redoes, never a finished epoch without its row.
                run_files.append_metrics(self.run_dir, row)
                run_files.save_state(self.run_dir, self.state_dict(epoch))
                log.info("epoch %d: train loss %.4f top1 %.2f | val loss %.4f top1 %.2f | %.0f img/s",
                         epoch, row["train_loss"], row["train_top1"], val.loss, val.top1, row["img_per_s"])
            ctx.barrier()
        self._check_ranks_in_sync()
        return self.finish()

    def finish(self) -> TrainResult:
        """Evaluate the best-on-val weights once on the test split and record the final metrics."""
        ctx = self.ctx
        best_weights = cast(
            dict[str, torch.Tensor], ctx.broadcast_object(load_weights(self.run_dir) if ctx.is_main else None)
        )
        self.eval_net.load_state_dict(best_weights)
        tta = self.recipe.train.tta
        # Epochs were compared without TTA (cheaper); the final numbers use the recipe's TTA.
        val = self.evaluate(self.data.val_images, self.data.val_labels, tta) if len(self.data.val_labels) else None
        metrics = {"val_top1": val.top1 if val else float("nan"), "val_loss": val.loss if val else float("nan"),
                   "best_epoch": self.best["epoch"], "epochs": self.recipe.train.epochs}
        if self.data.test_images is not None and self.data.test_labels is not None:
            test = self.evaluate(self.data.test_images, self.data.test_labels, tta)
            metrics.update(test_top1=test.top1, test_top5=test.top5, test_loss=test.loss, test_n=test.n)
        if ctx.is_main:
            self.config = self.config.replace(metrics=metrics, calibration=self._fit_calibration())
            with run_files.writing(self.run_dir / WEIGHTS_NAME):
                save_checkpoint(self.eval_net.state_dict(), self.config, self.run_dir)
            run_files.plot_curves(
                self.run_dir, f"{self.recipe.name}: test top-1 {metrics.get('test_top1', float('nan')):.2f}%"
            )
        return TrainResult(self.run_dir, int(self.best["epoch"]), metrics)


    def _fit_calibration(self) -> CalibrationConfig | None:
        """Temperature scaling on the validation split (Guo et al. 2017), with the kept weights. Fitted on fp32
        logits without TTA: what predict and eval compute, on every backend. ``None`` without a val split."""
        labels = self.data.val_labels
        if len(labels) < MIN_CALIBRATION_IMAGES:
            return None
        runner = TorchRunner(self.eval_net)  # fp32, as deployed
        logits = runner.uint8_logits(
            self.data.val_images, self.config.preprocess, batch_size=self.recipe.train.eval_batch_size
        )
        fitted_on = f"{self.recipe.data.dataset}:val"
        calibration = fit_calibration(logits.cpu().numpy(), labels.cpu().numpy(), fitted_on=fitted_on)
        log.info("temperature %.4f fitted on %s: ECE %.4f -> %.4f", calibration.temperature, fitted_on,
                 calibration.ece_before, calibration.ece_after)
        return calibration


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def train(
    recipe: Recipe,
    run_dir: str | Path,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``recipe`` into ``run_dir``; with ``resume``, continue from ``run_dir/state.pt``.

    A new run needs a new or empty ``run_dir``: a folder holding anything else (another run, a converted or
    downloaded checkpoint) is refused unless ``overwrite``, which replaces the run files in it. Under
    ``torchrun`` every rank calls this; only rank 0 writes files.

    The run holds ``run_dir/.lock`` (:class:`~cifarzoo.training.run_lock.RunLock`) from start to end, so a second
    training on the same folder is refused, and on start removes the temp files a killed run left. A loss or
    weights that turn NaN or infinite raise :class:`TrainingDivergedError`, with the last finite epoch's files kept.
    """
    if resume and overwrite:
        raise CifarzooError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    run_dir = Path(run_dir)
    ctx = DistContext.from_env(device)
    lock = RunLock(run_dir)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if recipe.train.deterministic:
        torch.use_deterministic_algorithms(True)
    finished = False
    try:
        _lock_run(lock, ctx)
        state = None
        if resume:
            if not (run_dir / run_files.STATE_NAME).is_file():
                raise CifarzooError(f"{run_dir}: nothing to resume (no {run_files.STATE_NAME})")
            state = run_files.load_state(run_dir)
        elif overwrite:
            if ctx.is_main:
                run_files.remove_run_files(run_dir)
        elif (run_dir / run_files.STATE_NAME).is_file():
            raise CifarzooError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        # A run killed before its first state.pt leaves only recipe.json (and maybe rows): it starts afresh.
        elif any(p.name not in (run_files.RECIPE_NAME, run_files.METRICS_NAME, LOCK_NAME) for p in run_dir.iterdir()):
            raise CifarzooError(
                f"{run_dir}: already exists and is not empty; a new run needs a new or empty --out "
                "(--overwrite replaces the run files in it)"
            )
        if state is None and ctx.is_main:
            with run_files.writing(run_dir / run_files.METRICS_NAME):
                (run_dir / run_files.METRICS_NAME).unlink(missing_ok=True)
        ctx.barrier()
        data = prepare_data(recipe, ctx.device, data_dir, download)
        trainer = Trainer(recipe, run_dir, data, ctx, progress)
        if ctx.is_main:
            with run_files.writing(run_dir / run_files.RECIPE_NAME):
                atomic_write_text(run_dir / run_files.RECIPE_NAME, json.dumps(recipe.to_dict(), indent=2) + "\n")
        if state is not None:
            trainer.load_state_dict(state)
            if ctx.is_main:
                run_files.truncate_metrics(run_dir, trainer.start_epoch - 1)
        result = trainer.fit()
        finished = True
        return result
    finally:
        lock.release()
        torch.use_deterministic_algorithms(was_deterministic)
        ctx.close(wait_for_all=finished)


def _lock_run(lock: RunLock, ctx: DistContext) -> None:
    """Rank 0 takes the run folder's lock and removes the temp files a killed run left; every rank learns the
    outcome, so that a refusal stops them all (rather than leaving the others waiting at a barrier)."""
    failure: CifarzooError | None = None
    if ctx.is_main:
        try:
            with run_files.writing(lock.path):
                lock.acquire()
                run_files.remove_leftover_temp_files(lock.run_dir)
        except CifarzooError as exc:
            failure = exc
    message = ctx.broadcast_object(str(failure) if failure is not None else None)
    if failure is not None:
        raise failure
    if message is not None:
        raise CifarzooError(str(message))

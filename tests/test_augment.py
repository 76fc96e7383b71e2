"""On-device batch augmentation and the optimiser pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifarzoo.data.preprocess import normalize as numpy_normalize
from cifarzoo.data.specs import CIFAR10
from cifarzoo.training.augment import BatchAugment, cutout, normalize, pad_reflect, random_crop, random_flip
from cifarzoo.training.optim import LRSchedule, WeightEMA, build_optimizer, l2_penalty, sam_perturb, sam_restore
from cifarzoo.training.recipe import OptimSection, ScheduleSection


def _images(n=8, c=3, size=8):
    return torch.arange(n * c * size * size, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(n, c, size, size)


def test_crop_takes_windows_of_the_reflect_padded_image() -> None:
    images = _images()
    padded = pad_reflect(images, 2)
    assert padded.shape == (8, 3, 12, 12)
    assert torch.equal(padded[:, :, 2:-2, 2:-2], images)
    assert torch.equal(padded[:, :, 2:-2, 1], images[:, :, :, 1])  # reflect (not replicate) padding
    crops = random_crop(padded, 8, torch.Generator().manual_seed(0))
    assert crops.shape == images.shape
    for img, crop in zip(padded, crops):
        windows = [img[:, y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(crop, w) for w in windows)
    offsets = {tuple(c[0, 0, :2].tolist()) for c in random_crop(padded, 8, torch.Generator().manual_seed(1))}
    assert len(offsets) > 1  # different images get different offsets


def test_flip_mirrors_about_half() -> None:
    images = _images(n=200, size=4)
    out = random_flip(images, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept)) and 60 < sum(flipped) < 140


def test_cutout_zeroes_one_square_per_image() -> None:
    x = torch.ones(16, 3, 32, 32)
    out = cutout(x, 8, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(dim=1).sum(dim=(1, 2))
    assert (zeros <= 64).all() and (zeros >= 16).all()  # clipped at the border at worst to a quarter
    assert ((out == 0) | (out == 1)).all()


def test_torch_and_numpy_normalisation_agree() -> None:
    cfg = CIFAR10.preprocess_config()
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    ours = normalize(torch.from_numpy(batch).permute(0, 3, 1, 2), cfg).numpy()
    np.testing.assert_allclose(ours, numpy_normalize(batch, cfg), atol=1e-6)


def test_batch_augment_is_reproducible_from_the_generator() -> None:
    aug = BatchAugment(_images(n=32, size=16), CIFAR10.preprocess_config(), crop_padding=2, flip=True, cutout=4)
    idx = torch.arange(32)
    a = aug(idx, torch.Generator().manual_seed(5))
    b = aug(idx, torch.Generator().manual_seed(5))
    c = aug(idx, torch.Generator().manual_seed(6))
    assert a.dtype == torch.float32 and a.shape == (32, 3, 16, 16)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("kind", ["trivial", "cifar10"])
def test_auto_augment_on_groups(kind: str) -> None:
    aug = BatchAugment(_images(n=32, size=16), CIFAR10.preprocess_config(), auto_augment=kind, augment_group=8)
    idx = torch.arange(32)
    out = aug(idx, torch.Generator().manual_seed(0))
    assert out.shape == (32, 3, 16, 16) and torch.equal(out, aug(idx, torch.Generator().manual_seed(0)))


def _schedule(name: str, **kw) -> LRSchedule:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return LRSchedule(opt, ScheduleSection(name=name, **kw), base_lr=1.0, total_steps=100, steps_per_epoch=10)


def test_schedules() -> None:
    cos = _schedule("cosine", warmup_epochs=1, warmup_start=0.1)
    assert cos.lr_at(0) == pytest.approx(0.1) and cos.lr_at(10) == pytest.approx(1.0)
    assert cos.lr_at(55) == pytest.approx(0.5) and cos.lr_at(100) == pytest.approx(0.0, abs=1e-12)
    step = _schedule("step", milestones=(0.5, 0.75), gamma=0.1)
    assert [step.lr_at(s) for s in (0, 49, 50, 80)] == pytest.approx([1, 1, 0.1, 0.01])
    one = _schedule("onecycle", onecycle_peak=0.25, warmup_start=0.1)
    assert (
        one.lr_at(0) == pytest.approx(0.1)
        and one.lr_at(25) == pytest.approx(1.0)
        and one.lr_at(100) == pytest.approx(0.0)
    )
    assert max(one.lr_at(s) for s in range(101)) == pytest.approx(1.0)


def test_plateau_lowers_lr_after_patience_and_resumes() -> None:
    plateau = _schedule("plateau", patience=2, gamma=0.5)
    for loss in (1.0, 0.9, 0.95, 0.95):  # two bad epochs: still patient
        plateau.end_epoch(loss)
    assert plateau.lr_at(50) == 1.0
    plateau.end_epoch(0.95)  # the third bad epoch
    assert plateau.lr_at(50) == 0.5
    again = _schedule("plateau", patience=2, gamma=0.5)
    again.load_state_dict(plateau.state_dict())
    assert again.lr_at(0) == 0.5 and again.bad_epochs == plateau.bad_epochs


def test_l2_in_loss_and_optimisers() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    cfg = OptimSection(name="adam", weight_decay=0.1, l2_in_loss=True)
    expected = 0.5 * 0.1 * model[0].weight.pow(2).sum()  # biases and norm weights do not decay
    assert torch.allclose(l2_penalty(model, cfg), expected)
    assert all(g["weight_decay"] == 0 for g in build_optimizer(model, cfg).param_groups)
    adamw = build_optimizer(model, OptimSection(name="adamw", weight_decay=0.1))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.1
    assert adamw.param_groups[1]["weight_decay"] == 0.0
    sgd = build_optimizer(model, OptimSection())
    assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert l2_penalty(model, OptimSection()) is None


def test_sam_perturbs_by_rho_and_restores() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    p.grad = torch.tensor([3.0, 4.0])
    offsets = sam_perturb([p], rho=0.5)
    assert torch.allclose(p.data, torch.tensor([1.3, 2.4]))  # moved rho along g/||g||
    sam_restore([p], offsets)
    assert torch.allclose(p.data, torch.tensor([1.0, 2.0]))


def test_ema_warms_up_then_averages() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = WeightEMA(model, decay=0.99)
    model.weight.data.fill_(1.0)
    # Update n uses decay d_n = min(0.99, (1 + n) / (10 + n)); averaging a constant 1 from 0, the average after n
    # updates is 1 - d_1 * ... * d_n. The first updates follow the ramp (2/11, 3/12, ...), not the configured 0.99.
    kept = 1.0
    for n in range(1, 6):
        ema.update(model)
        kept *= (1 + n) / (10 + n)
        assert ema.module.weight.item() == pytest.approx(1 - kept, rel=1e-6), n
    assert ema.module.weight.item() == pytest.approx(1 - (2 / 11) * (3 / 12) * (4 / 13) * (5 / 14) * (6 / 15))
    for _ in range(2000):
        ema.update(model)
    # Past the ramp ((1 + n) / (10 + n) >= 0.99 from n = 890 on) the decay is the configured 0.99: a step of the
    # weights to 0 leaves 99% of the average.
    before = ema.module.weight.item()
    model.weight.data.fill_(0.0)
    ema.update(model)
    assert ema.updates == 2006
    assert ema.module.weight.item() == pytest.approx(0.99 * before, rel=1e-6)

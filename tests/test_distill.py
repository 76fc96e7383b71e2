"""Knowledge distillation: the loss against its formula and gradient, teacher checks, and a real tiny run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifarzoo.config import PreprocessConfig
from cifarzoo.data.datasets import SYSTEM_FASHION_MNIST
from cifarzoo.data.torch_preprocess import normalize
from cifarzoo.errors import CifarzooError
from cifarzoo.registry import get_entry
from cifarzoo.training import run_files
from cifarzoo.training.distill import check_compatible, distillation_loss, input_adapter
from cifarzoo.training.loop import train
from cifarzoo.training.recipe import load_recipe


def _logits(seed: int, n: int = 6, k: int = 5) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 3


def test_kd_term_matches_the_formula_and_its_gradient() -> None:
    student, teacher, labels = _logits(0).requires_grad_(), _logits(1), torch.tensor([0, 1, 2, 3, 4, 0])
    T = 3.0
    total, ce, kd = distillation_loss(student, teacher, labels, alpha=0.7, temperature=T)
    p_t = torch.softmax(teacher / T, 1).double()
    log_p_s = torch.log_softmax(student.detach() / T, 1).double()
    expected_kd = T * T * (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    assert float(kd.detach()) == pytest.approx(float(expected_kd), rel=1e-5)
    assert float(ce.detach()) == pytest.approx(float(F.cross_entropy(student.detach(), labels)), rel=1e-6)
    assert float(total.detach()) == pytest.approx(0.3 * float(ce.detach()) + 0.7 * float(kd.detach()), rel=1e-6)
    # d(T^2 KL)/d(student logits) = T * (p_student^T - p_teacher^T) / batch
    (grad,) = torch.autograd.grad(kd, student)
    expected_grad = T * (torch.softmax(student.detach() / T, 1) - torch.softmax(teacher / T, 1)) / len(student)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_kd_term_is_zero_only_when_the_student_agrees() -> None:
    teacher, labels = _logits(1), torch.zeros(6, dtype=torch.long)
    _, _, same = distillation_loss(teacher.clone(), teacher, labels, 0.5, 4.0)
    _, _, shifted = distillation_loss(teacher + torch.arange(6.0)[:, None], teacher, labels, 0.5, 4.0)
    _, _, other = distillation_loss(_logits(2), teacher, labels, 0.5, 4.0)
    assert abs(float(same)) < 1e-6 and abs(float(shifted)) < 1e-5 and float(other) > 0.1
    # alpha = 0 is plain cross-entropy (with the recipe's label smoothing)
    total, ce, _ = distillation_loss(_logits(2), teacher, labels, 0.0, 4.0, label_smoothing=0.1)
    assert float(total) == pytest.approx(float(F.cross_entropy(_logits(2), labels, label_smoothing=0.1)))


def test_a_tiny_student_learns_the_teachers_soft_outputs() -> None:
    torch.manual_seed(0)
    teacher, student = nn.Linear(8, 4), nn.Linear(8, 4)
    x = torch.randn(256, 8)
    with torch.no_grad():
        soft_targets = teacher(x)
    labels = soft_targets.argmax(1)
    optimizer = torch.optim.Adam(student.parameters(), lr=0.05)

    def kl() -> float:
        with torch.no_grad():
            return float(distillation_loss(student(x), soft_targets, labels, 1.0, 2.0)[2])

    start = kl()
    for _ in range(300):
        optimizer.zero_grad()
        distillation_loss(student(x), soft_targets, labels, alpha=1.0, temperature=2.0)[0].backward()
        optimizer.step()
    assert kl() < 0.01 * start  # a student with the teacher's capacity matches it almost exactly
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(student(x), 1), torch.softmax(soft_targets, 1), atol=0.03, rtol=0)


def test_input_adapter_maps_student_normalisation_to_the_teachers() -> None:
    pixels = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    student = PreprocessConfig(input_size=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    teacher = dataclasses.replace(student, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    scale, shift = input_adapter(student, teacher)
    adapted = (
        normalize(pixels, student) * torch.tensor(scale)[None, :, None, None]
        + torch.tensor(shift)[None, :, None, None]
    )
    torch.testing.assert_close(adapted, normalize(pixels, teacher), rtol=1e-5, atol=1e-5)


def test_loaded_teacher_sees_its_own_normalisation_in_eval_mode(tmp_path) -> None:
    import cifarzoo
    from cifarzoo.training.distill import load_teacher

    student_config = get_entry("resnet26-fm").model_config()
    torch.manual_seed(0)
    teacher_model = cifarzoo.create_model("resnet26-fm", zero_init_last=False, drop_rate=0.5)
    teacher_pre = dataclasses.replace(student_config.preprocess, mean=(0.2,), std=(0.7,))
    teacher_model.config = teacher_model.config.replace(preprocess=teacher_pre)
    teacher_model.save_pretrained(tmp_path / "teacher")
    teacher = load_teacher(str(tmp_path / "teacher"), student_config, torch.device("cpu"), channels_last=False)
    pixels = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    got = teacher.logits(normalize(pixels, student_config.preprocess))
    with torch.no_grad():
        expected = teacher_model.net.eval()(normalize(pixels, teacher_pre))  # eval: no dropout, running BN stats
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not any(p.requires_grad for p in teacher.net.parameters())


def test_a_teacher_with_other_classes_is_refused() -> None:
    fm, c10 = get_entry("resnet26-fm").model_config(), get_entry("resnet26-c10").model_config()
    with pytest.raises(CifarzooError, match="teacher's classes .* differ from the student's"):
        check_compatible(fm, c10, "distill.teacher=resnet26-c10")
    with pytest.raises(CifarzooError, match="teacher takes 3x32x32 images, the student 3x28x28"):
        check_compatible(fm.replace(classes=c10.classes, preprocess=dataclasses.replace(c10.preprocess, input_size=28)),
                         c10, "t")
    check_compatible(get_entry("plain50-fm").model_config(), fm, "t")  # same classes and input: fine


@pytest.mark.skipif(not (SYSTEM_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="needs Debian's dataset-fashion-mnist (make test installs it)")
def test_distill_variant_trains_a_student_from_the_bundled_teacher(tmp_path) -> None:
    tiny = ["data.train_subset=128", "data.val_size=64", "data.test_subset=64", "train.batch_size=32",
            "train.epochs=1", "train.precision=fp32", "train.tta=none", "schedule.warmup_epochs=0"]
    recipe = load_recipe("plain26-fm", variant="distill", overrides=tiny)
    assert recipe.distill.teacher == "resnet26-fm"
    result = train(recipe, tmp_path / "student", device="cpu", progress=False)
    (row,) = run_files.read_metrics(tmp_path / "student")
    # The teacher (93% on this data) disagrees with an untrained student: the soft term is clearly positive.
    assert row["train_kd"] > 0.1 and np.isfinite(row["train_loss"])
    assert result.metrics["test_n"] == 64
    import cifarzoo

    assert cifarzoo.load(tmp_path / "student").config.recipe["distill"]["teacher"] == "resnet26-fm"

    # Resuming with a teacher whose weights changed is refused, not silently distilled from another network.
    state = torch.load(tmp_path / "student" / run_files.STATE_NAME, weights_only=True)
    state["teacher_checksum"] += 1.0
    torch.save(state, tmp_path / "student" / run_files.STATE_NAME)
    with pytest.raises(CifarzooError, match="not the teacher this run started with"):
        train(load_recipe("plain26-fm", variant="distill", overrides=tiny[:-4] + ["train.epochs=2"]),
              tmp_path / "student", device="cpu", progress=False, resume=True)

    with pytest.raises(CifarzooError, match="resnet26-c10"):
        train(load_recipe("plain26-fm", overrides=tiny + ["distill.teacher=resnet26-c10"]), tmp_path / "x",
              device="cpu", progress=False)

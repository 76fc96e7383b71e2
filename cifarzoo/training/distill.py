"""Knowledge distillation: a frozen teacher's temperature-softened logits as extra targets for the student.

Hinton et al. (2015): ``loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(p_teacher^T || p_student^T)``
where ``p^T = softmax(logits / T)``. The ``T^2`` factor keeps the soft term's gradients on the same scale as
the hard term's when ``T`` changes, so ``alpha`` means the same thing at every temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifarzoo.config import ModelConfig, PreprocessConfig
from cifarzoo.errors import CifarzooError
from cifarzoo.io.checkpoint import load_checkpoint
from cifarzoo.io.resolve import resolve
from cifarzoo.runtime.torch_runner import TorchRunner


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, ce, kd)``: the blended loss, the hard-label cross-entropy and the ``T^2``-scaled soft term.

    The soft term is ``KL(teacher || student)`` on ``softmax(logits / T)``, averaged over the batch; it is
    zero exactly when the student's logits equal the teacher's up to a per-row constant. Computed in float32.
    """
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    kd = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature * temperature)
    return (1.0 - alpha) * ce + alpha * kd, ce, kd


@dataclass
class Teacher:
    """A frozen network on the torch runner, and the affine map from the student's normalised input to its own.

    Students and teachers may normalise differently (a CIFAR ResNet vs an ImageNet-statistics transfer
    model); both normalisations are affine in the uint8 pixels, so one multiply-add per channel converts.
    """

    net: nn.Module
    config: ModelConfig
    runner: TorchRunner
    scale: torch.Tensor  # (1, C, 1, 1)
    shift: torch.Tensor  # (1, C, 1, 1)

    def checksum(self) -> float:
        """A fingerprint of the weights, saved with the training state so a resumed run can tell whether
        ``distill.teacher`` still names the same network."""
        return float(sum(t.double().sum() for t in self.net.state_dict().values() if t.is_floating_point()))

    def logits(self, student_input: torch.Tensor) -> torch.Tensor:
        """The teacher's float32 logits for a batch of the student's normalised input."""
        # A clone leaves inference mode: the loss may save these logits for the student's backward pass.
        return self.runner.tensor_logits(student_input * self.scale + self.shift).clone()


def input_adapter(student: PreprocessConfig, teacher: PreprocessConfig) -> tuple[list[float], list[float]]:
    """Per-channel ``(scale, shift)`` with ``teacher_input = student_input * scale + shift``."""
    s_scale, s_shift = student.affine()
    t_scale, t_shift = teacher.affine()
    scale = [ts / ss for ss, ts in zip(s_scale, t_scale)]
    shift = [tsh - ssh * k for ssh, tsh, k in zip(s_shift, t_shift, scale)]
    return scale, shift


def check_compatible(student: ModelConfig, teacher: ModelConfig, source: str) -> None:
    """A teacher must label the same classes, in the same order, from images of the same shape."""
    if tuple(teacher.classes) != tuple(student.classes):
        raise CifarzooError(
            f"{source}: the teacher's classes {list(teacher.classes)[:4]}... differ from the student's "
            f"{list(student.classes)[:4]}...; distillation needs the same classes in the same order"
        )
    t_pre, s_pre = teacher.preprocess, student.preprocess
    if (t_pre.input_size, t_pre.in_chans) != (s_pre.input_size, s_pre.in_chans):
        raise CifarzooError(
            f"{source}: the teacher takes {t_pre.in_chans}x{t_pre.input_size}x{t_pre.input_size} images, the "
            f"student {s_pre.in_chans}x{s_pre.input_size}x{s_pre.input_size}"
        )


def load_teacher(
    source: str, student: ModelConfig, device: torch.device, *, channels_last: bool = True,
    amp_dtype: torch.dtype | None = None,
) -> Teacher:
    """The teacher named by ``source``: a run directory, a checkpoint folder, a zoo name or an ``hf://`` id."""
    resolved = resolve(source)
    if resolved.kind == "file":
        raise CifarzooError(f"distill.teacher={source}: a teacher needs torch weights (a folder), not an export")
    net, config = load_checkpoint(resolved.path)
    check_compatible(student, config, f"distill.teacher={source}")
    for p in net.parameters():
        p.requires_grad_(False)
    net = net.to(device).eval()
    runner = TorchRunner(net, dtype=amp_dtype, channels_last=channels_last, owns_module=True)
    scale, shift = input_adapter(student.preprocess, config.preprocess)

    def as_tensor(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)[None, :, None, None]

    return Teacher(net, config, runner, as_tensor(scale), as_tensor(shift))

"""Typed model configuration: what a checkpoint's ``config.json`` holds. Torch-free.

A checkpoint explains itself: arch, class names, preprocessing, metrics and recipe live next to the
weights, so loading one needs nothing else. Configs are validated when read (:meth:`ModelConfig.from_dict`),
so a hand-edited or foreign ``config.json`` fails with a clear message rather than deep inside torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from cifarzoo._version import __version__
from cifarzoo.errors import ConfigError
from cifarzoo.models.specs import ARCHS
from cifarzoo.typed import build_dataclass, read_document

ColorMode = Literal["RGB", "L"]
ResizePolicy = Literal["center-crop", "stretch", "letterbox"]
Interpolation = Literal["nearest", "bilinear", "bicubic", "box", "lanczos"]

COLOR_MODES: dict[str, int] = {"RGB": 3, "L": 1}
RESIZE_POLICIES: tuple[str, ...] = ("center-crop", "stretch", "letterbox")
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "box", "lanczos")


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the network's input. The same values drive training, eval and predict.

    Resize policy, applied only when an image is not already ``input_size`` x ``input_size`` (images at the
    model's size are passed through untouched):

    - ``center-crop`` (default): scale the shorter side to ``input_size`` (antialiased), then crop the centre.
    - ``stretch``: scale both sides to ``input_size``, ignoring the aspect ratio.
    - ``letterbox``: scale the longer side to ``input_size`` and pad with ``background``.

    These models see 32x32 (CIFAR) or 28x28 (Fashion-MNIST) images. A real photo shrunk that far loses most of
    its detail, so expect lower accuracy on photos than on the test set.

    Attributes:
        input_size: side of the square input, in pixels.
        mean, std: per-channel normalisation, on the 0-1 scale; one value per channel of ``color_mode``.
        color_mode: ``"RGB"`` or ``"L"`` (grayscale); every decoded image is converted to it.
        resize: the resize policy above.
        interpolation: the resampling filter for resizing.
        background: gray level (0-255) that transparent pixels are composited onto and letterboxing pads with.
    """

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color_mode: ColorMode = "RGB"
    resize: ResizePolicy = "center-crop"
    interpolation: Interpolation = "bilinear"
    background: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.color_mode not in COLOR_MODES:
            raise ConfigError(f"preprocess.color_mode must be one of {list(COLOR_MODES)}, got {self.color_mode!r}")
        channels = COLOR_MODES[self.color_mode]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ConfigError(
                f"preprocess.mean and preprocess.std need {channels} values for color_mode {self.color_mode!r}, "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if not all(math.isfinite(m) for m in self.mean):
            raise ConfigError(f"preprocess.mean must be finite numbers, got {list(self.mean)}")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ConfigError(f"preprocess.std must be positive numbers, got {list(self.std)}")
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= 1024:
            raise ConfigError(
                f"preprocess.input_size must be an integer from 8 to 1024, got {_short(self.input_size)}"
            )
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(f"preprocess.resize must be one of {list(RESIZE_POLICIES)}, got {self.resize!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"preprocess.interpolation must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}"
            )
        if not isinstance(self.background, int) or not 0 <= self.background <= 255:
            raise ConfigError(f"preprocess.background must be an integer 0-255, got {_short(self.background)}")

    @property
    def in_chans(self) -> int:
        return COLOR_MODES[self.color_mode]

    def affine(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Normalisation as ``x_uint8 * scale + shift`` per channel, i.e. ``(x/255 - mean)/std``.

        The numpy (inference) and torch (training) paths both use these constants, so they cannot drift.
        """
        scale = tuple(1.0 / (255.0 * s) for s in self.std)
        shift = tuple(-m / s for m, s in zip(self.mean, self.std))
        return scale, shift

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> PreprocessConfig:
        """Validate and build from parsed JSON; a wrong type or an unknown key names the field."""
        try:
            return build_dataclass(cls, data, "preprocess")
        except ConfigError as exc:
            raise ConfigError(f"invalid PreprocessConfig value: {exc}") from None


@dataclass(frozen=True)
class CalibrationConfig:
    """Temperature scaling: the model's probabilities are ``softmax(logits / temperature)``.

    Fitted by :mod:`cifarzoo.engines.calibrate` (at the end of training, on the validation split, or by
    ``cifarzoo calibrate``) and applied by every backend before the softmax; it never changes the arg-max.

    Attributes:
        temperature: the divisor, > 0 (below 1 sharpens an under-confident model).
        fitted_on: the labelled set it was fitted on, e.g. ``fashion-mnist:val``.
        n: how many images that set had.
        ece_before, ece_after: its expected calibration error (a fraction) before and after (``None``: not
            recorded).
        nll_before, nll_after: its mean negative log-likelihood before and after.
    """

    temperature: float = 1.0
    fitted_on: str = ""
    n: int = 0
    ece_before: float | None = None
    ece_after: float | None = None
    nll_before: float | None = None
    nll_after: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or not 1e-3 <= self.temperature <= 1e3:
            raise ConfigError(f"calibration.temperature must be a number from 0.001 to 1000, got {self.temperature}")
        if self.n < 0:
            raise ConfigError(f"calibration.n must be 0 or more, got {self.n}")
        for name in ("ece_before", "ece_after", "nll_before", "nll_after"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            ):
                raise ConfigError(f"calibration.{name} must be a finite number or null, got {_short(value)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> CalibrationConfig:
        return build_dataclass(cls, data, "calibration")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild, run and describe a trained model.

    Attributes:
        arch: an arch name from :data:`cifarzoo.models.specs.ARCHS` (``resnet26``, ``plain50``, ...).
        num_classes: size of the classifier.
        classes: one label per output index.
        preprocess: see :class:`PreprocessConfig`.
        model_args: extra keyword arguments for the arch's builder (``drop_rate``, ``se``, ...).
        architecture: the arch's blocks, depths and widths, written for readers; rebuilt from ``arch``.
        name: the zoo name (``resnet26-c10``) when the model belongs to the zoo.
        dataset: the dataset tag (``c10``, ``c100``, ``fm``) or a free-form name.
        metrics: measured results, e.g. ``{"test_top1": 95.1}`` (percent).
        recipe: the recipe the weights were trained with: a name or the full recipe as a dict.
        calibration: the fitted temperature (:class:`CalibrationConfig`), or ``None`` (temperature 1).
        cifarzoo_version: the version that wrote the config.
    """

    arch: str
    num_classes: int
    classes: tuple[str, ...]
    preprocess: PreprocessConfig
    model_args: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    dataset: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    recipe: str | dict[str, Any] | None = None
    calibration: CalibrationConfig | None = None
    cifarzoo_version: str = __version__

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {_short(self.arch)}; known archs: {', '.join(ARCHS)}")
        if not self.architecture:
            object.__setattr__(self, "architecture", ARCHS[self.arch].describe())
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not isinstance(self.num_classes, int) or not 1 <= self.num_classes <= 100_000:
            raise ConfigError(f"num_classes must be an integer from 1 to 100000, got {_short(self.num_classes)}")
        if len(self.classes) != self.num_classes:
            raise ConfigError(f"classes has {len(self.classes)} names but num_classes is {self.num_classes}")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError("classes must be unique names")
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ConfigError("preprocess must be a PreprocessConfig")
        if not isinstance(self.model_args, dict) or not all(isinstance(k, str) for k in self.model_args):
            raise ConfigError(f"model_args must be a mapping of option names, got {_short(self.model_args)}")
        # Fields typed as unions or mappings are not checked by the dict -> dataclass builder; a foreign
        # config.json must not smuggle a list where a name belongs (it would fail far from here).
        for label, value in (("name", self.name), ("dataset", self.dataset)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{label} must be a string or null, got {_short(value)}")
        if not isinstance(self.cifarzoo_version, str):
            raise ConfigError(f"cifarzoo_version must be a string, got {_short(self.cifarzoo_version)}")
        if self.calibration is not None and not isinstance(self.calibration, CalibrationConfig):
            raise ConfigError(f"calibration must be a table or null, got {_short(self.calibration)}")
        if self.recipe is not None and not isinstance(self.recipe, (str, dict)):
            raise ConfigError(f"recipe must be a name, a table or null, got {_short(self.recipe)}")
        # NaN is a value here: a run without a val split records val_top1 = NaN ("not measured").
        if not isinstance(self.metrics, Mapping) or not all(
            isinstance(k, str) and isinstance(v, numbers.Real) and not isinstance(v, bool)
            for k, v in self.metrics.items()
        ):
            raise ConfigError(f"metrics must map names to numbers, got {_short(self.metrics)}")

    @property
    def in_chans(self) -> int:
        return self.preprocess.in_chans

    @property
    def temperature(self) -> float:
        """What the logits are divided by before the softmax: the calibration's temperature, else 1."""
        return self.calibration.temperature if self.calibration is not None else 1.0

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (the architecture description is re-derived if arch changes)."""
        if "arch" in changes and "architecture" not in changes:
            changes["architecture"] = {}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "preprocess": self.preprocess.to_dict(),
            "model_args": dict(self.model_args),
            "architecture": dict(self.architecture),
            "name": self.name,
            "dataset": self.dataset,
            "metrics": dict(self.metrics),
            "recipe": self.recipe,
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "cifarzoo_version": self.cifarzoo_version,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """Validate and build a config from parsed JSON. Unknown keys are errors, so typos do not pass."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
        values = dict(data)
        for required in ("arch", "num_classes", "classes", "preprocess"):
            if required not in values:
                raise ConfigError(f"config is missing the required key {required!r}")
        classes = values["classes"]
        # Integer labels (digits) are names too; anything else (a list, a number with a fraction) is a mistake.
        if not isinstance(classes, (list, tuple)) or not all(
            isinstance(c, str) or (isinstance(c, int) and not isinstance(c, bool)) for c in classes
        ):
            raise ConfigError(f"classes must be a list of names, got {_short(classes)}")
        values["classes"] = [str(c) for c in classes]
        # The architecture description is always re-derived from the arch, never trusted from the file.
        values["architecture"] = {}
        if values.get("calibration") is not None:  # a union field: the builder does not descend into it
            values["calibration"] = CalibrationConfig.from_dict(values["calibration"])
        try:
            return build_dataclass(cls, values, "config", prefix_fields=False)
        except (OverflowError, RecursionError) as exc:  # float() of a 400-digit integer, absurdly nested values
            raise ConfigError(f"config has a value too large or too deeply nested ({type(exc).__name__})") from None

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        """Read and validate a ``config.json``; errors name the file."""
        path = Path(path)
        data = read_document(path, parse_json, kind="JSON")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str) -> ModelConfig:
        """Parse and validate config JSON carried inside another file (ONNX metadata, a TorchScript archive);
        errors are one line starting with ``source``."""
        try:
            data = parse_json(text)
        except ValueError as exc:
            raise ConfigError(f"{source}: not readable JSON ({_cut(str(exc), 200)})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def parse_json(text: str) -> Any:
    """``json.loads`` whose every refusal is a ``ValueError``: besides malformed text, that includes integers over
    Python's 4,300-digit limit (already a ValueError) and nesting too deep for the parser (a RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int(): "Exceeds the limit (4300 digits)", whose advice is for programmers
        raise ValueError("an integer has too many digits (over Python's 4,300-digit limit)") from None


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, so a hostile value cannot flood a one-line message."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an integer over the digit limit, a self-nested structure
        text = f"a {type(value).__name__}"
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."



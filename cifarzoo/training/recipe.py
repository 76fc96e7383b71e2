"""Training recipes: typed, validated dataclasses loaded from TOML.

A recipe file names a ``base`` file whose values it overrides, so the zoo's shared settings live in one place
(``cifarzoo/recipes/_cifar.toml``) and each zoo entry's file says only what differs. ``[variants.NAME]``
tables hold dotted overrides for a variant (``fast``). Unknown keys are errors, so a typo never silently
trains with a default.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import json
import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from cifarzoo.data.specs import DATASET_NAMES, VAL_SIZE
from cifarzoo.data.tta import TtaMode
from cifarzoo.errors import ConfigError
from cifarzoo.io.layout import RECIPE_NAME
from cifarzoo.models.specs import ARCHS, FreezeMode
from cifarzoo.releases import RecipeRef
from cifarzoo.typed import build_dataclass, read_document

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class ModelSection:
    """What to train: an arch plus builder options."""

    arch: str = "resnet26"
    drop_rate: float = 0.0  # dropout probability before the classifier
    se: bool = False  # Squeeze-and-Excitation gates in every block (CIFAR ResNets)
    freeze: FreezeMode = "none"  # tv_resnet50 only
    pretrained: str = ""  # tv_resnet50 only: ImageNet weights .pth path, or "torchvision" for its cache


@dataclass
class DataSection:
    """Where the images come from and how they are augmented (on the training device, per batch)."""

    dataset: str = "cifar10"  # one of DATASET_NAMES, or "folder"
    train_dir: str = ""  # dataset = "folder": one subfolder per class
    test_dir: str = ""  # dataset = "folder": optional held-out test folder
    val_size: int = VAL_SIZE  # examples split off the training set (seeded) to choose the best epoch
    train_subset: int = 0  # use only this many training examples (0 = all); for smoke tests
    test_subset: int = 0  # evaluate only this many test examples (0 = all); for smoke tests
    crop_padding: int = 4  # random crop after reflect padding by this many pixels (0 = off)
    flip: bool = True  # random horizontal flip
    cutout: int = 0  # side of a random square zeroed per image, in pixels (0 = off)
    auto_augment: Literal["none", "trivial", "cifar10"] = "none"  # TrivialAugmentWide or AutoAugment (CIFAR-10 policy)
    augment_group: int = 16  # images that share one randomly drawn auto-augment op


@dataclass
class OptimSection:
    """Optimiser. ``l2_in_loss`` adds ``weight_decay/2 * ||w||^2`` to the loss instead of using the
    optimiser's own weight decay (which for AdamW is decoupled)."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1  # peak learning rate, for the global batch size
    momentum: float = 0.9  # sgd
    nesterov: bool = True  # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw
    weight_decay: float = 5e-4
    l2_in_loss: bool = False
    decay_norm_and_bias: bool = False  # weight decay on BatchNorm and bias parameters too
    sam_rho: float = 0.0  # > 0 turns on Sharpness-Aware Minimisation with this neighbourhood radius
    grad_clip: float = 0.0  # max global gradient norm (0 = off)


@dataclass
class ScheduleSection:
    """Learning-rate schedule, stepped per iteration (``plateau`` per epoch, on the validation loss)."""

    name: Literal["cosine", "onecycle", "step", "plateau", "constant"] = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up from lr * warmup_start
    warmup_start: float = 0.1
    final_lr_fraction: float = 0.0  # cosine/onecycle end at lr * this
    milestones: tuple[float, ...] = (0.5, 0.75)  # step: fractions of the run at which lr is multiplied by gamma
    gamma: float = 0.1  # step, plateau: lr multiplier
    patience: int = 2  # plateau: epochs without val-loss improvement before lowering lr
    onecycle_peak: float = 0.25  # onecycle: fraction of the run spent rising


@dataclass
class TrainSection:
    """The loop itself."""

    epochs: int = 200
    batch_size: int = 128  # global: split across DDP ranks
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # > 0 keeps an exponential moving average of the weights; it is what gets evaluated
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # fp16 uses a GradScaler and needs CUDA
    channels_last: bool = True
    compile: bool = False  # torch.compile the model
    reuse_host_memory: bool = True  # CPU: keep freed tensor memory for reuse (runtime/host_memory.py); ~1.3x/step
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms: reproducible, slower
    eval_batch_size: int = 512
    tta: TtaMode = "none"  # test-time augmentation for the final val/test evaluation
    log_grad_norms: bool = False  # record per-stage gradient norms in metrics.jsonl


@dataclass
class DistillSection:
    """Knowledge distillation from a frozen teacher (off while ``teacher`` is empty)."""

    teacher: str = ""  # a run directory, checkpoint folder, zoo name or hf:// id with the same classes
    alpha: float = 0.9  # weight of the soft (teacher) term; 1 - alpha weights cross-entropy on the labels
    temperature: float = 4.0  # softmax temperature for both networks' logits in the soft term


@dataclass
class Recipe:
    """A complete training recipe. ``name`` is the zoo name it produces (``resnet26-fm``)."""

    name: str = "custom"
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)
    distill: DistillSection = field(default_factory=DistillSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        if isinstance(data, dict):  # before the types are checked: float() of a 400-digit integer overflows
            for dotted, value in _flatten(data).items():
                _check_number(dotted, value, finite=False)
        recipe = build_dataclass(cls, data, "recipe", prefix_fields=False)
        recipe.validate()
        return recipe

    def with_overrides(self, assignments: list[str]) -> Recipe:
        """A copy with ``section.key=value`` assignments applied (values parsed as Python/TOML literals)."""
        data = self.to_dict()
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep:
                raise ConfigError(f"--set expects section.key=value, got {assignment!r}")
            _assign(data, key.strip(), _parse_value(raw.strip()))
        return Recipe.from_dict(data)

    def validate(self) -> None:
        check_path_component(self.name, "recipe name")
        for dotted, value in _flatten(self.to_dict()).items():
            _check_number(dotted, value)
        paths = {"data.train_dir": self.data.train_dir, "data.test_dir": self.data.test_dir,
                 "model.pretrained": self.model.pretrained, "distill.teacher": self.distill.teacher}
        for dotted, value in paths.items():
            if "\0" in value:
                raise ConfigError(f"recipe {self.name!r}: {dotted} holds a NUL character")
        checks = [
            (self.model.arch in ARCHS, f"model.arch must be one of {list(ARCHS)}, got {self.model.arch!r}"),
            (0 <= self.model.drop_rate < 1, "model.drop_rate must be in [0, 1)"),
            (self.data.dataset in (*DATASET_NAMES, "folder"),
             f"data.dataset must be one of {[*DATASET_NAMES, 'folder']}, got {self.data.dataset!r}"),
            (self.data.dataset != "folder" or bool(self.data.train_dir),
             "data.dataset = 'folder' needs data.train_dir"),
            (min(self.data.val_size, self.data.train_subset, self.data.test_subset) >= 0,
             "data.val_size, data.train_subset and data.test_subset must be >= 0"),
            (0 <= self.data.crop_padding <= 16, "data.crop_padding must be 0-16"),
            (self.data.cutout >= 0 and self.data.augment_group >= 1, "data.cutout >= 0 and data.augment_group >= 1"),
            (self.optim.lr > 0 and self.optim.weight_decay >= 0, "optim.lr must be > 0 and optim.weight_decay >= 0"),
            # torch applies the rate to float32 weights: a larger one fails inside the optimiser's step.
            (self.optim.lr <= FLOAT32_MAX, f"optim.lr must be at most {FLOAT32_MAX:.4g} (float32's largest value), "
             f"got {self.optim.lr:g}"),
            (self.optim.weight_decay < 1, "optim.weight_decay must be < 1"),
            (0 <= self.optim.momentum < 1, "optim.momentum must be in [0, 1)"),
            (len(self.optim.betas) == 2 and all(0 <= b < 1 for b in self.optim.betas),
             "optim.betas must be two numbers in [0, 1)"),
            (self.optim.sam_rho >= 0 and self.optim.grad_clip >= 0, "optim.sam_rho and optim.grad_clip must be >= 0"),
            (self.schedule.warmup_epochs >= 0, "schedule.warmup_epochs must be >= 0"),
            (0 <= self.schedule.warmup_start <= 1 and 0 <= self.schedule.final_lr_fraction <= 1,
             "schedule.warmup_start and schedule.final_lr_fraction must be in [0, 1]"),
            (all(0 < m < 1 for m in self.schedule.milestones), "schedule.milestones are fractions in (0, 1)"),
            (0 < self.schedule.gamma < 1 and self.schedule.patience >= 0, "schedule.gamma in (0, 1), patience >= 0"),
            (0 < self.schedule.onecycle_peak < 1, "schedule.onecycle_peak must be in (0, 1)"),
            (self.train.epochs >= 1, "train.epochs must be >= 1"),
            (self.train.seed >= 0, "train.seed must be >= 0"),
            (self.train.batch_size >= 1 and self.train.eval_batch_size >= 1, "batch sizes must be >= 1"),
            (0 <= self.train.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
            (0 <= self.train.ema_decay < 1, "train.ema_decay must be in [0, 1)"),
            (0 <= self.distill.alpha <= 1 and self.distill.temperature > 0,
             "distill.alpha must be in [0, 1] and distill.temperature > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"recipe {self.name!r}: {message}")


# Bounds the numbers of a recipe must stay within on their way into torch: float32 for rates, int64 for counts.
FLOAT32_MAX = 3.4028234663852886e38
_INT64_LIMIT = 2**63


def _shown(key: str) -> str:
    """A key as the one-line messages show it: as typed, or quoted with escapes if it holds control characters."""
    return key if key.isprintable() else repr(key)


def _check_number(dotted: str, value: Any, *, finite: bool = True) -> None:
    """Every number of a recipe is finite, and every integer fits torch's int64 (seeds, sizes, counts)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if finite and isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{_shown(dotted)} must be a finite number, got {item!r}")
        if isinstance(item, int) and not isinstance(item, bool) and not -_INT64_LIMIT < item < _INT64_LIMIT:
            digits = len(str(abs(item))) if abs(item) < 10**4000 else "4000+"
            raise ConfigError(f"{_shown(dotted)} must be below 2**63 in size, got a {digits}-digit number")


def check_path_component(value: str, what: str) -> str:
    """``value`` if it names one file or folder (``resnet26-fm``): a run goes to ``runs/NAME``, so a name with a
    separator or ``..`` (``../../x``) would put it anywhere."""
    if (
        not value
        or value in (".", "..")
        or any(sep in value for sep in ("/", "\\", "\0"))
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
        or len(value.encode("utf-8", "surrogatepass")) > 128
    ):
        raise ConfigError(
            f"{what} {value!r} must be a single file name (no '/', '\\', '..' or control characters, at most 128 "
            "bytes): it names the run folder runs/NAME"
        )
    return value


# ----------------------------------------------------------------------------------------------------------
# Loading


def recipe_dir() -> Path:
    """The folder of the zoo's recipe files, inside the installed package (``train/recipes`` links to it)."""
    return Path(str(resources.files("cifarzoo") / "recipes"))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.toml") if not p.name.startswith("_"))


def load_recipe(name_or_path: str | Path, *, variant: str | None = None, overrides: list[str] | None = None) -> Recipe:
    """A recipe by zoo name (``resnet26-fm``) or TOML path, with an optional variant and ``--set`` overrides."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = recipe_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            close = difflib.get_close_matches(str(name_or_path), list_recipes(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(list_recipes())}"
            raise ConfigError(f"no recipe named {str(name_or_path)!r}{hint}")
    data = _read_toml_with_bases(path, seen=())
    variants = data.pop("variants", {})
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError(f"{path}: variants must be tables ([variants.NAME])")
    data.setdefault("name", path.stem)
    if variant:
        if variant not in variants:
            raise ConfigError(f"{path}: no variant {variant!r}; it has {sorted(variants) or 'none'}")
        for key, value in _flatten(variants[variant]).items():
            _assign(data, key, value)
    try:
        recipe = Recipe.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return recipe.with_overrides(overrides or [])


def recipe_for_run(
    recipe: str | Path,
    *,
    variant: str | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
) -> tuple[Recipe, Path]:
    """The recipe and run directory for ``cifarzoo train``.

    A resumed run replays its own ``recipe.json`` (plus ``overrides``), so a later edit of the zoo's recipe
    file cannot change a run midway; an explicit ``.toml`` path is read as given. Without ``out`` the run goes
    to ``runs/NAME[-VARIANT]``, always one folder inside ``runs/`` (names are single path components).
    """
    run_dir = Path(out) if out is not None else None
    saved = run_dir / RECIPE_NAME if run_dir is not None else None
    if variant is not None:
        check_path_component(variant, "variant")
    if resume and saved is not None and saved.is_file() and Path(recipe).suffix != ".toml":
        data = read_document(saved, _no_deep_nesting(json.loads), kind="JSON recipe")
        try:
            loaded = Recipe.from_dict(data).with_overrides(overrides or [])
        except ConfigError as exc:
            raise ConfigError(f"{saved}: {exc}") from None
    else:
        loaded = load_recipe(recipe, variant=variant, overrides=overrides)
    if run_dir is None:
        # The name and variant are single path components (validated), so the run stays inside runs/.
        run_dir = Path("runs") / check_path_component(loaded.name + (f"-{variant}" if variant else ""), "run name")
    return loaded, run_dir


def _no_deep_nesting(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with a document nested deeper than Python's recursion limit reported like any other unreadable
    one (``read_document`` words ``ValueError``s as one line)."""

    def parse_flat(text: str) -> Any:
        try:
            return parse(text)
        except RecursionError:
            raise ValueError("nested too deeply") from None

    return parse_flat


def _read_toml_with_bases(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{path}: recipe bases form a loop")
    # A FIFO or device would block or never end; a recipe is a regular file.
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path}: not a regular file")
    data = read_document(path, _no_deep_nesting(tomllib.loads), kind="TOML recipe")
    base_name = data.pop("base", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str) or not base_name.endswith(".toml") or "\0" in base_name:
        raise ConfigError(f"{path}: base must name a .toml file beside it (base = \"_cifar.toml\"), got {base_name!r}")
    base = _read_toml_with_bases(path.parent / base_name, seen + (path,))
    return _deep_merge(base, data)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _assign(data: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, key = dotted.split(".")
    target = data
    for section in sections:
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{_shown(dotted)}: {_shown(section)} is not a section")
    target[key] = value


def _parse_value(raw: str) -> Any:
    """``0.1`` -> float, ``true`` -> True, ``[1, 2]`` -> list, anything else -> the string itself."""
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(raw)
    # Not a literal: a plain string. literal_eval also raises TypeError ({[1]: 2}), RecursionError and MemoryError
    # (deep nesting) and ValueError (a 5,000-digit integer).
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        return raw


def recipe_differences(recipe: RecipeRef, recorded: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Where the recipe a run recorded (``config.json``'s ``recipe``) and the one ``recipe`` rebuilds differ:
    ``{"optim.lr": (recorded, rebuilt)}``, empty when the release's claim is true.

    Only keys both have are compared: a run made before a recipe section existed (``distill``) lacks it, and
    that section's defaults are what the run did. The description is prose, not a setting, and is not compared.
    """
    rebuilt_recipe = load_recipe(recipe.name, variant=recipe.variant, overrides=list(recipe.overrides))
    rebuilt = _flatten(json.loads(json.dumps(rebuilt_recipe.to_dict())))  # tuples as config.json has them: lists
    ran = _flatten(recorded)
    compared = sorted((ran.keys() & rebuilt.keys()) - {"description"})
    return {key: (ran[key], rebuilt[key]) for key in compared if ran[key] != rebuilt[key]}

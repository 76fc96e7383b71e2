"""The zoo: one entry per released (or releasable) model, named ``{arch}-{dataset_tag}``. Torch-free.

An entry says what the model is (arch, dataset, classes, preprocessing), what it costs (parameters, GFLOPs,
both checked against the real network by ``tests/test_registry.py``), how well it does (metrics, empty until
measured), where its weights come from, and which recipe trains it (recipe names are zoo names). Released
entries carry a :class:`~cifarzoo.releases.Release`, read from the generated ``cifarzoo/_releases.py``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from cifarzoo._releases import RELEASES
from cifarzoo.config import ModelConfig, PreprocessConfig
from cifarzoo.data.specs import DATASETS, IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
from cifarzoo.errors import ConfigError, UnknownModelError
from cifarzoo.models.specs import ARCHS, ArchSpec
from cifarzoo.releases import Release, WeightsSource
from cifarzoo.releases import WeightsKind as WeightsKind  # re-exported: it used to be defined here

# WeightsSource moved to cifarzoo.releases, because the generated module needs it without importing the
# registry (which imports that module); it stays importable from here.


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model. See the module docstring; :meth:`model_config` gives the config its checkpoint carries.

    ``release`` is the typed record of released weights (None until there are some). ``weights`` and the flat
    ``metrics`` (``test_top1``, ..., ``best_epoch``, ``epochs``) are derived from it by the registry, and stay
    fields so that callers (and tests) can point an entry at other weights with ``dataclasses.replace``.
    """

    name: str
    arch: str
    dataset: DatasetSpec
    num_params: int
    gflops: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    weights: WeightsSource = field(default_factory=WeightsSource)
    release: Release | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)

    @property
    def arch_spec(self) -> ArchSpec:
        return ARCHS[self.arch]

    @property
    def recipe(self) -> str:
        """The recipe name: a release's (which is the zoo name too), else the zoo name."""
        return self.release.recipe.name if self.release else self.name

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def top1(self) -> float | None:
        return self.metrics.get("test_top1")

    def model_config(self) -> ModelConfig:
        """The config this entry's checkpoints carry (see :func:`model_config`)."""
        return model_config(self)

    def summary(self) -> dict[str, Any]:
        """The ``cifarzoo list`` row: name, params, GFLOPs, top-1 and weights status."""
        return {
            "name": self.name,
            "arch": self.arch,
            "dataset": self.dataset.tag,
            "params": self.num_params,
            "gflops": self.gflops,
            "top1": self.top1,
            "weights": self.weights.describe(),
        }

    def describe(self) -> dict[str, Any]:
        """Everything about the entry, for ``cifarzoo info``."""
        cfg = self.model_config()
        return {
            **self.summary(),
            "dataset_name": self.dataset.title,
            "num_classes": self.num_classes,
            "classes": list(self.dataset.classes),
            "architecture": self.arch_spec.describe(),
            "model_args": dict(self.model_args),
            "preprocess": cfg.preprocess.to_dict(),
            "metrics": dict(self.metrics),
            "weights_source": {
                "kind": self.weights.kind,
                "location": self.weights.location,
                "revision": self.weights.revision,
                "sha256": dict(self.weights.sha256),
            },
            "recipe": self.recipe,
            "release": None if self.release is None else {
                "license": self.release.license,
                "recipe": self.release.recipe.command(),
                "epochs": self.release.epochs,
                "best_epoch": self.release.best_epoch,
                "metrics": {split: dict(values) for split, values in self.release.metrics.items()},
            },
        }


# (parameters, GFLOPs at the dataset's input size): measured on the real networks, and re-checked by the
# tests on every run. GFLOPs count a multiply-add as two FLOPs.
_COSTS: dict[str, tuple[int, float]] = {
    "resnet26-c10": (4_109_482, 0.386),
    "resnet26-c100": (4_213_252, 0.386),
    "resnet26-fm": (4_108_906, 0.317),
    "resnet34-c10": (4_261_674, 0.547),
    "resnet34-c100": (4_280_484, 0.547),
    "resnet34-fm": (4_261_098, 0.434),
    "resnet50-c10": (4_725_354, 0.61),
    "resnet50-c100": (4_800_324, 0.61),
    "resnet50-fm": (4_724_778, 0.485),
    "plain26-c10": (3_347_626, 0.325),
    "plain26-c100": (3_451_396, 0.325),
    "plain26-fm": (3_347_050, 0.266),
    "plain34-c10": (4_224_010, 0.544),
    "plain34-c100": (4_242_820, 0.544),
    "plain34-fm": (4_223_434, 0.432),
    "plain50-c10": (4_127_978, 0.554),
    "plain50-c100": (4_202_948, 0.555),
    "plain50-fm": (4_127_402, 0.439),
    "tv_resnet50-c10": (23_528_522, 8.174),
    "tv_resnet50-c100": (23_712_932, 8.175),
}

def offline_default(releases: Mapping[str, Release]) -> str:
    """The model `cifarzoo predict` uses when no --model is given: of the releases bundled with an ONNX file
    (so that prediction needs neither the network nor torch), the one with the best recorded test top-1; ties go
    to the first name in alphabetical order. Releasing a better bundled model with ONNX makes it the default."""
    offline = {name: release for name, release in releases.items()
               if release.source.kind == "bundled" and any(f.endswith(".onnx") for f in release.source.sha256)}
    if not offline:
        raise ValueError("no release is bundled with an ONNX file, so there is no offline default")
    return min(offline, key=lambda name: (-offline[name].metrics.get("test", {}).get("top1", float("-inf")), name))


DEFAULT_MODEL = offline_default(RELEASES)


def split_name(name: str) -> tuple[str, str]:
    """``"resnet26-c10"`` -> ``("resnet26", "c10")``."""
    arch, sep, tag = name.rpartition("-")
    if not sep or arch not in ARCHS or tag not in DATASETS:
        raise UnknownModelError(f"{name!r} is not a zoo name of the form ARCH-DATASET")
    return arch, tag


def _make_entry(name: str, cost: tuple[int, float]) -> ZooEntry:
    arch, tag = split_name(name)
    release = RELEASES.get(name)
    return ZooEntry(
        name=name,
        arch=arch,
        dataset=DATASETS[tag],
        num_params=cost[0],
        gflops=cost[1],
        metrics=MappingProxyType(release.flat_metrics() if release else {}),
        weights=release.source if release else WeightsSource(),
        release=release,
    )


ZOO: Mapping[str, ZooEntry] = MappingProxyType({name: _make_entry(name, cost) for name, cost in _COSTS.items()})

# A release for a name that is not in the zoo would be silently ignored: fail at import instead.
if RELEASES.keys() - ZOO.keys():
    raise ImportError(f"cifarzoo/_releases.py names unknown models: {sorted(RELEASES.keys() - ZOO.keys())}")


def list_models(pattern: str = "*", dataset: str | None = None, pretrained: bool = False) -> list[str]:
    """Zoo names matching a shell-style ``pattern`` (``"resnet*-c10"``), optionally one dataset tag, and
    optionally only those with released weights. Like ``timm.list_models``."""
    return [
        name
        for name, entry in ZOO.items()
        if fnmatch.fnmatchcase(name, pattern)
        and (dataset is None or entry.dataset.tag == dataset or entry.dataset.name == dataset)
        and (not pretrained or entry.weights.available)
    ]


def get_entry(name: str) -> ZooEntry:
    """The zoo entry for ``name``; an unknown name raises with the closest matches."""
    try:
        return ZOO[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(ZOO), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `cifarzoo list`"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def model_config(
    name_or_arch: str | ZooEntry,
    *,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
    preprocess: PreprocessConfig | None = None,
    dataset: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    name: str | None = None,
    recipe: str | dict[str, Any] | None = None,
) -> ModelConfig:
    """The one factory for model configs: a zoo entry's, or an arch's with any classes and preprocessing.

    ``name_or_arch`` is a zoo entry or its name (its classes, preprocessing, metrics and recipe) or an arch
    (CIFAR-10 classes and preprocessing). ``classes`` or a different ``num_classes`` (labels ``class_0 ...``) make a
    new head; the entry's name and metrics then no longer apply and are dropped. ``model_args`` are merged over the
    entry's. An ImageNet-pretrained arch (``tv_resnet50``) always normalises with ImageNet statistics.
    """
    if isinstance(name_or_arch, ZooEntry) or name_or_arch in ZOO:
        entry = name_or_arch if isinstance(name_or_arch, ZooEntry) else ZOO[name_or_arch]
        arch, spec = entry.arch, entry.dataset
        base_args: Mapping[str, Any] = entry.model_args
        config_name, metrics, base_recipe = entry.name, dict(entry.metrics), entry.recipe
    elif name_or_arch in ARCHS:
        arch, spec, base_args = name_or_arch, DATASETS["c10"], {}
        config_name, metrics, base_recipe = None, {}, None
    else:
        get_entry(name_or_arch)  # raises, naming the closest zoo names
        raise UnknownModelError(f"unknown model or arch {name_or_arch!r}")
    labels = tuple(spec.classes)
    if classes is not None:
        if num_classes is not None and num_classes != len(classes):
            raise ConfigError(f"num_classes={num_classes} conflicts with {len(classes)} class names")
        labels = tuple(classes)
    elif num_classes is not None and num_classes != len(labels):
        labels = tuple(f"class_{i}" for i in range(num_classes))
    if labels != tuple(spec.classes):
        config_name, metrics = None, {}
    preprocess = preprocess or spec.preprocess_config()
    if ARCHS[arch].family == "torchvision_resnet":
        preprocess = dataclasses.replace(preprocess, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return ModelConfig(
        arch=arch,
        num_classes=len(labels),
        classes=labels,
        preprocess=preprocess,
        model_args={**base_args, **(model_args or {})},
        name=name if name is not None else config_name,
        dataset=dataset if dataset is not None else spec.tag,
        metrics=metrics,
        recipe=recipe if recipe is not None else base_recipe,
    )

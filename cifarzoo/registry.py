"""The zoo: one entry per released (or releasable) model, named ``{arch}-{dataset_tag}``. Torch-free.

An entry says what the model is (arch, dataset, classes, preprocessing), what it costs (parameters, GFLOPs,
both checked against the real network by ``tests/test_registry.py``), how well it does (metrics, empty until
measured), where its weights come from, and which recipe trains it (recipe names are zoo names).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping

from cifarzoo.config import ModelConfig
from cifarzoo.data.specs import DATASETS, IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
from cifarzoo.errors import UnknownModelError
from cifarzoo.models.specs import ARCHS, ArchSpec

WeightsKind = Literal["none", "bundled", "hub"]


@dataclass(frozen=True)
class WeightsSource:
    """Where an entry's trained weights come from.

    Attributes:
        kind: ``"none"`` (not released yet), ``"bundled"`` (shipped inside the package) or ``"hub"``.
        location: the package-relative folder (bundled) or the Hub repo id (hub).
        revision: the pinned Hub revision, a commit sha.
        sha256: expected sha256 per file name, checked after download.
    """

    kind: WeightsKind = "none"
    location: str | None = None
    revision: str | None = None
    sha256: Mapping[str, str] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        if self.kind == "hub":
            return f"hub:{self.location}@{(self.revision or 'main')[:12]}"
        if self.kind == "bundled":
            return "bundled"
        return "none"


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model. See the module docstring; :meth:`model_config` gives the config its checkpoint carries."""

    name: str
    arch: str
    dataset: DatasetSpec
    num_params: int
    gflops: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    weights: WeightsSource = field(default_factory=WeightsSource)
    model_args: Mapping[str, Any] = field(default_factory=dict)
    imagenet_normalization: bool = False

    @property
    def arch_spec(self) -> ArchSpec:
        return ARCHS[self.arch]

    @property
    def recipe(self) -> str:
        return self.name

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def top1(self) -> float | None:
        return self.metrics.get("test_top1")

    def model_config(self) -> ModelConfig:
        stats = (IMAGENET_MEAN, IMAGENET_STD) if self.imagenet_normalization else (None, None)
        return ModelConfig(
            arch=self.arch,
            num_classes=self.num_classes,
            classes=self.dataset.classes,
            preprocess=self.dataset.preprocess_config(*stats),
            model_args=dict(self.model_args),
            name=self.name,
            dataset=self.dataset.tag,
            metrics=dict(self.metrics),
            recipe=self.recipe,
        )

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

# Released weights and their measured metrics, by zoo name. Entries not listed have none yet.
_RELEASES: dict[str, tuple[WeightsSource, dict[str, float]]] = {
    # Trained on this project's 2-core CPU (train/README.md); metrics re-measured on the bundled fp16 files by
    # train/bundle.py, and reproduced by `cifarzoo eval --dataset fashion-mnist --split test`.
    "resnet26-fm": (
        WeightsSource(
            kind="bundled",
            location="resnet26-fm",
            sha256={
                "model.safetensors": "f3dcdde00dbcebd2aa32913f0ef5c2d7833176e9e72db35c69d93f9d9e1e1b58",
                "model.onnx": "e1d78b9f4961d28c8f3fbf00370799b0ab7e4098711cb2a7004c68f369a5a71a",
            },
        ),
        {
            "test_top1": 93.32000000000001,
            "test_top5": 99.92,
            "test_top1_flip_tta": 93.47,
            "val_top1": 93.72,
            "test_ece": 0.07488997195489998,
            "best_epoch": 15,
            "epochs": 15,
        },
    ),
}

# The model `cifarzoo predict` uses when no --model is given: the offline default.
DEFAULT_MODEL = "resnet26-fm"


def split_name(name: str) -> tuple[str, str]:
    """``"resnet26-c10"`` -> ``("resnet26", "c10")``."""
    arch, sep, tag = name.rpartition("-")
    if not sep or arch not in ARCHS or tag not in DATASETS:
        raise UnknownModelError(f"{name!r} is not a zoo name of the form ARCH-DATASET")
    return arch, tag


def _make_entry(name: str, cost: tuple[int, float]) -> ZooEntry:
    arch, tag = split_name(name)
    weights, metrics = _RELEASES.get(name, (WeightsSource(), {}))
    return ZooEntry(
        name=name,
        arch=arch,
        dataset=DATASETS[tag],
        num_params=cost[0],
        gflops=cost[1],
        metrics=MappingProxyType(metrics),
        weights=weights,
        imagenet_normalization=ARCHS[arch].family == "torchvision_resnet",
    )


ZOO: Mapping[str, ZooEntry] = MappingProxyType({name: _make_entry(name, cost) for name, cost in _COSTS.items()})


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
        import difflib

        close = difflib.get_close_matches(name, list(ZOO), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `cifarzoo list`"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None

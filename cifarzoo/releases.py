"""Typed release metadata: where a zoo entry's trained weights are, how well they do, and how they were made.

The releases themselves are data written as code: ``cifarzoo/_releases.py`` holds a literal ``RELEASES`` dict
of :class:`Release` constructor calls. It is generated -- ``train/bundle.py`` and ``export/release.py`` call
:func:`write_releases_module` -- never edited by hand, and ``tests/test_registry.py`` checks that the file on
disk is exactly what :func:`render_releases_module` gives for the objects it defines. Torch-free, like the
registry that reads it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Mapping

from cifarzoo.atomic import atomic_write_text

WeightsKind = Literal["none", "bundled", "hub"]

RELEASES_MODULE = Path(__file__).with_name("_releases.py")
DEFAULT_LICENSE = "Apache-2.0"  # SPDX id; the package's own license (pyproject.toml)

# Flat metric keys that are not "<split>_<metric>": the run's length and its best-on-val epoch.
_EPOCH_KEYS = ("epochs", "best_epoch")


@dataclass(frozen=True)
class WeightsSource:
    """Where an entry's trained weights come from.

    Attributes:
        kind: ``"none"`` (not released yet), ``"bundled"`` (shipped inside the package) or ``"hub"``.
        location: the package-relative folder (bundled) or the Hub repo id (hub).
        revision: the pinned Hub revision, a commit sha.
        sha256: expected sha256 per file name, checked after download (and on every load of a bundled model).
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
class RecipeRef:
    """The recipe a release was trained with, as ``cifarzoo train`` takes it.

    Attributes:
        name: the recipe name (a zoo name, ``resnet26-fm``).
        variant: the ``--variant`` applied, if any (``fast``).
        overrides: the ``--set section.key=value`` assignments applied after the variant, in order.
    """

    name: str
    variant: str | None = None
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))  # a list from a caller still compares equal

    def command(self) -> str:
        """The ``cifarzoo train`` arguments that reproduce the recipe: ``resnet26-c10 --variant fast``."""
        parts = [self.name]
        if self.variant:
            parts += ["--variant", self.variant]
        for assignment in self.overrides:
            parts += ["--set", assignment]
        return " ".join(parts)


def metric_decimals(metric: str) -> int:
    """Decimals a metric is reported with: 4 for calibration error, losses and the relative robustness (fractions
    and nats), 2 for the percentages (top-1, top-5, mCA, ...). Two decimals of a percentage are exact on a
    10,000-image test set."""
    return 4 if metric.endswith(("ece", "loss", "mca_relative")) else 2


def round_metric(metric: str, value: float) -> float:
    """``value`` at the precision :func:`metric_decimals` gives ``metric``; integers (counts) pass unchanged."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"metric {metric!r} must be a number, got {value!r}")
    if isinstance(value, int):
        return value
    if not math.isfinite(value):
        # A release's metrics were measured; NaN would also not survive as a Python literal.
        raise ValueError(f"metric {metric!r} is {value}; a release records only measured, finite values")
    return round(value, metric_decimals(metric))


def flat_key(split: str, metric: str) -> str:
    """``("test", "top1")`` -> ``"test_top1"``; the split-less ``("", "ece")`` -> ``"ece"``."""
    return f"{split}_{metric}" if split else metric


def split_flat_key(key: str) -> tuple[str, str]:
    """``"test_top1_flip_tta"`` -> ``("test", "top1_flip_tta")``; ``"cifar10.1_top1"`` -> ``("cifar10.1",
    "top1")``; a key with no split (``"ece"``) -> ``("", "ece")``. Inverse of :func:`flat_key`."""
    split, sep, metric = key.partition("_")
    return (split, metric) if sep and split and metric else ("", key)


@dataclass(frozen=True)
class Release:
    """One released set of weights for a zoo entry.

    Metrics are rounded to their reported precision (:func:`round_metric`) on construction, so the generated
    module, ``cifarzoo info`` and the model card all show the same numbers, and they are frozen.

    Attributes:
        source: where the files are and their sha256 pins.
        metrics: measured metrics by split, e.g. ``{"test": {"top1": 93.32, "ece": 0.0749}, "val": {...}}``.
        license: the weights' license, an SPDX id.
        recipe: the recipe (name, variant, overrides) the weights were trained with.
        epochs: the epochs the run trained for.
        best_epoch: the epoch whose weights were kept (best on the validation split), 1-based.
    """

    source: WeightsSource
    metrics: Mapping[str, Mapping[str, float]]
    license: str
    recipe: RecipeRef
    epochs: int
    best_epoch: int

    def __post_init__(self) -> None:
        if not self.source.available:
            raise ValueError("a release needs weights: source.kind must be 'bundled' or 'hub'")
        if not 1 <= self.best_epoch <= self.epochs:
            raise ValueError(f"best_epoch {self.best_epoch} is not within 1..{self.epochs} epochs")
        frozen = {
            split: MappingProxyType({metric: round_metric(flat_key(split, metric), value)
                                     for metric, value in values.items()})
            for split, values in self.metrics.items()
        }
        object.__setattr__(self, "metrics", MappingProxyType(frozen))

    def flat_metrics(self) -> dict[str, float]:
        """The metrics as a checkpoint's ``config.json`` records them: ``test_top1``, ..., ``best_epoch``,
        ``epochs`` (what ``ZooEntry.metrics`` gives)."""
        flat: dict[str, float] = {flat_key(split, metric): value
                                  for split, values in self.metrics.items() for metric, value in values.items()}
        flat.update(best_epoch=self.best_epoch, epochs=self.epochs)
        return flat

    @classmethod
    def from_flat_metrics(cls, flat: Mapping[str, float], *, source: WeightsSource, license: str,
                          recipe: RecipeRef) -> Release:
        """A release from a checkpoint's flat metrics (which must hold ``epochs`` and ``best_epoch``); keys
        whose value is not a finite number (a NaN for a split that was not measured) are left out."""
        missing = [key for key in _EPOCH_KEYS if key not in flat]
        if missing:
            raise ValueError(f"metrics lack {', '.join(missing)}")
        by_split: dict[str, dict[str, float]] = {}
        for key, value in flat.items():
            if key in _EPOCH_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                continue
            split, metric = split_flat_key(key)
            by_split.setdefault(split, {})[metric] = value
        return cls(source=source, metrics=by_split, license=license, recipe=recipe,
                   epochs=int(flat["epochs"]), best_epoch=int(flat["best_epoch"]))


# ----------------------------------------------------------------------------------------------------------
# The generated module

_HEADER = '''\
"""Released weights and their measured metrics, by zoo name. GENERATED -- do not edit by hand.

Written by train/bundle.py (bundled weights) and export/release.py (Hub weights) through
cifarzoo.releases.write_releases_module; tests/test_registry.py checks that this file is exactly what
cifarzoo.releases.render_releases_module renders for the objects below. To change a release, rerun the script.
"""

from cifarzoo.releases import RecipeRef, Release, WeightsSource

'''


def _literal(value: Any, indent: int) -> str:
    """``value`` as Python source, one item per line for containers, so the text depends only on the value
    (never on repr details such as quote style) and every line stays short."""
    pad, inner = " " * indent, " " * (indent + 4)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        args = "".join(f"{inner}{f.name}={_literal(getattr(value, f.name), indent + 4)},\n"
                       for f in dataclasses.fields(value))
        return f"{type(value).__name__}(\n{args}{pad})"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = "".join(f"{inner}{_literal(k, indent + 4)}: {_literal(v, indent + 4)},\n" for k, v in value.items())
        return f"{{\n{items}{pad}}}"
    if isinstance(value, tuple):
        if not value:
            return "()"
        items = "".join(f"{inner}{_literal(v, indent + 4)},\n" for v in value)
        return f"(\n{items}{pad})"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a double-quoted string whose escapes Python reads too
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # the shortest text that reads back as the same float
    raise TypeError(f"cannot write {value!r} into the releases module")


def render_releases_module(releases: Mapping[str, Release]) -> str:
    """The text of ``cifarzoo/_releases.py`` for ``releases``, sorted by zoo name."""
    body = _literal({name: releases[name] for name in sorted(releases)}, 0)
    return f"{_HEADER}RELEASES = {body}\n"


def write_releases_module(releases: Mapping[str, Release], path: str | os.PathLike = RELEASES_MODULE) -> Path:
    """Render ``releases`` and write them to ``path`` atomically (a killed script leaves the old file whole)."""
    for name, release in releases.items():
        if not isinstance(release, Release):
            raise TypeError(f"{name}: expected a Release, got {type(release).__name__}")
    atomic_write_text(path, render_releases_module(releases))
    return Path(path)

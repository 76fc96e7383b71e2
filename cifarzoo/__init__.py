"""cifarzoo: a model zoo and inference tool for small-image classification.

    >>> import cifarzoo
    >>> cifarzoo.list_models("resnet*-c10")
    ['resnet26-c10', 'resnet34-c10', 'resnet50-c10']
    >>> model = cifarzoo.create_model("resnet26-c10")      # untrained, with CIFAR-10 classes and preprocessing
    >>> model = cifarzoo.load("path/to/checkpoint")        # trained: model.safetensors + config.json

Attributes are imported lazily so that ``import cifarzoo`` (and the CLI's start-up) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from cifarzoo._version import __version__

_LAZY = {
    "load": "cifarzoo.api",
    "create_model": "cifarzoo.model",
    "ZooModel": "cifarzoo.model",
    "evaluate": "cifarzoo.api",
    "evaluate_corruptions": "cifarzoo.api",
    "calibrate": "cifarzoo.api",
    "list_models": "cifarzoo.registry",
    "get_entry": "cifarzoo.registry",
    "ModelConfig": "cifarzoo.config",
    "PreprocessConfig": "cifarzoo.config",
    "Prediction": "cifarzoo.runtime.predictor",
    "CifarzooError": "cifarzoo.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cifarzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

"""Dicts (parsed JSON or TOML) -> validated dataclasses, for every config the package reads. Torch-free.

``config.json`` (:mod:`cifarzoo.config`) and training recipes (:mod:`cifarzoo.training.recipe`) both go through
:func:`build_dataclass`: unknown keys are errors (a typo never silently falls back to a default), and values
are checked against the field's type hint (``Literal`` choices, ``int`` vs ``float`` vs ``bool``, tuples,
nested dataclasses). Range checks that need several fields stay in each dataclass's own validation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar, get_args, get_origin, get_type_hints

from cifarzoo.errors import ConfigError

T = TypeVar("T")


def build_dataclass(cls: type[T], data: Any, where: str, *, prefix_fields: bool = True) -> T:
    """Build dataclass ``cls`` from ``data``, checking key names and value types recursively.

    ``where`` names the table in messages (``optim``, ``preprocess``); fields are called ``where.field`` unless
    ``prefix_fields`` is false (a file's top level). A bad value raises :class:`ConfigError` naming the field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table (a JSON object), got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(map(str, set(data) - names))
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; allowed: {sorted(names)}")
    values = {
        name: _coerce(hints[name], value, f"{where}.{name}" if prefix_fields else name) for name, value in data.items()
    }
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # a missing required field, or a constructor's own type error
        raise ConfigError(f"invalid {where}: {exc}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        # A dataclass with its own from_dict (PreprocessConfig) validates itself; plain ones are built here.
        own = getattr(hint, "from_dict", None)
        return own(value) if own is not None else build_dataclass(hint, value, where)
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{where} must be one of {list(get_args(hint))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = get_args(hint)[0]
        return tuple(_coerce(item, v, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value  # unions and mappings: checked by the dataclass's own validation


def read_document(path: Path, parse: Callable[[str], Any], *, kind: str) -> Any:
    """Read and parse a UTF-8 text file (``json.loads``, ``tomllib.loads``); every failure is a one-line
    :class:`ConfigError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable {kind} file ({exc})") from None
    try:
        return parse(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ConfigError(f"{path}: not a readable {kind} file ({exc})") from None

"""What every command shares: friendly errors, option aliases and plain-text tables."""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
from enum import Enum
from types import MappingProxyType
from typing import Any, Sequence

import typer
from typer.core import TyperGroup

from cifarzoo.errors import CifarzooError


def choice_enum(name: str, values: Sequence[str]) -> Any:
    """A ``str`` Enum typer shows as ``--option [a|b|c]``, built from the library's own option list (a
    ``Literal``'s ``get_args``), so the CLI's choices cannot drift from what the library accepts."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


def debug_enabled() -> bool:
    return os.environ.get("CIFARZOO_DEBUG", "") not in ("", "0", "false", "False")


# What must not reach a terminal raw from text cifarzoo did not write (class names from a model's config.json, file
# names, labels): C0 and C1 controls and DEL (escape sequences retitle the window, clear the screen or move the
# cursor; a newline or carriage return forges table rows), the bidi overrides, isolates and marks (they reorder what
# is shown), line and paragraph separators, and lone surrogates (they cannot even be encoded).
_UNSAFE_CHARACTERS = re.compile(
    r"[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides and isolates
    r"\u2028\u2029\ud800-\udfff]"  # line and paragraph separators, lone surrogates
)
_NAMED_ESCAPES = MappingProxyType({"\n": "\\n", "\r": "\\r", "\t": "\\t"})
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape_character(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def escape_text(text: object) -> str:
    """``text`` safe to print on a terminal: control, bidi and unencodable characters become visible escapes
    (``\\x1b``, ``\\n``, ``\\u202e``); everything else, accents and all, is unchanged. For lines and tables meant
    for people; ``--json`` keeps names exact."""
    return _UNSAFE_CHARACTERS.sub(_escape_character, str(text))


def echo(text: object = "", *, err: bool = False, nl: bool = True) -> None:
    """``typer.echo`` of :func:`escape_text`: for any line that may hold a name from a file."""
    typer.echo(escape_text(text), err=err, nl=nl)


def print_error(message: str) -> None:
    typer.echo(f"error: {escape_text(message)}", err=True)


class FriendlyErrorsGroup(TyperGroup):
    """Turns a :class:`CifarzooError` into ``error: <one line>`` and exit code 1; ``CIFARZOO_DEBUG=1`` lets
    the traceback through. Other exceptions are bugs and keep their traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CifarzooError as exc:
            if debug_enabled():
                raise
            print_error(str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            print_error("interrupted")
            raise typer.Exit(130) from None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """A plain aligned text table (no colour, so it pipes and diffs cleanly); every cell goes through
    :func:`escape_text`, so a name cannot break a row or reach the terminal as a control sequence."""
    cells = [[escape_text(h) for h in headers]] + [["" if c is None else escape_text(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def json_ready(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, infinities) as ``None`` and numpy scalars as Python numbers:
    JSON has no NaN, and a bare ``NaN`` in the output breaks every strict parser."""
    if isinstance(data, dict):
        return {key: json_ready(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_ready(value) for value in data]
    if isinstance(data, bool) or not isinstance(data, numbers.Real):
        return data
    if isinstance(data, numbers.Integral):
        return int(data)
    number = float(data)
    return number if math.isfinite(number) else None


def write_json(data: Any) -> None:
    """Print ``data`` as one JSON document: exact names (``ensure_ascii=False``; JSON escapes control characters
    itself), never a bare ``NaN`` (:func:`json_ready`, then ``allow_nan=False`` to be sure)."""
    import json

    text = json.dumps(json_ready(data), indent=2, ensure_ascii=False, allow_nan=False)
    # A lone surrogate (a class name written "\\ud800" in a config.json) cannot be encoded: write it as the JSON
    # escape ensure_ascii=True would have written, which decodes to the same string.
    text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")

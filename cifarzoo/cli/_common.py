"""What every command shares: friendly errors, option aliases and plain-text tables."""

from __future__ import annotations

import os
import sys
from enum import Enum
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


def print_error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


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
    """A plain aligned text table (no colour, so it pipes and diffs cleanly)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def write_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")

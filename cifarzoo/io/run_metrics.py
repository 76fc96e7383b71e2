"""Reading a training run's ``metrics.jsonl``: one JSON object per epoch. Torch-free, so ``cifarzoo compare``
starts without importing torch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cifarzoo.errors import CifarzooError
from cifarzoo.io.layout import METRICS_NAME


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch rows of a run, in order; ``[]`` when the run has none yet.

    A final line without its newline is a write cut short by a crash and is left out (the epoch is redone
    on resume); any other malformed line is an error naming the file and line.
    """
    path = Path(run_dir) / METRICS_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CifarzooError(f"{path}: cannot read ({exc})") from None
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # the unterminated last line
                break
            raise CifarzooError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(row, dict):
            raise CifarzooError(f"{path}:{number}: not a JSON object")
        rows.append(row)
    return rows

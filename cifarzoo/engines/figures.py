"""The one figure helper: matplotlib through its object-oriented Agg canvas, saved atomically.

Drawing never touches pyplot, so it never changes the caller's matplotlib backend and needs no display.
matplotlib is imported only when a figure is drawn, which keeps ``cifarzoo`` start-up light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from cifarzoo.atomic import atomic_path
from cifarzoo.errors import CifarzooError


def new_figure(
    width: float, height: float, *, layout: Literal["constrained", "compressed", "tight"] | None = "constrained"
) -> Any:
    """A ``matplotlib.figure.Figure`` of ``width`` x ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def colour_cycle() -> list[str]:
    """matplotlib's default line colours, for one colour per run or class."""
    from matplotlib import rcParams

    return list(rcParams["axes.prop_cycle"].by_key()["color"])


def figure_format(path: str | os.PathLike) -> str:
    """The image format ``path``'s suffix asks for (``png`` without one); an unsupported one is a one-line error."""
    path = Path(path)
    kind = path.suffix.lstrip(".").lower() or "png"
    supported = new_figure(1, 1).canvas.get_supported_filetypes()
    if kind not in supported:
        raise CifarzooError(f"{path}: cannot write .{kind} figures; use one of .{', .'.join(sorted(supported))}")
    return kind


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format of its suffix; a write failure is a one-line error."""
    path = Path(path)
    kind = figure_format(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=kind, dpi=dpi)
    except OSError as exc:
        raise CifarzooError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path

"""``cifarzoo demo``: try a model in the browser (a Gradio app; ``pip install 'cifarzoo[demo]'``)."""

from __future__ import annotations

from typing import Optional

import typer

from cifarzoo.engines.demo import DEFAULT_HOST
from cifarzoo.registry import DEFAULT_MODEL


def demo_command(
    model: str = typer.Option(
        DEFAULT_MODEL, "--model", "-m", help="A zoo name, checkpoint folder or hf:// id, shown first in the picker."
    ),
    host: str = typer.Option(
        DEFAULT_HOST, "--host",
        help="The address to serve on: 127.0.0.1 is this machine only; 0.0.0.0 lets your whole network in.",
    ),
    port: Optional[int] = typer.Option(
        None, "--port", "-p", min=1, max=65535, help="The port [default: 7860, or the next free one]."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
) -> None:
    """Serve a browser demo: drop or paste an image to see the top-5 classes and a Grad-CAM overlay, with the
    model's card and metrics beside them and a picker over the zoo models that have weights.

    Concurrent requests are queued and run through the network in batches. Needs the optional extra:
    pip install 'cifarzoo[demo]'. Stop it with Ctrl-C.
    """
    from cifarzoo.engines.demo import launch_demo

    launch_demo(model=model, host=host, port=port, device=device)

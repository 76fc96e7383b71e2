"""``cifarzoo demo``: try a model in the browser, as a Gradio app.

Drop or paste an image and see the top-k classes as bars and a Grad-CAM overlay of the top class, with the
model's card (its metrics) beside them and a picker over the zoo entries that have weights. Requests go
through Gradio's queue, and the classify function is batched (``batch=True``): requests that arrive together
run through the network as one batch, one batch at a time.

Gradio is an optional extra (``pip install 'cifarzoo[demo]'``); without it, :func:`require_gradio` raises a
one-line error naming the extra. The app binds to 127.0.0.1 unless told otherwise, never opens a share
link, and turns Gradio's analytics and version check off. :func:`write_space_app` writes an ``app.py`` that
runs the same app on a Hugging Face Space.

This module imports neither torch nor gradio until a model is loaded or an app is built, so the CLI can
import it cheaply.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import threading
import weakref
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cifarzoo.atomic import atomic_path, atomic_write_text
from cifarzoo.config import ModelConfig
from cifarzoo.data.preprocess import ImageInput, load_uint8, normalize
from cifarzoo.data.specs import DATASETS
from cifarzoo.errors import CifarzooError
from cifarzoo.io.resolve import resolve
from cifarzoo.registry import DEFAULT_MODEL, ZOO, list_models

DEMO_EXTRA = "demo"  # pip install 'cifarzoo[demo]'
DEFAULT_HOST = "127.0.0.1"  # this machine only; 0.0.0.0 would serve the whole network
TOPK = 5
MAX_BATCH_SIZE = 16  # requests served by one forward/backward pass
QUEUE_SIZE = 256  # waiting requests beyond this are refused (Gradio says the queue is full)
OVERLAY_SIZE = 224
SPACE_APP_NAME = "app.py"  # what a Hugging Face Space runs
# Show small inputs (28x28, 32x32) as large as the box, with their pixels sharp, like the Grad-CAM overlay.
DEMO_CSS = "#input-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"


def require_gradio() -> Any:
    """The ``gradio`` module, with analytics off; a one-line :class:`CifarzooError` naming the extra when it
    is not installed."""
    # Read by gradio when it starts and whenever it would send telemetry or check for a new version.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as exc:
        cause = "" if getattr(exc, "name", None) == "gradio" else f" ({exc})"
        raise CifarzooError(
            f"the demo needs Gradio, which is not installed{cause}: pip install 'cifarzoo[{DEMO_EXTRA}]'"
        ) from None
    return gradio


# ----------------------------------------------------------------------------------------------------------
# Models: loaded once per app, with their card


@dataclass
class DemoModel:
    """A torch model ready for the demo: the network (eval mode), its config and its card (Markdown)."""

    ref: str
    net: Any
    config: ModelConfig
    card: str

    @property
    def title(self) -> str:
        return self.config.name or self.ref


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def model_card_markdown(config: ModelConfig, *, ref: str, num_params: int) -> str:
    """A short model card: what the model is, what it sees, its measured metrics and its classes."""
    from cifarzoo.engines.publish import METRIC_TITLES, SET_TITLES, format_metric, group_metrics

    spec = DATASETS.get(config.dataset or "")
    dataset = spec.title if spec else (config.dataset or "a custom dataset")
    pre = config.preprocess
    colour = "grayscale" if pre.color_mode == "L" else pre.color_mode
    lines = [
        f"### {_cell(config.name or ref)}",
        "",
        f"A {config.arch} network ({num_params / 1e6:.2f}M parameters) for {_cell(dataset)}'s "
        f"{config.num_classes} classes. It sees {pre.input_size}x{pre.input_size} {colour} images: yours are "
        f"converted and resized ({pre.resize}) to that, so a large photo loses most of its detail.",
        "",
    ]
    groups = {group: values for group, values in group_metrics(config.metrics).items() if group}
    columns = list(dict.fromkeys(m for values in groups.values() for m in values))
    if columns:
        lines += [
            "| evaluation set | " + " | ".join(_cell(METRIC_TITLES.get(m, m)) for m in columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        lines += [
            f"| {_cell(SET_TITLES.get(group, group))} | "
            + " | ".join(format_metric(m, values.get(m)) for m in columns) + " |"
            for group, values in groups.items()
        ]
    else:
        lines.append("No metrics recorded in its config.")
    shown = ", ".join(_cell(c) for c in config.classes[:20])
    more = f", ... ({config.num_classes} in all)" if config.num_classes > 20 else ""
    lines += ["", f"**Classes:** {shown}{more}"]
    if config.name in ZOO:
        lines += ["", f"In the zoo as `{config.name}`: `cifarzoo predict IMG --model {config.name}`."]
    return "\n".join(lines) + "\n"


def load_demo_model(ref: str, *, device: str = "auto") -> DemoModel:
    """The torch model named by ``ref`` (zoo name, checkpoint folder or ``hf://`` id); the demo draws
    Grad-CAM, which needs the torch weights (``model.safetensors``)."""
    from cifarzoo.io.checkpoint import load_checkpoint
    from cifarzoo.models.factory import count_params
    from cifarzoo.runtime.torch_runner import torch_device

    source = resolve(ref, backend="torch")
    if source.kind == "file":
        raise CifarzooError(f"{ref}: the demo needs torch weights (a folder with model.safetensors), not an export")
    net, config = load_checkpoint(source.path)
    net = net.to(torch_device(device)).eval()
    return DemoModel(ref, net, config, model_card_markdown(config, ref=ref, num_params=count_params(net)))


class ModelCache:
    """Models by reference, loaded on first use and kept for the app's life. Thread-safe: Gradio runs the
    card and classify functions on worker threads."""

    def __init__(self, device: str = "auto"):
        self.device = device
        self._lock = threading.Lock()
        self._models: dict[str, DemoModel] = {}

    def get(self, ref: str) -> DemoModel:
        with self._lock:
            if ref not in self._models:
                self._models[ref] = load_demo_model(ref, device=self.device)
            return self._models[ref]


def model_choices(model: str) -> list[str]:
    """The picker's entries: the zoo entries that have weights, and ``model`` first when it is not one."""
    zoo = list_models(pretrained=True)
    return zoo if model in zoo else [model, *zoo]


# ----------------------------------------------------------------------------------------------------------
# Classifying


@dataclass
class DemoResult:
    """One image's answer: the top-k ``{class: probability}`` and the Grad-CAM overlay of the top class."""

    topk: dict[str, float]
    overlay: np.ndarray


def classify_batch(model: DemoModel, images: Sequence[ImageInput], *, topk: int = TOPK) -> list[DemoResult]:
    """Top-k and Grad-CAM for a batch of images (files, PIL images or arrays) in one forward/backward pass."""
    import torch

    from cifarzoo.engines.explain import grad_cam, overlay

    if not images:
        return []
    cfg = model.config.preprocess
    pixels = np.stack([load_uint8(image, cfg) for image in images])
    device = next(model.net.parameters()).device
    result = grad_cam(model.net, torch.from_numpy(normalize(pixels, cfg)).to(device),
                      temperature=model.config.temperature)
    k = max(1, min(topk, model.config.num_classes))
    answers = []
    for probs, heatmap, image in zip(result.probs, result.heatmaps, pixels):
        top = np.argsort(-probs, kind="stable")[:k]
        answers.append(DemoResult(
            {model.config.classes[i]: float(probs[i]) for i in top}, overlay(image, heatmap, size=OVERLAY_SIZE)
        ))
    return answers


class OverlayFiles:
    """The overlays handed to Gradio, as PNG files named by their content, in a folder that lives as long as
    this object.

    Gradio caches an image returned as an array by rewriting one content-addressed file in place (gradio 6's
    ``save_pil_to_cache``), so two concurrent requests with the same overlay (the same example image) could
    serve a half-written file: the client then fails with "Too little data for declared Content-Length". A
    returned file path is instead copied into Gradio's cache under a temporary name and renamed, so each file
    here is written once, atomically, and handed over by path.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="cifarzoo-demo-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)

    def save(self, overlay: np.ndarray) -> str:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(overlay).save(buffer, format="PNG")
        data = buffer.getvalue()
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
        if not path.exists():
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        return str(path)


def make_classify_fn(
    cache: ModelCache, choices: Sequence[str], on_batch: Callable[[int], None] | None = None
) -> Callable[[list[Any], list[str]], tuple[list[Any], list[Any]]]:
    """Gradio's batched function: lists of images and model names in, lists of labels and overlays out.

    A batch may mix models (each request carries the picker's value); each model runs once on its images.
    Only the picker's ``choices`` are served: a request cannot make the server load another folder or Hub
    repo. ``on_batch`` is called with each batch's size before it runs (for tests and logging).
    """

    overlay_files = OverlayFiles()

    def classify(images: list[Any], refs: list[str]) -> tuple[list[Any], list[Any]]:
        if on_batch is not None:
            on_batch(len(images))
        unknown = sorted({ref for ref in refs if ref not in choices})
        if unknown:
            raise _gradio_error(f"{unknown[0]}: not one of this demo's models ({', '.join(choices)})")
        labels: list[Any] = [None] * len(images)
        overlays: list[str | None] = [None] * len(images)
        by_model: dict[str, list[int]] = defaultdict(list)
        for i, (image, ref) in enumerate(zip(images, refs)):
            if image is not None:
                by_model[ref].append(i)
        for ref, indices in by_model.items():
            try:
                results = classify_batch(cache.get(ref), [images[i] for i in indices])
            except CifarzooError as exc:  # a model that cannot load, an unreadable image: shown in the page
                raise _gradio_error(str(exc)) from None
            for i, result in zip(indices, results):
                labels[i], overlays[i] = result.topk, overlay_files.save(result.overlay)
        return labels, overlays

    return classify


def _gradio_error(message: str) -> Exception:
    gr = require_gradio()
    return gr.Error(message)


# ----------------------------------------------------------------------------------------------------------
# The app


INTRO = (
    "# cifarzoo demo\n"
    "Drop, paste or upload an image: the model's top-{k} classes appear as bars, and the Grad-CAM overlay shows "
    "where in the image the evidence for the top class lies (red: strong)."
)


def build_demo(
    *,
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    max_batch_size: int = MAX_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> Any:
    """The Gradio app (a ``gr.Blocks``, queued), not yet launched.

    ``model`` is shown first (a zoo name, a checkpoint folder or an ``hf://`` id); it is loaded here, so a
    bad reference is a one-line error before anything is served. The picker offers the zoo entries that
    have weights. Concurrent requests are batched, up to ``max_batch_size`` at a time.
    """
    gr = require_gradio()
    cache = ModelCache(device)
    first = cache.get(model)
    choices = model_choices(model)
    classify = make_classify_fn(cache, choices, on_batch)

    def card(ref: str) -> str:
        if ref not in choices:
            raise gr.Error(f"{ref}: not one of this demo's models ({', '.join(choices)})")
        try:
            return cache.get(ref).card
        except CifarzooError as exc:
            raise gr.Error(str(exc)) from None

    with gr.Blocks(title="cifarzoo demo", analytics_enabled=False) as demo:
        gr.Markdown(INTRO.format(k=TOPK))
        with gr.Row():
            with gr.Column(scale=2):
                picker = gr.Dropdown(choices, value=model, label="model", elem_id="model-picker")
                image = gr.Image(type="pil", label="image", sources=["upload", "clipboard"], height=OVERLAY_SIZE,
                                 elem_id="input-image")
                button = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column(scale=2):
                label = gr.Label(num_top_classes=TOPK, label=f"top-{TOPK}", elem_id="top-k")
                cam = gr.Image(label="Grad-CAM of the top class", interactive=False, format="png", elem_id="cam")
            with gr.Column(scale=4):
                card_box = gr.Markdown(first.card, elem_id="model-card")
        gr.on(
            triggers=[image.input, button.click],
            fn=classify,
            inputs=[image, picker],
            outputs=[label, cam],
            batch=True,
            max_batch_size=max_batch_size,
            concurrency_limit=1,  # one batch through the network at a time; the others wait and batch up
            api_name="classify",
        )
        picker.change(card, inputs=picker, outputs=card_box, api_name="card")
    return demo.queue(max_size=QUEUE_SIZE)


def launch_demo(
    *,
    model: str = DEFAULT_MODEL,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    device: str = "auto",
    block: bool = True,
) -> Any:
    """Build and serve the app on ``host:port`` (Gradio's 7860, or the next free port, when ``port`` is
    ``None``). Blocks until interrupted unless ``block=False``; returns the app (``.close()`` stops it)."""
    demo = build_demo(model=model, device=device)
    try:
        demo.launch(
            server_name=host, server_port=port, share=False, prevent_thread_lock=not block, ssr_mode=False,
            show_error=True, css=DEMO_CSS,
        )
    except OSError as exc:
        raise CifarzooError(f"cannot serve on {host}:{port or 'a free port'} ({exc})") from None
    return demo


# ----------------------------------------------------------------------------------------------------------
# A Hugging Face Space


SPACE_APP = '''"""A Gradio demo of {model}, made by cifarzoo {version} (`cifarzoo publish --space-app`).

To run it as a Hugging Face Space, create a Gradio Space and add this file with a requirements.txt that
holds the line `cifarzoo[demo]`. To run it here: pip install 'cifarzoo[demo]' and python app.py.
"""

from cifarzoo.engines.demo import DEMO_CSS, build_demo

demo = build_demo(model={ref!r})

if __name__ == "__main__":
    demo.launch(css=DEMO_CSS)  # a Space sets the address and port (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT)
'''


def space_app_source(model: str) -> str:
    """The text of ``app.py``: the demo of ``model`` (an ``hf://USER/REPO`` id or a zoo name)."""
    from cifarzoo._version import __version__

    return SPACE_APP.format(model=model, version=__version__, ref=model)


def write_space_app(folder: str | os.PathLike, model: str) -> Path:
    """Write ``folder/app.py`` (:func:`space_app_source`), atomically. Returns its path."""
    path = Path(folder) / SPACE_APP_NAME
    atomic_write_text(path, space_app_source(model))
    return path


__all__ = [
    "DEFAULT_HOST",
    "DemoModel",
    "DemoResult",
    "build_demo",
    "classify_batch",
    "launch_demo",
    "load_demo_model",
    "model_card_markdown",
    "require_gradio",
    "space_app_source",
    "write_space_app",
]

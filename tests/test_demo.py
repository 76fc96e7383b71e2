"""``cifarzoo demo``: the Gradio app on the bundled model, served on 127.0.0.1, with batched requests.

The app runs the real model on the real Fashion-MNIST test images in examples/ (named after their class; the
bundled model gets all but the shirt right). Tests that need Gradio are skipped, saying so, when it is not
installed; the one-line error for that case is tested either way. tests/test_browser.py drives the same app
from Chromium.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cifarzoo.cli import app
from cifarzoo.engines import demo as demo_engine
from cifarzoo.registry import DEFAULT_MODEL, ZOO, list_models

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FM = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
runner = CliRunner()

needs_gradio = pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None or importlib.util.find_spec("gradio_client") is None,
    reason="gradio and gradio_client are not installed (pip install -e '.[dev]', or 'cifarzoo[demo]')",
)


def example_label(path: Path) -> str:
    """The class an examples/ file is named after: test00019_t-shirt-top.png -> T-shirt/top."""
    key = path.stem.split("_", 1)[1].replace("-", "")
    return next(c for c in FM if c.lower().replace("-", "").replace("/", "").replace(" ", "") == key)


# What the bundled default (resnet34-fm) answers for each example: all ten right. (resnet26-fm, the default before
# it, called the shirt a T-shirt/top.)
EXPECTED = {p: example_label(p) for p in sorted(EXAMPLES.glob("*.png"))}
RIGHT = [p for p in EXPECTED if EXPECTED[p] == example_label(p)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The IPv4/IPv6 addresses that a socket listens on at ``port``, read from /proc/net/tcp*."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    if len(address) == 8:
                        found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                    else:
                        found.add(address)
    return found


@pytest.fixture
def quiet_gradio(tmp_path, monkeypatch):
    """Gradio's files under tmp_path, and no telemetry from the server or the client."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


# ----------------------------------------------------------------------------------------------------------
# Without Gradio, and the parts that do not need it


def test_missing_gradio_is_one_line_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ModuleNotFoundError
    result = runner.invoke(app, ["demo", "--port", "9"])
    assert result.exit_code == 1
    assert result.stderr == "error: the demo needs Gradio, which is not installed: pip install 'cifarzoo[demo]'\n"
    assert "Traceback" not in result.output


def test_demo_help_defaults_to_localhost() -> None:
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "127.0.0.1" in result.output and "cifarzoo[demo]" in result.output


def test_classify_batch_matches_one_by_one_and_gets_the_examples_right() -> None:
    model = demo_engine.load_demo_model(DEFAULT_MODEL, device="cpu")
    paths = list(EXPECTED)
    batch = demo_engine.classify_batch(model, paths)
    assert [next(iter(r.topk)) for r in batch] == [EXPECTED[p] for p in paths]
    for result in batch:
        probs = list(result.topk.values())
        assert len(probs) == demo_engine.TOPK and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert result.overlay.shape == (demo_engine.OVERLAY_SIZE, demo_engine.OVERLAY_SIZE, 3)
        assert result.overlay.dtype == np.uint8 and result.overlay.std() > 5  # a picture, not a flat square
    for path, result in list(zip(paths, batch))[::4]:  # batching changes no answer
        with Image.open(path) as image:
            (alone,) = demo_engine.classify_batch(model, [image])  # a batch of one, from PIL
        assert list(alone.topk) == list(result.topk)
        np.testing.assert_allclose(list(alone.topk.values()), list(result.topk.values()), atol=1e-5)
        np.testing.assert_allclose(alone.overlay, result.overlay, atol=2)


def test_model_card_has_the_metrics_and_the_picker_the_models_with_weights(tmp_path) -> None:
    model = demo_engine.load_demo_model(DEFAULT_MODEL, device="cpu")
    card = model.card
    entry = ZOO[DEFAULT_MODEL]
    assert card.startswith(f"### {DEFAULT_MODEL}\n") and "28x28 grayscale" in card
    assert f"{entry.num_params / 1e6:.2f}M parameters" in card
    top1, top5 = entry.metrics["test_top1"], entry.metrics["test_top5"]
    assert f"| test | {top1:.2f} | {top5:.2f} |" in card and "Ankle boot" in card
    with_weights = list_models(pretrained=True)
    assert DEFAULT_MODEL in with_weights and "plain26-fm" in with_weights and "resnet50-c10" not in with_weights
    assert demo_engine.model_choices(DEFAULT_MODEL) == with_weights
    assert demo_engine.model_choices(str(tmp_path)) == [str(tmp_path), *with_weights]


def test_space_app_runs_the_demo_of_the_published_repo(tmp_path, monkeypatch) -> None:
    path = demo_engine.write_space_app(tmp_path, "hf://me/resnet26-fm")
    assert path == tmp_path / "app.py"
    source = path.read_text()
    calls = [
        n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "build_demo"
    ]
    assert [ast.literal_eval(k.value) for k in calls[0].keywords] == ["hf://me/resnet26-fm"]
    built = []
    monkeypatch.setattr(demo_engine, "build_demo", lambda **kw: built.append(kw) or "app")
    namespace: dict = {"__name__": "app"}
    exec(compile(source, str(path), "exec"), namespace)  # what a Space runs, without launching
    assert built == [{"model": "hf://me/resnet26-fm"}] and namespace["demo"] == "app"


@needs_gradio
def test_a_bad_model_is_one_line_before_anything_is_served() -> None:
    result = runner.invoke(app, ["demo", "--model", "resnet99-xx", "--port", "9"])
    assert result.exit_code == 1 and result.stderr.startswith("error: unknown model 'resnet99-xx'")
    assert len(result.stderr.splitlines()) == 1


@needs_gradio
def test_only_the_pickers_models_are_served(tmp_path) -> None:
    import gradio as gr

    loaded: list[str] = []

    class Cache:  # records what the app would load
        def get(self, ref: str):
            loaded.append(ref)
            raise AssertionError("nothing should load")

    classify = demo_engine.make_classify_fn(Cache(), [DEFAULT_MODEL])
    with pytest.raises(gr.Error, match="not one of this demo's models"):  # a request cannot name a folder
        classify([np.zeros((28, 28), np.uint8)], [str(tmp_path)])
    assert classify([None], [DEFAULT_MODEL]) == ([None], [None])  # a cleared image: empty outputs
    assert loaded == []


# ----------------------------------------------------------------------------------------------------------
# The served app


@needs_gradio
def test_twenty_concurrent_requests_all_succeed_in_batches(quiet_gradio) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    gate = threading.Event()
    sizes: list[int] = []

    def on_batch(size: int) -> None:
        sizes.append(size)
        gate.wait(timeout=120)  # hold the first batch until all 20 requests are queued behind it

    app_ = demo_engine.build_demo(model=DEFAULT_MODEL, device="cpu", on_batch=on_batch)
    port = free_port()
    app_.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, ssr_mode=False,
                quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                        download_files=str(quiet_gradio / "downloads"))
        images = [RIGHT[i % len(RIGHT)] for i in range(20)]
        jobs = [client.submit(handle_file(str(p)), DEFAULT_MODEL, api_name="/classify") for p in images]
        waiting = {Status.STARTING, Status.JOINING_QUEUE}
        deadline = time.monotonic() + 120
        while any(job.status().code in waiting for job in jobs) and time.monotonic() < deadline:
            time.sleep(0.1)
        gate.set()
        results = [job.result(timeout=180) for job in jobs]
    finally:
        gate.set()
        app_.close()
    assert [r[0]["label"] for r in results] == [example_label(p) for p in images]  # each its own answer
    for label, overlay in results:
        assert len(label["confidences"]) == demo_engine.TOPK
        with Image.open(overlay) as picture:
            assert picture.size == (demo_engine.OVERLAY_SIZE, demo_engine.OVERLAY_SIZE)
    assert sum(sizes) == 20 and max(sizes) > 1 and len(sizes) <= 3, sizes  # served in batches


@needs_gradio
def test_cli_demo_serves_the_bundled_model_on_localhost_only(quiet_gradio) -> None:
    from gradio_client import Client, handle_file

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cifarzoo", "demo", "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", server)
        assert listening_addresses(port) == {"127.0.0.1"}  # not 0.0.0.0: nothing outside this machine gets in
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                        download_files=str(quiet_gradio / "downloads"))
        sandal = EXAMPLES / "test00008_sandal.png"
        label, _ = client.predict(handle_file(str(sandal)), DEFAULT_MODEL, api_name="/classify")
        assert label["label"] == "Sandal"
        assert client.predict(DEFAULT_MODEL, api_name="/card").startswith(f"### {DEFAULT_MODEL}")
    finally:
        stop(server)


def wait_for_http(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    """Poll ``url`` until it answers 200, failing with the server's output if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the demo exited with {server.returncode}:\n{server.stdout.read() if server.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    stop(server)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s")


def stop(server: subprocess.Popen) -> None:
    """End the demo this test started (by its own handle) and wait for it."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
    if server.stdout:
        server.stdout.close()


def test_publish_space_app_adds_app_py_to_the_hub_folder(c10_checkpoint, tmp_path, monkeypatch) -> None:
    from cifarzoo.engines import publish
    from cifarzoo.engines.export import Exported

    def fake_export(folder, *, fmt, dtype="fp32", **_):  # the real exports are tested in test_publish.py
        name = "model.onnx" if fmt == "onnx" else "model.torchscript.pt"
        (Path(folder) / name).write_bytes(b"")
        return Exported(Path(folder) / name, fmt, dtype, "test")

    monkeypatch.setattr(publish, "export", fake_export)
    out = tmp_path / "hub"
    result = runner.invoke(app, ["publish", str(c10_checkpoint), "--repo-id", "me/c10", "--dry-run", "--out",
                                 str(out), "--no-int8", "--space-app"])
    assert result.exit_code == 0, result.output
    assert (out / "app.py").read_text() == demo_engine.space_app_source("hf://me/c10")
    assert "| `app.py` | a Gradio demo of this model for a Hugging Face Space" in (out / "README.md").read_text()
    plain = publish.build_hub_folder(c10_checkpoint, tmp_path / "plain", "me/c10", int8=False)
    assert "app.py" not in plain.files  # only when asked for

"""Loading from the Hugging Face Hub, offline: huggingface_hub's real ``hf_hub_download`` reads a real cache
layout built in a temp dir (``models--USER--REPO/{blobs, snapshots/<commit>, refs/main}``).

No zoo entry has Hub weights yet, so the tests put a ``ZooEntry`` with ``kind="hub"`` in front of the lookup.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.errors import CheckpointError, CifarzooError, NoWeightsError, UnknownModelError
from cifarzoo.io import resolve
from cifarzoo.model import ZooModel
from cifarzoo.registry import ZOO, WeightsSource, ZooEntry
from cifarzoo.runtime.onnx import OnnxModel

REPO = "cifarzoo-test/resnet26-fm"
OLD = hashlib.sha1(b"first release").hexdigest()  # commit shas: 40 hex digits, as on the Hub
NEW = hashlib.sha1(b"second release").hexdigest()
NAME = "resnet26-fm"


# ----------------------------------------------------------------------------------------------------------
# Fixtures: two releases as bytes, an HF cache in a temp dir, a zoo entry with Hub weights


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """OLD: config.json + model.safetensors + model.onnx; NEW (other weights): config.json + model.safetensors."""
    from cifarzoo.engines.export import export

    files = {}
    for seed, commit in ((0, OLD), (1, NEW)):
        torch.manual_seed(seed)
        folder = tmp_path_factory.mktemp(f"release{seed}")
        cifarzoo.create_model(NAME, zero_init_last=False).save_pretrained(folder)
        if commit == OLD:
            export(folder, fmt="onnx")  # the one ONNX export of this module
        files[commit] = _folder_bytes(folder)
    return files


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF cache, offline. huggingface_hub reads these variables when imported, so its constants are
    set too (the subprocess test checks that the environment alone works)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def etag(name: str, data: bytes) -> str:
    """The Hub's etag, which names the blob: sha256 for LFS files, the git blob sha1 for small text files."""
    if name.endswith(".json"):
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return hashlib.sha256(data).hexdigest()


def write_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes], ref: str | None = "main") -> Path:
    """Lay ``files`` out exactly as hf_hub_download leaves them; ``ref`` (a branch) points at ``commit``."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    for name, data in files.items():
        blob = storage / "blobs" / etag(name, data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        pointer = storage / "snapshots" / commit / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    if ref:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return storage / "snapshots" / commit


def pins(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def hub_entry(revision: str | None = OLD, sha256: dict[str, str] | None = None, repo: str = REPO) -> ZooEntry:
    return dataclasses.replace(
        ZOO[NAME], weights=WeightsSource(kind="hub", location=repo, revision=revision, sha256=sha256 or {})
    )


@pytest.fixture
def zoo(monkeypatch):
    """``zoo(entry)`` makes ``cifarzoo.load(entry.name)`` resolve through that entry."""

    def install(entry: ZooEntry) -> ZooEntry:
        real = resolve.get_entry
        monkeypatch.setattr(resolve, "get_entry", lambda name: entry if name == entry.name else real(name))
        return entry

    return install


def weights_of(files: dict[str, bytes]) -> dict[str, torch.Tensor]:
    return load_safetensors_bytes(files["model.safetensors"])


def assert_same_weights(model: ZooModel, files: dict[str, bytes]) -> None:
    expected = weights_of(files)
    state = model.net.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


# ----------------------------------------------------------------------------------------------------------
# Loading by zoo name


def test_load_by_name_from_the_hub(hub_cache, releases, zoo) -> None:
    snapshot = write_snapshot(hub_cache, REPO, OLD, releases[OLD])
    zoo(hub_entry(sha256=pins(releases[OLD])))
    assert resolve.resolve_model_dir(NAME) == snapshot
    model = cifarzoo.load(NAME, device="cpu")
    assert isinstance(model, ZooModel) and not model.training
    assert model.config.arch == "resnet26" and model.classes == ZOO[NAME].dataset.classes
    assert_same_weights(model, releases[OLD])


def test_only_the_files_the_backend_reads_are_fetched(hub_cache, releases, zoo, monkeypatch) -> None:
    import huggingface_hub

    # A cache holding only the ONNX side of the release: the onnx backend needs nothing else.
    onnx_side = {k: v for k, v in releases[OLD].items() if k != "model.safetensors"}
    write_snapshot(hub_cache, REPO, OLD, onnx_side)
    zoo(hub_entry(sha256=pins(releases[OLD])))
    asked: list[str] = []
    # Every way a file is looked up: the cache lookup of a pinned commit, and the download.
    for function in ("hf_hub_download", "try_to_load_from_cache"):
        real = getattr(huggingface_hub, function)
        monkeypatch.setattr(
            huggingface_hub,
            function,
            lambda repo_id, filename, _real=real, **kw: asked.append(filename) or _real(repo_id, filename, **kw),
        )

    onnx_model = cifarzoo.load(NAME, device="cpu", backend="onnx")
    assert isinstance(onnx_model, OnnxModel) and sorted(set(asked)) == ["config.json", "model.onnx"]
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    from cifarzoo.models.factory import build_model

    net = build_model("resnet26", 10, 1, **ZOO[NAME].model_config().model_args)
    net.load_state_dict(weights_of(releases[OLD]))
    with torch.no_grad():
        np.testing.assert_allclose(onnx_model.logits(x), net.eval()(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)

    asked.clear()
    with pytest.raises(CifarzooError, match=r"model\.safetensors not in the Hugging Face cache") as err:
        cifarzoo.load(NAME, device="cpu", backend="torch")
    assert sorted(set(asked)) == ["config.json", "model.safetensors"] and "model.onnx" not in str(err.value)


def test_auto_backend_takes_onnx_when_the_repo_has_it(hub_cache, releases) -> None:
    write_snapshot(hub_cache, REPO, OLD, releases[OLD], ref=None)
    write_snapshot(hub_cache, REPO, NEW, releases[NEW])
    old = cifarzoo.load(f"hf://{REPO}@{OLD}", device="cpu", backend="auto")
    assert isinstance(old, OnnxModel) and not old.cached_export  # the repo's own model.onnx
    # NEW has no ONNX: its safetensors are exported once into cifarzoo's cache (never into the HF cache).
    new = cifarzoo.load(f"hf://{REPO}", device="cpu", backend="auto")
    assert isinstance(new, OnnxModel) and new.cached_export and not new.path.is_relative_to(hub_cache)
    assert isinstance(cifarzoo.load(f"hf://{REPO}", device="cpu", backend="torch"), ZooModel)


def test_revision_pin_wins_over_main(hub_cache, releases, zoo) -> None:
    write_snapshot(hub_cache, REPO, OLD, releases[OLD], ref=None)
    write_snapshot(hub_cache, REPO, NEW, releases[NEW], ref="main")  # main has moved on
    zoo(hub_entry(revision=OLD, sha256=pins(releases[OLD])))
    assert_same_weights(cifarzoo.load(NAME, device="cpu"), releases[OLD])
    assert_same_weights(cifarzoo.load(f"hf://{REPO}", device="cpu"), releases[NEW])
    assert_same_weights(cifarzoo.load(f"hf://{REPO}@{OLD}", device="cpu"), releases[OLD])
    assert_same_weights(cifarzoo.load(f"hf://{REPO}@main", device="cpu"), releases[NEW])


# ----------------------------------------------------------------------------------------------------------
# Integrity: sha256 pins, strict loading, validated configs


def test_sha256_mismatch_names_both_hashes(hub_cache, releases, zoo) -> None:
    write_snapshot(hub_cache, REPO, OLD, releases[OLD])
    wrong = "0" * 64
    zoo(hub_entry(sha256={**pins(releases[OLD]), "model.safetensors": wrong}))
    actual = hashlib.sha256(releases[OLD]["model.safetensors"]).hexdigest()
    with pytest.raises(CheckpointError) as err:
        cifarzoo.load(NAME, device="cpu")
    message = str(err.value)
    assert f"expected {wrong}, got {actual}" in message and "model.safetensors" in message and "\n" not in message


def test_a_tampered_cache_fails_its_pin(hub_cache, releases, zoo) -> None:
    snapshot = write_snapshot(hub_cache, REPO, OLD, releases[OLD])
    zoo(hub_entry(sha256=pins(releases[OLD])))
    # Swap the blob's content for other weights of the same shape: it would load fine without the pin.
    (snapshot / "model.safetensors").resolve().write_bytes(releases[NEW]["model.safetensors"])
    with pytest.raises(
        CheckpointError,
        match="sha256 mismatch: expected .*, got " + hashlib.sha256(releases[NEW]["model.safetensors"]).hexdigest(),
    ):
        cifarzoo.load(NAME, device="cpu")


def test_a_registry_entry_serves_only_pinned_files(hub_cache, releases, zoo) -> None:
    write_snapshot(hub_cache, REPO, OLD, releases[OLD])
    zoo(hub_entry(sha256={"config.json": pins(releases[OLD])["config.json"]}))
    with pytest.raises(CheckpointError, match="pins no sha256 for model.safetensors"):
        cifarzoo.load(NAME, device="cpu")


def test_weights_are_loaded_strictly(hub_cache, releases) -> None:
    state = weights_of(releases[OLD])
    state["extra.weight"] = torch.zeros(3)
    del state["fc.bias"]
    files = {**releases[OLD], "model.safetensors": save_safetensors_bytes(state)}
    write_snapshot(hub_cache, REPO, OLD, files)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): fc\.bias; unexpected keys \(1\): extra\.weight"):
        cifarzoo.load(f"hf://{REPO}", device="cpu")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: {**c, "shell": "rm -rf /"}, r"unknown keys \['shell'\]"),
        (lambda c: {**c, "preprocess": {**c["preprocess"], "std": [0.0]}}, "preprocess.std must be positive"),
        (lambda c: {**c, "classes": c["classes"][:3]}, "classes has 3 names but num_classes is 10"),
    ],
)
def test_config_is_validated_through_the_hub(hub_cache, releases, change, reason) -> None:
    config = change(json.loads(releases[OLD]["config.json"]))
    snapshot = write_snapshot(hub_cache, REPO, OLD, {**releases[OLD], "config.json": json.dumps(config).encode()})
    for backend in ("torch", "onnx"):
        with pytest.raises(CifarzooError, match=reason) as err:
            cifarzoo.load(f"hf://{REPO}", device="cpu", backend=backend)
        assert str(snapshot / "config.json") in str(err.value)


def test_a_config_that_is_not_json_is_one_line(hub_cache, releases) -> None:
    write_snapshot(hub_cache, REPO, OLD, {**releases[OLD], "config.json": b"{not json"})
    with pytest.raises(CheckpointError, match="not a readable JSON file") as err:
        cifarzoo.load(f"hf://{REPO}", device="cpu")
    assert "\n" not in str(err.value)


def test_a_repo_holding_another_model_is_refused_for_a_zoo_name(hub_cache, c10_checkpoint, zoo) -> None:
    files = _folder_bytes(c10_checkpoint)
    write_snapshot(hub_cache, REPO, OLD, files)
    zoo(hub_entry(sha256=pins(files)))
    with pytest.raises(CheckpointError, match="describes resnet26 with 10 classes, not the zoo entry's"):
        cifarzoo.load(NAME, device="cpu")


# ----------------------------------------------------------------------------------------------------------
# Missing files, offline, atomic downloads


def test_missing_files_offline_say_which_and_how_to_get_them(hub_cache, zoo) -> None:
    zoo(hub_entry(sha256={"config.json": "a" * 64, "model.safetensors": "b" * 64}))
    with pytest.raises(CifarzooError) as err:
        cifarzoo.load(NAME, device="cpu")
    message = str(err.value)
    assert message.startswith(f"{NAME}: config.json, model.safetensors not in the Hugging Face cache ({hub_cache})")
    assert "HF_HUB_OFFLINE=1" in message and "run once online" in message
    assert f"`hf download {REPO} config.json model.safetensors --revision {OLD}`" in message
    assert "\n" not in message


def test_missing_files_through_the_cli_are_one_line(hub_cache, zoo, image_dir) -> None:
    zoo(hub_entry(sha256={"config.json": "a" * 64, "model.safetensors": "b" * 64, "model.onnx": "c" * 64}))
    result = CliRunner().invoke(app, ["predict", str(image_dir), "--model", NAME])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {NAME}: config.json, model.safetensors not in the Hugging Face cache"
    )


def test_an_incomplete_blob_is_not_taken_for_a_download(hub_cache, releases, zoo) -> None:
    """hf_hub_download writes blobs/<etag>.incomplete and links the snapshot only once the file is whole."""
    storage = write_snapshot(hub_cache, REPO, OLD, {"config.json": releases[OLD]["config.json"]}).parent.parent
    data = releases[OLD]["model.safetensors"]
    (storage / "blobs" / (etag("model.safetensors", data) + ".incomplete")).write_bytes(data[: len(data) // 2])
    zoo(hub_entry(sha256=pins(releases[OLD])))
    with pytest.raises(CifarzooError, match=rf"^{NAME}: model\.safetensors not in the Hugging Face cache"):
        cifarzoo.load(NAME, device="cpu")
    # Even a complete .incomplete file is not trusted: only the snapshot link marks a finished download.
    (storage / "blobs" / (etag("model.safetensors", data) + ".incomplete")).write_bytes(data)
    with pytest.raises(CifarzooError, match="model.safetensors not in the Hugging Face cache"):
        cifarzoo.load(NAME, device="cpu")


def test_environment_variables_alone_select_the_cache_and_offline_mode(tmp_path, releases) -> None:
    """A fresh process with HF_HUB_CACHE and HF_HUB_OFFLINE set, on the torch-free ONNX path."""
    cache = tmp_path / "hf-cache"
    write_snapshot(cache, REPO, OLD, releases[OLD])
    code = (
        "import sys, numpy as np, cifarzoo\n"
        f"m = cifarzoo.load('hf://{REPO}', backend='onnx', device='cpu')\n"
        "assert 'torch' not in sys.modules, 'the ONNX path imported torch'\n"
        "print(m.path, m.logits(np.zeros((1, 1, 28, 28), np.float32)).shape)\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        str(cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / OLD / "model.onnx"),
        "(1,",
        "10)",
    ]


# ----------------------------------------------------------------------------------------------------------
# hf:// ids and entries without weights


def test_hf_ids_parse_and_fail_clearly(hub_cache) -> None:
    from cifarzoo.io.hub import HubModel

    assert HubModel.parse(f"hf://{REPO}@{OLD}") == HubModel(REPO, OLD, {}, f"hf://{REPO}@{OLD}")
    assert HubModel.parse(f"hf://{REPO}").revision is None
    with pytest.raises(UnknownModelError, match="a Hub repo id is USER/NAME"):
        cifarzoo.load("hf://just-a-name")
    with pytest.raises(UnknownModelError, match="empty revision"):
        cifarzoo.load(f"hf://{REPO}@")
    with pytest.raises(UnknownModelError, match="invalid Hub repo id"):
        cifarzoo.load("hf://bad--name/x..y")
    with pytest.raises(
        CifarzooError,
        match=rf"hf://{REPO}@v9: config.json, model.safetensors not in the Hugging Face cache.*--revision v9`",
    ):
        cifarzoo.load(f"hf://{REPO}@v9")


def test_unpinned_hf_ids_never_load_code(hub_cache, releases) -> None:
    write_snapshot(hub_cache, REPO, OLD, {**releases[OLD], "model.torchscript.pt": b"not even read"})
    with pytest.raises(CheckpointError, match="only taken from repos whose files are sha256-pinned"):
        cifarzoo.load(f"hf://{REPO}", backend="torchscript")


def test_hub_errors_become_one_line(hub_cache, monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub.utils import RepositoryNotFoundError

    def not_found(repo_id, filename, **kwargs):
        # Built without an HTTP response (its type differs across huggingface_hub versions); only the class matters.
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        Exception.__init__(error, "404 Client Error.\n\nRepository Not Found for url: ...")
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_found)
    with pytest.raises(
        CifarzooError, match=rf"^hf://{REPO}: no model repo {REPO} on the Hub \(if it is private, log in"
    ) as err:
        cifarzoo.load(f"hf://{REPO}")
    assert "\n" not in str(err.value)


def test_an_entry_without_released_weights_names_the_training_command() -> None:
    with pytest.raises(
        NoWeightsError, match=r"resnet50-c10 has no released weights yet; train them with `cifarzoo train resnet50-c10`"
    ):
        cifarzoo.load("resnet50-c10")


def test_resolve_keeps_its_old_signature(c10_checkpoint) -> None:
    assert resolve.resolve_model_dir(c10_checkpoint) == c10_checkpoint
    assert resolve.resolve_model_dir(str(c10_checkpoint), backend="onnx") == c10_checkpoint


# ----------------------------------------------------------------------------------------------------------
# The network: an unreachable Hub, a captive portal, a Hub that errors, and the online path, all against
# local servers (127.0.0.1) through HF_ENDPOINT; never the real network.

HTML = b"<html><body>Please accept the terms of this Wi-Fi network</body></html>"


class FakeHub:
    """An HTTP server on 127.0.0.1 in a thread, answering with ``respond(method, path)`` and counting requests."""

    def __init__(self, respond) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                status, headers, data = respond(self.command, self.path)
                self.send_response(status)
                for key, value in {"Content-Length": str(len(data)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    servers: list[FakeHub] = []

    def start(respond) -> FakeHub:
        servers.append(FakeHub(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def closed_port() -> int:
    """A local port nothing listens on: connecting is refused at once, as when the machine is offline."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(args: list[str], endpoint: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``cifarzoo ARGS`` in a fresh process against ``endpoint``, with an empty HF cache and not offline."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    environment.update(
        HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_CACHE=str(tmp_path / "hf-cache"), **env
    )
    return subprocess.run([sys.executable, "-m", "cifarzoo", *args], env=environment, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def png(tmp_path) -> Path:
    from PIL import Image

    Image.new("L", (28, 28), 90).save(tmp_path / "img.png")
    return tmp_path / "img.png"


def assert_one_line_offline_error(done: subprocess.CompletedProcess, reason: str) -> str:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # no retry warnings, no traceback
    line = lines[0]
    assert line.startswith("error: hf://user/repo: config.json, model.safetensors not in the Hugging Face cache (")
    assert reason in line
    assert "HF_HUB_OFFLINE=1" in line and "--model ./DIR" in line and "`hf download user/repo config.json" in line
    return line


def test_an_unreachable_hub_fails_at_once_with_one_line(tmp_path, png) -> None:
    """A refused connection (what an offline machine gets): one request's worth of time, not huggingface_hub's
    five retries per file (~46 s before). The retries would print warnings, so one stderr line proves none ran."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = run_cli(["predict", str(png), "--model", "hf://user/repo"], endpoint, tmp_path)
    assert_one_line_offline_error(done, f"the Hub at {endpoint} cannot be reached (ConnectError: ")


def test_a_hub_that_does_not_answer_times_out_once(tmp_path, png) -> None:
    """A server that accepts the connection and never answers: HF_HUB_ETAG_TIMEOUT bounds the one request."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody ever reads or answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        done = run_cli(["predict", str(png), "--model", "hf://user/repo"], endpoint, tmp_path, HF_HUB_ETAG_TIMEOUT="1")
    assert_one_line_offline_error(done, f"the Hub at {endpoint} cannot be reached (ReadTimeout")


@pytest.mark.parametrize(
    ("status", "headers", "reason"),
    [
        (200, {"Content-Type": "text/html"}, "answered, but not as the Hugging Face Hub (a captive portal"),
        (302, {"Location": "http://portal.invalid/login"}, "answered, but not as the Hugging Face Hub"),
        (500, {"Content-Type": "text/html"}, "answered HTTP 500"),
        (404, {"Content-Type": "text/html"}, "answered HTTP 404"),
    ],
    ids=["portal-page", "portal-redirect", "server-error", "not-a-hub-404"],
)
def test_a_hub_answering_html_is_one_line_after_one_request(tmp_path, png, fake_hub, status, headers, reason) -> None:
    server = fake_hub(lambda method, path: (status, headers, HTML))
    done = run_cli(["predict", str(png), "--model", "hf://user/repo"], server.url, tmp_path)
    assert_one_line_offline_error(done, reason)
    # One HEAD, for config.json: huggingface_hub alone would retry a 500 five times, per file and per backend.
    # (It may also fetch its /api/agent-harnesses list for the user-agent string, once: not a model request.)
    model_requests = [(method, path) for method, path in server.requests if path.startswith("/user/repo/")]
    assert model_requests == [("HEAD", "/user/repo/resolve/main/config.json")]


def test_files_already_cached_are_used_when_the_hub_is_unreachable(tmp_path, releases) -> None:
    from PIL import Image

    write_snapshot(tmp_path / "hf-cache", REPO, OLD, releases[OLD])
    Image.new("L", (28, 28), 90).save(tmp_path / "img.png")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = run_cli(["predict", str(tmp_path / "img.png"), "--model", f"hf://{REPO}", "--json"], endpoint, tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout)


def test_the_online_path_still_downloads(tmp_path, releases, fake_hub, hub_cache, monkeypatch) -> None:
    """A Hub that answers: the reachability check costs one HEAD, then hf_hub_download fetches as usual."""
    from huggingface_hub import constants

    files = {name: data for name, data in releases[OLD].items() if name in ("config.json", "model.onnx")}

    def respond(method, path):
        name = path.rsplit("/", 1)[-1]
        if name not in files:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": OLD}, b"{}"
        data = files[name]
        return 200, {"X-Repo-Commit": OLD, "ETag": f'"{etag(name, data)}"'}, data

    server = fake_hub(respond)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"  # derived from ENDPOINT at import
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    model = cifarzoo.load(f"hf://{REPO}", backend="onnx", device="cpu")
    assert isinstance(model, OnnxModel) and model.source.kind == "hub"
    snapshot = hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / OLD
    assert model.path == snapshot / "model.onnx" and (snapshot / "model.onnx").read_bytes() == files["model.onnx"]
    url = f"/{REPO}/resolve/main/"
    model_requests = [(method, path) for method, path in server.requests if path.startswith(f"/{REPO}/")]
    assert model_requests == [
        ("HEAD", url + "config.json"),  # the reachability check: the only request added to what hf_hub_download does
        ("HEAD", url + "config.json"), ("GET", url + "config.json"),
        ("HEAD", url + "model.onnx"), ("GET", url + "model.onnx"),
    ]


def test_publish_to_a_hub_answering_html_is_one_line(tmp_path, fake_hub) -> None:
    server = fake_hub(lambda method, path: (200, {"Content-Type": "text/html"}, HTML))
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "config.json").write_text("{}")
    code = (
        "import cifarzoo\n"
        "from cifarzoo.io.hub import upload_folder\n"
        f"try:\n    upload_folder({str(tmp_path / 'repo')!r}, 'user/repo')\n"
        "except cifarzoo.CifarzooError as exc:\n    print('ERROR', exc)\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    environment.update(HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf-home"), HF_TOKEN="hf_" + "x" * 30)
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"ERROR user/repo: upload failed: the Hub at {server.url} answered with something that is not JSON (a "
        "captive portal or proxy page?); check the network or HF_ENDPOINT"
    )

"""Hostile and careless inputs on the data side (issue #15): pixel bombs, FIFOs and devices named like images,
Ctrl-C during decoding, control characters in names, NaN in JSON, outputs over inputs, duplicate CSV rows.

Runs on tiny generated files; the big images are all-zero PNGs written row by row (a few hundred KB on disk).
Commands that could hang if a guard regressed (a FIFO opened for reading) run as subprocesses with a timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from typer.testing import CliRunner

from cifarzoo.cli import app
from cifarzoo.cli._common import escape_text, format_table, write_json
from cifarzoo.data import preprocess as preprocess_module
from cifarzoo.data.files import collect_images, iter_image_files, scan_class_folders
from cifarzoo.data.preprocess import MAX_DECODE_BYTES, MAX_IMAGE_PIXELS, decode_workers, pixel_limit, read_image
from cifarzoo.data.specs import CIFAR10
from cifarzoo.data.testsets import read_array, read_labels_csv
from cifarzoo.engines.evaluate import predictions_report
from cifarzoo.errors import CifarzooError, ImageReadError
from cifarzoo.runtime import predictor as predictor_module
from cifarzoo.runtime.predictor import decode_stream

runner = CliRunner()
CLI = [sys.executable, "-m", "cifarzoo"]
C10 = CIFAR10.classes
MIB = 1 << 20
# What a terminal must never receive raw from a name (newlines are checked by counting lines instead).
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def run_cli(*args: object, timeout: float = 180) -> subprocess.CompletedProcess:
    """``cifarzoo ARGS`` in a fresh interpreter; a hang (a FIFO opened for reading) fails the test by timeout."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def zeros_png(path: Path, width: int, height: int, color_type: int = 6, bit_depth: int = 8) -> Path:
    """An all-zero PNG written row by row: any size for a few KB of memory (color type 6: RGBA, 0: grayscale)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = bytes(1 + width * channels * bit_depth // 8)  # filter byte 0, then zero samples
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def small_png(path: Path, rng: np.random.Generator) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------------
# The pixel cap


def test_pixel_cap_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch) -> None:
    big = zeros_png(tmp_path / "big.png", 9400, 9400)
    assert big.stat().st_size < 1 * MIB  # a small file that would take 1.85 GB decoded

    def no_decoding(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageReadError) as err:
        read_image(big)
    assert err.value.reason == ("too large: 9400x9400 pixels is over the 8 Mpx limit for RGBA images "
                                "(a memory cap; shrink it first)")


def test_pixel_cap_counts_bytes_per_pixel(tmp_path) -> None:
    assert MAX_IMAGE_PIXELS == 16 * MIB and pixel_limit("RGB") == pixel_limit("L") == 16 * MIB
    assert pixel_limit("RGBA") == 8 * MIB and pixel_limit("I;16") < 11 * MIB and pixel_limit("F") < 6 * MIB
    assert pixel_limit("some future mode") == min(pixel_limit(m) for m in ("RGB", "RGBA", "I;16", "F", "LA"))
    # The same pixel count (11.6 Mpx): 8-bit grayscale decodes, 16-bit grayscale is over its smaller limit.
    gray8 = zeros_png(tmp_path / "gray8.png", 3400, 3400, color_type=0)
    gray16 = zeros_png(tmp_path / "gray16.png", 3400, 3400, color_type=0, bit_depth=16)
    assert read_image(gray8).size == (3400, 3400)
    with pytest.raises(ImageReadError, match=r"3400x3400 pixels is over the 10\.7 Mpx limit for I;16 images"):
        read_image(gray16)


def test_pillow_globals_are_left_alone() -> None:
    code = (
        "from PIL import Image\n"
        "before = Image.MAX_IMAGE_PIXELS\n"
        "import cifarzoo, cifarzoo.cli, cifarzoo.data.preprocess, cifarzoo.runtime.predictor\n"
        "assert Image.MAX_IMAGE_PIXELS == before, (before, Image.MAX_IMAGE_PIXELS)\n"
        "print(before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > MAX_IMAGE_PIXELS  # Pillow's own default, far above this tool's cap


def _peak_rss_of_eval(folder: Path, model: Path) -> tuple[int, dict]:
    """Peak RSS (bytes) of one `cifarzoo eval --json` process, read by a wrapper whose only child it is."""
    code = (
        "import json, resource, subprocess, sys\n"
        f"out = subprocess.run({[*CLI, 'eval', '--custom-dir', str(folder), '--model', str(model), '--json']!r},"
        " capture_output=True, text=True)\n"
        "assert out.returncode == 0, out.stderr\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"  # KiB on Linux
        "print(json.dumps({'peak': peak, 'report': json.loads(out.stdout)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    return result["peak"], result["report"]


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_eval_skips_a_9400px_rgba_png_and_stays_under_1_gb(c10_checkpoint, tmp_path, rng) -> None:
    clean, bombed = tmp_path / "clean", tmp_path / "bombed"
    for folder in (clean, bombed):
        for i in range(2):
            small_png(folder / "cat" / f"{i}.png", rng)
    zeros_png(bombed / "cat" / "big.png", 9400, 9400)

    clean_peak, clean_report = _peak_rss_of_eval(clean, c10_checkpoint)
    peak, report = _peak_rss_of_eval(bombed, c10_checkpoint)
    assert clean_report["n"] == 2 and clean_report["skipped"] == []
    assert report["n"] == 2
    assert report["skipped"] == [{
        "path": str(bombed / "cat" / "big.png"),
        "reason": "too large: 9400x9400 pixels is over the 8 Mpx limit for RGBA images (a memory cap; shrink it first)",
    }]
    # The clean eval (mostly the torch import) sets the floor; the 9400x9400 RGBA image alone would add over 337 MiB
    # (its raw pixels), so staying within 100 MiB of the clean run shows it was never decoded.
    assert peak < 1_000_000_000, f"peak RSS {peak / MIB:.0f} MiB (clean eval: {clean_peak / MIB:.0f} MiB)"
    assert peak < clean_peak + 100 * MIB, f"peak RSS {peak / MIB:.0f} MiB vs {clean_peak / MIB:.0f} MiB clean"


# ----------------------------------------------------------------------------------------------------------
# The decode pool: sized by memory, and stopped at once


def test_decode_workers_are_sized_by_memory(monkeypatch) -> None:
    monkeypatch.setattr(preprocess_module, "_available_memory", lambda: None)
    monkeypatch.setattr(preprocess_module, "DECODE_MEMORY_BUDGET", 3 * MAX_DECODE_BYTES)
    assert decode_workers(8) == 3 and decode_workers(2) == 2 and decode_workers(None) <= 3
    # Little memory available now: half of it bounds the pool, and there is always one worker.
    monkeypatch.setattr(preprocess_module, "_available_memory", lambda: 4 * MAX_DECODE_BYTES)
    assert decode_workers(8) == 2
    monkeypatch.setattr(preprocess_module, "_available_memory", lambda: MAX_DECODE_BYTES // 2)
    assert decode_workers(8) == 1
    monkeypatch.setattr(preprocess_module, "DECODE_MEMORY_BUDGET", 1 << 30)
    monkeypatch.setattr(preprocess_module, "_available_memory", lambda: None)
    assert decode_workers(64) == (1 << 30) // MAX_DECODE_BYTES == 8  # the default budget: 1 GiB in flight


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("cifarzoo-decode")]


def test_decode_stream_runs_no_more_threads_than_memory_allows(monkeypatch, tmp_path, rng) -> None:
    monkeypatch.setattr(preprocess_module, "_available_memory", lambda: None)
    monkeypatch.setattr(preprocess_module, "DECODE_MEMORY_BUDGET", 2 * MAX_DECODE_BYTES)
    paths = [str(small_png(tmp_path / f"{i}.png", rng)) for i in range(40)]
    counts = []
    for _, decoded in decode_stream(paths, CIFAR10.preprocess_config(), batch_size=20, workers=8):
        counts.append(len(_decode_threads()))
        assert all(isinstance(d, np.ndarray) for d in decoded)
    assert counts and max(counts) == 2  # asked for 8


def test_closing_the_stream_cancels_queued_decodes_and_does_not_wait(monkeypatch) -> None:
    gate = threading.Event()
    calls: list[int] = []

    def fake_decode(image, cfg):
        calls.append(image)
        if image >= 10:  # the second chunk hangs until released, like a slow disk
            gate.wait(timeout=60)
        return np.zeros((32, 32, 3), np.uint8)

    monkeypatch.setattr(predictor_module, "try_load_uint8", fake_decode)
    stream = decode_stream(range(100), CIFAR10.preprocess_config(), batch_size=10, workers=1)
    chunk, _ = next(stream)  # the first chunk; the second is queued, and its first item is running
    assert chunk == list(range(10))
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join(timeout=30)
    try:
        assert not closer.is_alive(), "closing the stream waited for a running decode"
    finally:
        gate.set()
        for thread in _decode_threads():
            thread.join(timeout=30)
    assert calls == list(range(11))  # items 11-19 were cancelled, never started; 20+ never taken from the source


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the decoder at work")
def test_one_ctrl_c_stops_an_eval_with_one_line_and_exit_130(c10_checkpoint, tmp_path) -> None:
    # 400 grayscale 2000x2000 PNGs (hard links of one 4 KB file): each takes tens of ms to decode, so the pool is
    # busy for seconds and the interrupt lands while it runs.
    first = zeros_png(tmp_path / "slow" / "cat" / "0.png", 2000, 2000, color_type=0)
    for i in range(1, 400):
        os.link(first, first.with_name(f"{i}.png"))
    folder = tmp_path / "slow"
    process = subprocess.Popen(
        [*CLI, "eval", "--custom-dir", str(folder), "--model", str(c10_checkpoint), "--batch-size", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a suite started in the background (`nohup make test &`) inherits SIGINT ignored,
        # and Python then installs no KeyboardInterrupt handler at all.
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 180
        while not _has_open_file_under(process.pid, folder):  # the decode pool is reading images
            assert process.poll() is None, "eval ended before it was interrupted"
            assert time.monotonic() < deadline, "eval never started decoding"
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)  # a hang fails here
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == ["error: interrupted"] and stdout == ""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _has_open_file_under(pid: int, folder: Path) -> bool:
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(fd_dir / name).startswith(f"{folder}/"):
                return True
        except OSError:  # closed meanwhile
            continue
    return False


# ----------------------------------------------------------------------------------------------------------
# FIFOs and devices named like images


@needs_fifo
def test_scanners_skip_fifos_and_devices_without_opening_them(tmp_path, rng) -> None:
    root = tmp_path / "set"
    small_png(root / "cat" / "0.png", rng)
    os.mkfifo(root / "cat" / "x.png")
    os.symlink(os.devnull, root / "cat" / "null.png")  # a character device behind a symlink
    os.mkfifo(root / "loose.png")
    scan = scan_class_folders(root)
    assert scan.files == {"cat": [str(root / "cat" / "0.png")]} and scan.loose == []
    assert sorted(scan.skipped) == sorted([
        (str(root / "cat" / "null.png"), "not a regular file (a character device)"),
        (str(root / "cat" / "x.png"), "not a regular file (a FIFO)"),
        (str(root / "loose.png"), "not a regular file (a FIFO)"),
    ])
    skipped: list[tuple[str, str]] = []
    assert iter_image_files(str(root / "cat"), skipped=skipped) == [str(root / "cat" / "0.png")]
    assert [reason for _, reason in skipped] == ["not a regular file (a character device)",
                                                 "not a regular file (a FIFO)"]
    collected = collect_images([str(root / "cat"), str(root / "cat" / "*.png")])
    assert collected.paths == [str(root / "cat" / "0.png")] and collected.missing == []
    assert len(collected.skipped) == 4  # two from the folder, two from the glob


@needs_fifo
def test_read_image_refuses_a_fifo_unopened(tmp_path) -> None:
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    code = (
        "import sys\n"
        "from cifarzoo.data.preprocess import read_image\n"
        "from cifarzoo.errors import ImageReadError\n"
        "try:\n    read_image(sys.argv[1])\nexcept ImageReadError as exc:\n    print(exc.reason)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "not a regular file (a FIFO)"


@needs_fifo
def test_a_fifo_in_an_eval_folder_is_skipped_and_the_eval_finishes(c10_checkpoint, tmp_path, rng) -> None:
    root = tmp_path / "set"
    for i in range(2):
        small_png(root / "cat" / f"{i}.png", rng)
    small_png(root / "dog" / "0.png", rng)
    os.mkfifo(root / "cat" / "x.png")
    out = run_cli("eval", "--custom-dir", root, "--model", c10_checkpoint, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == 3
    assert report["skipped"] == [{"path": str(root / "cat" / "x.png"), "reason": "not a regular file (a FIFO)"}]
    text = run_cli("eval", "--custom-dir", root, "--model", c10_checkpoint)
    assert text.returncode == 0 and "(1 file skipped)" in text.stdout
    assert f"warning: skipped {root / 'cat' / 'x.png'}: not a regular file (a FIFO)" in text.stderr.splitlines()


@needs_fifo
def test_a_fifo_named_directly_is_one_line_for_predict_eval_and_explain(c10_checkpoint, tmp_path, rng) -> None:
    good = small_png(tmp_path / "good.png", rng)
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    line = f"error: {fifo}: not a regular file (a FIFO)"

    predicted = run_cli("predict", good, fifo, "--model", c10_checkpoint, "--json")
    assert predicted.returncode == 1
    assert [p["path"] for p in json.loads(predicted.stdout)] == [str(good)]
    assert predicted.stderr.splitlines() == [line, "error: 1 input(s) failed; 1 predicted"]
    in_folder = run_cli("predict", tmp_path, "--model", c10_checkpoint)  # found by the folder scan, not opened
    assert in_folder.returncode == 1 and len(in_folder.stdout.splitlines()) == 2 + 1
    assert in_folder.stderr.splitlines() == [line, "error: 1 input(s) failed; 1 predicted"]

    explained = run_cli("explain", fifo, "--model", c10_checkpoint, "--out", tmp_path / "cam.png")
    assert explained.returncode == 1 and explained.stderr.splitlines() == [line]
    assert not (tmp_path / "cam.png").exists()

    (tmp_path / "gt.csv").write_text("path,label\ngood.png,cat\nx.png,dog\n")
    evaluated = run_cli("eval", "--labels", tmp_path / "gt.csv", "--model", c10_checkpoint, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["n"] == 1 and report["skipped"] == [{"path": str(fifo), "reason": "not a regular file (a FIFO)"}]


def test_iter_image_files_follows_the_class_folder_rules(tmp_path, rng) -> None:
    root = tmp_path / "photos"
    for name in ("img10.png", "img2.png", "sub/a.png", ".hidden.png", "._img2.png", ".cache/x.png",
                 "__MACOSX/img2.png", "@eaDir/t.png", "notes.txt"):
        small_png(root / name, rng) if name.endswith(".png") else (root / name).write_text("x")
    assert iter_image_files(str(root)) == [str(root / "img2.png"), str(root / "img10.png"), str(root / "sub" / "a.png")]
    # predict over a folder sees the same files, in the same order
    assert collect_images([str(root)]).paths == iter_image_files(str(root))


# ----------------------------------------------------------------------------------------------------------
# Terminal output


def test_escape_text_makes_every_dangerous_character_visible() -> None:
    cases = {
        "\x1b]0;pwned\x07": "\\x1b]0;pwned\\x07",  # OSC: set the window title
        "\x1b[2J": "\\x1b[2J",  # clear the screen
        "a\nb\rc\td": "a\\nb\\rc\\td",
        "\x00\x7f\x85\x9b": "\\x00\\x7f\\x85\\x9b",  # NUL, DEL, C1 NEL and CSI
        "\u202eevil\u202c \u2066x\u2069 \u200f": "\\u202eevil\\u202c \\u2066x\\u2069 \\u200f",
        "\u2028": "\\u2028",
        "caf\u00e9 \u732b \\x": "caf\u00e9 \u732b \\x",  # printable text, accents and CJK pass unchanged
        "bad\udcff": "bad\\udcff",  # a lone surrogate cannot even be encoded
    }
    for raw, shown in cases.items():
        assert escape_text(raw) == shown


def test_format_table_keeps_one_line_per_row() -> None:
    table = format_table(["name", "n"], [("cat\nforged  1", 1), ("\x1b[31mred", 2)], right=(1,))
    lines = table.splitlines()
    assert len(lines) == 4 and not RAW_CONTROL.search(table)
    assert lines[2].startswith("cat\\nforged  1") and lines[3].startswith("\\x1b[31mred")


HOSTILE_CLASSES = ["\x1b]0;pwned\x07plane", "car\nforged  row", "\u202ebird", "cat\tx", "deer\x7f", "dog\x9b2J",
                   "frog\u2066", "horse\r", "ship", "truck\x1b[2J"]


@pytest.fixture
def hostile_checkpoint(c10_checkpoint, tmp_path) -> Path:
    """The c10 checkpoint with class names from an attacker's config.json."""
    folder = tmp_path / "hostile"
    shutil.copytree(c10_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["classes"] = HOSTILE_CLASSES
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_predict_escapes_class_and_file_names_and_json_stays_exact(hostile_checkpoint, tmp_path, rng) -> None:
    names = ["plain.png", "title\x1b]0;x\x07.png", "new\nline.png", "\u202egnp.exe.png"]
    for name in names:
        small_png(tmp_path / "in" / name, rng)
    result = run("predict", tmp_path / "in", "--model", hostile_checkpoint, "-k", "3")
    assert result.exit_code == 0, result.output
    assert not RAW_CONTROL.search(result.stdout)
    lines = result.stdout.splitlines()
    assert len(lines) == 2 + len(names)  # header, rule, one row per image: no name split a row
    assert any("title\\x1b]0;x\\x07.png" in line for line in lines) and any("new\\nline.png" in line for line in lines)
    shown_classes = {escape_text(c) for c in HOSTILE_CLASSES}
    assert all(any(c in line for c in shown_classes) for line in lines[2:])

    data = json.loads(run("predict", tmp_path / "in", "--model", hostile_checkpoint, "--json", "-k", "10").stdout)
    assert sorted(Path(p["path"]).name for p in data) == sorted(names)  # exact names, control characters and all
    assert {t["label"] for t in data[0]["topk"]} == set(HOSTILE_CLASSES)


def test_eval_tables_and_warnings_escape_names(hostile_checkpoint, tmp_path, rng) -> None:
    np.savez(tmp_path / "a.npz", images=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), labels=np.arange(10))
    result = run("eval", "--array", tmp_path / "a.npz", "--model", hostile_checkpoint)
    assert result.exit_code == 0, result.output
    assert not RAW_CONTROL.search(result.stdout)
    lines = result.stdout.splitlines()
    per_class = lines[3:13]
    assert all(line.startswith(escape_text(c) + " ") for line, c in zip(per_class, HOSTILE_CLASSES))
    assert len(lines) == 1 + 12 + 1 + 12  # summary, class table, blank, confusion table: one row per class

    root = tmp_path / "set"
    small_png(root / "ship" / "0.png", rng)
    (root / "ship" / "bad\x1b[2J.png").write_bytes(b"")
    result = run("eval", "--custom-dir", root, "--model", hostile_checkpoint)
    assert result.exit_code == 0, result.output
    assert not RAW_CONTROL.search(result.stderr)
    assert f"warning: skipped {root}/ship/bad\\x1b[2J.png: empty file" in result.stderr.splitlines()


def test_errors_are_escaped_to_one_line(tmp_path) -> None:
    result = run("eval", "--labels", tmp_path / "no\x1b[2Jsuch\n.csv")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "no\\x1b[2Jsuch\\n.csv" in line and not RAW_CONTROL.search(line)


def test_write_json_never_emits_nan(capsys) -> None:
    write_json({"nan": float("nan"), "inf": [float("inf"), -float("inf")], "np": np.float32("nan"),
                "ok": 0.5, "n": np.int64(3), "flag": True, "name": "a\x1bb\u202e"})
    text = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"bare {constant} in the output")

    data = json.loads(text, parse_constant=refuse)
    assert data == {"nan": None, "inf": [None, None], "np": None, "ok": 0.5, "n": 3, "flag": True,
                    "name": "a\x1bb\u202e"}
    assert "\x1b" not in text and "\\u001b" in text  # JSON's own escape; the name decodes exactly


def test_write_json_survives_a_lone_surrogate(capsys) -> None:
    write_json({"label": "x\ud800y"})
    text = capsys.readouterr().out
    assert "\\ud800" in text and json.loads(text) == {"label": "x\ud800y"}


def test_eval_report_dict_has_no_nan_anywhere(tmp_path) -> None:
    from cifarzoo.engines.report import write_json as write_report_json

    logits = np.array([[np.nan] * 10, [0.0] * 9 + [np.inf]])  # what a model with broken weights returns
    with np.errstate(invalid="ignore"):
        report = predictions_report(logits, C10)
    assert np.isnan(report.confidence).all() and np.isnan(report.top1)
    data = report.to_dict(include_predictions=True)
    json.dumps(data, allow_nan=False)  # raises on any NaN left
    assert data["top1"] is None and [p["prob"] for p in data["predictions"]] == [None, None]
    write_report_json(report, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report.to_dict()))


# ----------------------------------------------------------------------------------------------------------
# Outputs never replace inputs


def test_eval_out_refuses_to_overwrite_an_input(tmp_path, rng) -> None:
    small_png(tmp_path / "img" / "0.png", rng)
    gt = tmp_path / "gt.csv"
    gt.write_text("path,label\nimg/0.png,cat\n")
    (tmp_path / "link.csv").symlink_to(gt)
    np.save(tmp_path / "x_data.npy", rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    np.save(tmp_path / "x_labels.npy", np.array([0, 1]))
    digests = {p: sha256(p) for p in (gt, tmp_path / "x_data.npy", tmp_path / "x_labels.npy")}
    cases = [
        (["--labels", gt, "--out", gt], f"{gt}: --out would overwrite --labels file {gt}"),
        (["--labels", gt, "--out", tmp_path / "link.csv"], "--out would overwrite --labels file"),
        (["--labels", gt, "--out", tmp_path / "img" / ".." / "gt.csv"], "--out would overwrite --labels file"),
        (["--array", tmp_path / "x_data.npy", "--out", tmp_path / "x_data.npy"], "--out would overwrite --array"),
        (["--array", tmp_path / "x_data.npy", "--out", tmp_path / "x_labels.npy"],
         "--out would overwrite the --array labels file"),
        (["--custom-dir", tmp_path / "img", "--out", tmp_path / "img" / "0.png"], "inside the --custom-dir folder"),
        (["--custom-dir", tmp_path / "img", "--out", tmp_path / "img" / "preds.csv"], "inside the --custom-dir"),
        (["--custom-dir", tmp_path / "img", "--report", tmp_path / "img"], "--report is inside the --custom-dir"),
        (["--custom-dir", tmp_path / "img", "--report", tmp_path / "img" / "r"], "--report is inside the --custom-dir"),
    ]
    for args, message in cases:
        result = run("eval", "--model", "does-not-matter", *args)  # refused before the model is even looked up
        assert result.exit_code == 1, args
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ") and message in line and "write it elsewhere" in line, (args, line)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "predictions.csv").write_text("path,label\n../img/0.png,cat\n")
    result = run("eval", "--labels", tmp_path / "rep" / "predictions.csv", "--report", tmp_path / "rep")
    assert result.exit_code == 1 and "--report would overwrite --labels file" in result.stderr
    assert {p: sha256(p) for p in digests} == digests


def test_eval_out_beside_the_inputs_still_works(c10_checkpoint, tmp_path, rng) -> None:
    small_png(tmp_path / "img" / "0.png", rng)
    gt = tmp_path / "gt.csv"
    gt.write_text("path,label\nimg/0.png,cat\n")
    before = sha256(gt)
    result = run("eval", "--model", c10_checkpoint, "--labels", gt, "--out", tmp_path / "preds.csv")
    assert result.exit_code == 0, result.output
    assert sha256(gt) == before and (tmp_path / "preds.csv").read_text().splitlines()[0] == "id,label"


# ----------------------------------------------------------------------------------------------------------
# Labels CSV and arrays


def test_duplicate_csv_rows_count_once_and_conflicting_ones_are_refused(tmp_path, rng) -> None:
    for i in range(2):
        small_png(tmp_path / "img" / f"{i}.png", rng)
    csv_path = tmp_path / "gt.csv"
    csv_path.write_text("path,label\nimg/0.png,car\nimg/1.png,cat\n./img/0.png,automobile\nimg/1.png,cat\n")
    testset = read_labels_csv(csv_path, C10)
    assert testset.ids == ["img/0.png", "img/1.png"] and testset.labels.tolist() == [1, 3]
    assert testset.ignored == [
        {"path": "./img/0.png", "reason": "listed again (line 4; first on line 2)"},
        {"path": "img/1.png", "reason": "listed again (line 5; first on line 3)"},
    ]
    csv_path.write_text("path,label\nimg/0.png,car\nimg/1.png,cat\nimg/0.png,dog\n")
    with pytest.raises(CifarzooError) as err:
        read_labels_csv(csv_path, C10)
    assert str(err.value) == (f"{csv_path}:4: 'img/0.png' is labeled 'dog' here but 'car' on line 2; "
                              "give each file one label")
    csv_path.write_text("img/0.png\nimg/1.png\nimg/0.png\n")  # unlabeled: repeats dropped too
    assert read_labels_csv(csv_path, C10).ids == ["img/0.png", "img/1.png"]


def test_labels_csv_oddities_are_one_line_errors(tmp_path) -> None:
    csv_path = tmp_path / "gt.csv"
    cases = {
        "path,label\n": "has a header but no rows",
        "a\x00b.png,cat\n": "NUL character",
        "x.png," + "9" * 5000 + "\n": "match none of the model's classes",
    }
    for text, reason in cases.items():
        csv_path.write_text(text)
        with pytest.raises(CifarzooError, match=reason) as err:
            read_labels_csv(csv_path, C10)
        assert str(csv_path) in str(err.value)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ((0, 32, 32, 3), "holds no images (shape (0, 32, 32, 3))"),
        ((3, 0, 32, 3), "images of 32x0 pixels are empty (shape (3, 0, 32, 3))"),
        ((1, 4097, 4097), "images of 4097x4097 pixels are over the 16 Mpx limit (a memory cap; shrink them first)"),
    ],
)
def test_empty_or_huge_arrays_are_one_line(tmp_path, shape, reason) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(shape, np.uint8))
    result = run("eval", "--model", "resnet26-fm", "--array", path)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {path}: {reason}"]


def test_an_array_whose_labels_all_match_no_class_is_one_line(tmp_path, rng) -> None:
    np.savez(tmp_path / "a.npz", images=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
             labels=np.array([10, 11], np.uint8))
    with pytest.raises(CifarzooError) as err:
        read_array(tmp_path / "a.npz", C10, ignore_unknown=True)
    assert str(err.value) == f"{tmp_path / 'a.npz'}: no image has a label among the model's classes ({', '.join(C10)})"
    np.savez(tmp_path / "b.npz", images=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), labels=[1, 10])
    assert read_array(tmp_path / "b.npz", C10, ignore_unknown=True).ignored == [
        {"path": f"{tmp_path / 'b.npz'}[1]", "reason": "label 10 matches no class"}
    ]

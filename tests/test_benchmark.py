"""``cifarzoo benchmark``: the schema of what it prints (never its timings), and its one-line errors."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from typer.testing import CliRunner

from cifarzoo.cli import app
from cifarzoo.engines.benchmark import SUPPORTED, configurations

runner = CliRunner()
ROW_KEYS = {"backend", "precision", "batch_size", "ms_per_batch", "img_per_s", "gflops", "peak_fraction"}


@pytest.fixture(scope="module")
def json_result() -> dict:
    result = runner.invoke(app, ["benchmark", "resnet26-fm", "--json", "--batch-sizes", "1,3", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_has_one_row_per_backend_precision_and_batch_size(json_result: dict) -> None:
    rows = json_result["rows"]
    expected = {(b, p, n) for b, p in configurations(list(SUPPORTED), ["fp32", "bf16"]) for n in (1, 3)}
    assert {(r["backend"], r["precision"], r["batch_size"]) for r in rows} == expected
    assert len(rows) == len(expected) == 8  # torch fp32+bf16, onnx fp32, torchscript fp32; at two batch sizes
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["ms_per_batch"] > 0 and math.isfinite(row["ms_per_batch"])
        # Consistent with each other: img/s is the batch over the batch's time, GFLOP/s is img/s x work per image.
        assert row["img_per_s"] == pytest.approx(row["batch_size"] / (row["ms_per_batch"] / 1000), rel=1e-9)
        assert row["gflops"] == pytest.approx(row["img_per_s"] * json_result["flops_per_image"] / 1e9, rel=1e-9)
        peak = json_result["peak_gflops"]["fp32" if row["precision"] == "int8" else row["precision"]]
        assert row["peak_fraction"] == pytest.approx(row["gflops"] / peak, rel=1e-9)


def test_json_header_names_the_machine_and_its_measured_peaks(json_result: dict) -> None:
    assert json_result["model"] == "resnet26-fm"
    assert json_result["device"] == "cpu"
    assert "cores" in json_result["machine"] and "torch" in json_result["machine"]
    assert set(json_result["peak_gflops"]) == {"fp32", "bf16", "int8"}
    assert all(v > 0 for v in json_result["peak_gflops"].values())
    # ResNet-26 on 28x28x1: hundreds of MFLOP per image, counted from the real network.
    assert 1e8 < json_result["flops_per_image"] < 1e9
    assert json_result["repeats"] == 1


def test_csv_and_table_list_the_requested_configurations() -> None:
    args = ["benchmark", "resnet26-fm", "--backends", "onnx", "--precisions", "fp32,int8", "--batch-sizes", "2",
            "--repeats", "1"]
    as_csv = runner.invoke(app, [*args, "--csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    configs = [(r["backend"], r["precision"], r["batch_size"]) for r in rows]
    assert configs == [("onnx", "fp32", "2"), ("onnx", "int8", "2")]
    assert set(rows[0]) == ROW_KEYS
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    body = [line.split() for line in table.stdout.splitlines() if line.startswith("onnx")]
    assert [line[:3] for line in body] == [["onnx", "fp32", "2"], ["onnx", "int8", "2"]]
    assert "measured matmul peak" in table.stdout and "machine:" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-sizes", "0"], "--batch-sizes '0': expected positive integers"),
        (["--batch-sizes", "a,b"], "--batch-sizes 'a,b': expected positive integers"),
        (["--backends", "tensorflow"], "--backends 'tensorflow': choose from torch, onnx, torchscript"),
        (["--backends", "torchscript", "--precisions", "int8"], "no backend runs the precisions int8"),
        (["--repeats", "0"], "--repeats 0: must be at least 1"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["benchmark", "resnet26-fm", *args])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]


def test_benchmark_never_writes_into_the_model_folder(tmp_path) -> None:
    import cifarzoo

    folder = tmp_path / "model"
    cifarzoo.create_model("resnet26-fm").save_pretrained(folder)
    before = sorted(p.name for p in folder.iterdir())
    result = runner.invoke(app, ["benchmark", str(folder), "--batch-sizes", "1", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == before  # the ONNX/TorchScript files went to a temp folder

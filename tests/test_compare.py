"""``cifarzoo compare``: the figure is written and the table's numbers are the runs' own."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import run_cli_without_torch
from PIL import Image
from typer.testing import CliRunner

from cifarzoo.cli import app
from cifarzoo.engines.compare import default_target, load_runs, markdown_table, summarize
from cifarzoo.errors import CifarzooError
from cifarzoo.io.run_metrics import read_metrics

STAGES = ("stem", "stages.0", "stages.1", "stages.2", "stages.3", "fc")


def write_run(directory, rng: np.random.Generator, epochs: int, grad_norms: bool = False, test_top1=None):
    """A run directory as the trainer leaves it: metrics.jsonl rows (random but plausible) and config.json."""
    directory.mkdir(parents=True)
    val = rng.uniform(40, 95, epochs)
    if epochs >= 4:
        val[1] = val[3] = val.max() + 1.0  # a tie for the best, not at the last epoch: the first one counts
    rows = []
    for epoch in range(1, epochs + 1):
        row = {
            "epoch": epoch,
            "train_loss": float(rng.uniform(0.2, 2.0)),
            "train_top1": float(rng.uniform(30, 99)),
            "lr": 0.1,
            "seconds": float(rng.uniform(10, 100)),
            "img_per_s": 100.0,
            "val_loss": float(rng.uniform(0.2, 2.0)),
            "val_top1": float(val[epoch - 1]),
        }
        if grad_norms:
            row["grad_norms"] = {s: float(rng.uniform(1e-3, 2)) for s in STAGES}
        rows.append(row)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if test_top1 is not None:
        (directory / "config.json").write_text(json.dumps({"arch": "resnet26", "metrics": {"test_top1": test_top1}}))
    return rows


@pytest.fixture
def two_runs(tmp_path, rng):
    a = write_run(tmp_path / "plain50", rng, 6, grad_norms=True, test_top1=88.125)
    b = write_run(tmp_path / "resnet50", rng, 4, grad_norms=True)
    return tmp_path / "plain50", tmp_path / "resnet50", a, b


def _expected(rows, target):
    vals = [r["val_top1"] for r in rows]
    best = max(vals)
    return {
        "final_train_top1": rows[-1]["train_top1"],
        "final_val_top1": rows[-1]["val_top1"],
        "best_val_top1": best,
        "best_epoch": vals.index(best) + 1,
        "epochs_to_target": next((r["epoch"] for r in rows if r["val_top1"] >= target), None),
        "train_minutes": sum(r["seconds"] for r in rows) / 60,
        "epochs": len(rows),
    }


def test_summary_values_are_the_runs_metrics(two_runs) -> None:
    dir_a, dir_b, rows_a, rows_b = two_runs
    runs = load_runs([dir_a, dir_b])
    target = default_target(runs)
    assert target == math.floor(min(max(r["val_top1"] for r in rows_a), max(r["val_top1"] for r in rows_b)))
    summary = summarize(runs, target)
    for got, rows in zip(summary, (rows_a, rows_b)):
        expected = _expected(rows, target)
        assert {k: got[k] for k in expected} == pytest.approx(expected)
        assert got["epochs_to_target"] is not None  # the default target is one every run reached
    assert summary[0]["test_top1"] == 88.125 and summary[1]["test_top1"] is None
    assert summary[0]["best_epoch"] == 2 and summary[1]["best_epoch"] == 2  # the tie's first epoch
    assert summarize(runs, 101.0)[0]["epochs_to_target"] is None


def test_runs_without_a_validation_split_show_no_val_numbers(two_runs, tmp_path, rng) -> None:
    dir_a, *_ = two_runs
    write_run(tmp_path / "noval", rng, 3)  # the trainer logs val_top1 = 0 when data.val_size = 0
    (tmp_path / "noval" / "recipe.json").write_text(json.dumps({"data": {"val_size": 0}}))
    runs = load_runs([dir_a, tmp_path / "noval"])
    assert not runs[1].has_val and default_target(runs) == default_target(runs[:1])
    row = summarize(runs, 50.0)[1]
    assert row["best_val_top1"] is row["final_val_top1"] is row["epochs_to_target"] is None
    assert "| noval | 3 |" in markdown_table(summarize(runs, 50.0))


def test_cli_writes_the_figure_and_a_markdown_table_of_the_same_numbers(two_runs, tmp_path) -> None:
    dir_a, dir_b, rows_a, rows_b = two_runs
    out = tmp_path / "figs" / "compare.png"
    result = CliRunner().invoke(
        app, ["compare", str(dir_a), str(dir_b), "--out", str(out), "--table", "--target", "60"]
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[1] > 800  # two rows of panels: curves and gradient norms
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert "epochs to 60% val" in lines[0]
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    for cells, rows, name in zip(table, (rows_a, rows_b), ("plain50", "resnet50")):
        expected = _expected(rows, 60.0)
        best = f"{expected['best_val_top1']:.2f} ({expected['best_epoch']})"
        to_target = str(expected["epochs_to_target"]) if expected["epochs_to_target"] else "—"
        assert cells[:5] == [name, str(len(rows)), f"{expected['final_train_top1']:.2f}",
                             f"{expected['final_val_top1']:.2f}", best]
        assert cells[6:] == [to_target, f"{expected['train_minutes']:.2f}"]
    assert table[0][5] == f"{88.125:.2f}"  # test top-1 from config.json
    assert table[1][5] == "—"  # unfinished run: no test metric yet


def test_curves_only_figure_without_grad_norms(tmp_path, rng) -> None:
    write_run(tmp_path / "a", rng, 3)
    out = tmp_path / "c.png"
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "a"), "--out", str(out)])
    assert result.exit_code == 0 and "wrote" in result.output
    with Image.open(out) as img:
        assert img.size[1] < 600  # one row of panels


def test_json_output_equals_the_summary(two_runs) -> None:
    dir_a, dir_b, *_ = two_runs
    result = CliRunner().invoke(app, ["compare", str(dir_a), str(dir_b), "--json"])
    assert result.exit_code == 0
    runs = load_runs([dir_a, dir_b])
    assert json.loads(result.stdout) == summarize(runs, default_target(runs))


def test_compare_never_imports_torch(two_runs, tmp_path) -> None:
    dir_a, dir_b, *_ = two_runs
    stdout = run_cli_without_torch(["compare", str(dir_a), str(dir_b), "--out", str(tmp_path / "x.png"), "--table"])
    assert "| plain50 |" in stdout and (tmp_path / "x.png").is_file()


def test_same_named_runs_get_distinct_labels(tmp_path, rng) -> None:
    write_run(tmp_path / "seed0" / "run", rng, 2)
    write_run(tmp_path / "seed1" / "run", rng, 2)
    runs = load_runs([tmp_path / "seed0" / "run", tmp_path / "seed1" / "run"])
    assert [r.name for r in runs] == ["seed0/run", "seed1/run"]


def test_bad_run_directories_are_one_line_errors(tmp_path, rng) -> None:
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    write_run(tmp_path / "broken", rng, 3)
    lines = (tmp_path / "broken" / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "broken" / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", lines[2]]) + "\n")
    write_run(tmp_path / "ok", rng, 2)
    for bad, message in [
        (tmp_path / "missing", "missing: no such run directory"),
        (tmp_path / "empty", "empty: no metrics.jsonl with epochs"),
        (tmp_path / "broken", "metrics.jsonl:2: not a JSON object"),
    ]:
        result = runner.invoke(app, ["compare", str(tmp_path / "ok"), str(bad)])
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    (tmp_path / "file").write_text("")
    result = runner.invoke(app, ["compare", str(tmp_path / "ok"), "--out", str(tmp_path / "file" / "fig.png")])
    assert result.exit_code == 1 and "fig.png: cannot write" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["compare", str(tmp_path / "ok"), "--out", str(tmp_path / "fig.xyz")])
    assert result.exit_code == 1 and "fig.xyz: cannot write .xyz figures; use one of" in result.stderr
    with pytest.raises(CifarzooError, match="at least one run"):
        load_runs([])


def test_a_cut_off_last_line_is_skipped(tmp_path, rng) -> None:
    rows = write_run(tmp_path / "run", rng, 3)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "train_lo')  # a crash mid-write
    assert read_metrics(tmp_path / "run") == rows
    assert "| run | 3 |" in markdown_table(summarize(load_runs([tmp_path / "run"]), 50.0))

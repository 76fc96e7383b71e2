"""Hardening, model side: bad weights, configs, ONNX files and devices are refused on load with one line naming
the file; advice never points into the installed package; exports fail cleanly on a full or read-only disk; the
paths no other test ran (CLI export, fp16 ONNX, a failed parity check, eval --split val, predict --backend
torchscript, a hostile CIFAR tarball)."""

from __future__ import annotations

import errno
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import cifarzoo
from cifarzoo.cli import app
from cifarzoo.errors import CheckpointError, CifarzooError, ConfigError, UnknownModelError
from cifarzoo.io.layout import CONFIG_NAME, ONNX_FILES, ONNX_NAME, TORCHSCRIPT_NAME, WEIGHTS_NAME
from cifarzoo.registry import DEFAULT_MODEL, ZOO

runner = CliRunner()
PACKAGE = Path(cifarzoo.__file__).parent


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    """The CLI failed with exactly one ``error: ...`` line on stderr and no traceback; that line."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def fm_folder(tmp_path_factory) -> Path:
    """A random-weight resnet26-fm checkpoint (1x28x28 input, 10 classes), the source the tests copy."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fm") / "ckpt"
    cifarzoo.create_model("resnet26-fm", zero_init_last=False).save_pretrained(folder)
    return folder


@pytest.fixture
def ckpt(fm_folder, tmp_path) -> Path:
    """A fresh copy of ``fm_folder`` a test may damage."""
    return Path(shutil.copytree(fm_folder, tmp_path / "ckpt"))


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(path)
    return path


def edit_weights(folder: Path, edit) -> None:
    weights = load_file(str(folder / WEIGHTS_NAME))
    edit(weights)
    save_file(weights, str(folder / WEIGHTS_NAME))


# ----------------------------------------------------------------------------------------------------------
# Weights: non-finite values and the wrong kind of dtype are refused on load


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_file_and_tensor(ckpt, image, value) -> None:
    edit_weights(ckpt, lambda w: w["stages.1.0.branch.0.weight"].view(-1)[7:9].fill_(value))
    with pytest.raises(CheckpointError) as err:
        cifarzoo.load(ckpt, device="cpu")
    assert str(err.value) == (
        f"{ckpt / WEIGHTS_NAME}: non-finite weights (NaN or inf) in 1 tensor(s): stages.1.0.branch.0.weight; the "
        "file is corrupt or comes from a training run that diverged"
    )
    # The CLI (torch backend; auto would take the ONNX cache path) says the same in one line.
    line = one_error_line(run("predict", image, "--model", ckpt, "--backend", "torch", "--json"))
    assert "non-finite weights" in line and str(ckpt / WEIGHTS_NAME) in line


def test_non_finite_batchnorm_statistics_are_refused(ckpt) -> None:
    edit_weights(ckpt, lambda w: w["stem.1.running_var"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match=r"non-finite weights .* stem\.1\.running_var"):
        cifarzoo.load(ckpt, device="cpu")


@pytest.mark.parametrize(
    ("dtype", "key", "needs"),
    [
        (torch.int32, "fc.weight", "floating-point"),
        (torch.bool, "fc.bias", "floating-point"),
        (torch.float32, "stem.1.num_batches_tracked", "integer"),  # a counter stored as a float
    ],
)
def test_the_wrong_kind_of_dtype_is_refused_not_cast(ckpt, dtype, key, needs) -> None:
    edit_weights(ckpt, lambda w: w.__setitem__(key, w[key].to(dtype)))
    with pytest.raises(CheckpointError) as err:
        cifarzoo.load(ckpt, device="cpu")
    name = str(dtype).removeprefix("torch.")
    assert str(err.value) == (
        f"{ckpt / WEIGHTS_NAME}: weights do not match the model: dtype mismatch (1): {key} {name} (needs {needs})"
    )


def test_other_float_precisions_still_load(ckpt) -> None:
    """bf16 / fp16 files are a size choice, not a mistake: they load into the fp32 model."""
    edit_weights(ckpt, lambda w: w.__setitem__("fc.weight", w["fc.weight"].to(torch.bfloat16)))
    model = cifarzoo.load(ckpt, device="cpu")
    assert model.net.fc.weight.dtype == torch.float32


def test_a_wrong_shape_is_one_line_through_the_cli(ckpt, image) -> None:
    edit_weights(ckpt, lambda w: w.__setitem__("fc.weight", w["fc.weight"][:4].clone()))
    line = one_error_line(run("predict", image, "--model", ckpt, "--backend", "torch"))
    assert line == (
        f"error: {ckpt / WEIGHTS_NAME}: weights do not match the model: shape mismatch (1): "
        "fc.weight (4, 1152) != (10, 1152)"
    )


# ----------------------------------------------------------------------------------------------------------
# ONNX files that disagree with their config.json


def tiny_onnx(path: Path, in_chans: int, size: int, num_classes: int, config: dict | None = None) -> Path:
    """A real ONNX classifier (global average pool + a linear layer) with fixed input and output sizes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((in_chans, num_classes)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", in_chans, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    if config is not None:
        model.metadata_props.add(key="cifarzoo.config", value=json.dumps(config))
    onnx.save(model, str(path))
    return path


def test_tiny_onnx_helper_loads_when_it_matches(ckpt) -> None:
    """The control: an ONNX file that agrees with config.json loads and runs, so the refusals below are the
    mismatch and nothing else."""
    tiny_onnx(ckpt / ONNX_NAME, 1, 28, 10)
    model = cifarzoo.load(ckpt, backend="onnx", device="cpu")
    assert model.logits(np.zeros((3, 1, 28, 28), np.float32)).shape == (3, 10)


@pytest.mark.parametrize(
    ("in_chans", "size", "num_classes", "shape"),
    [
        (1, 28, 100, "Nx1x28x28 input and gives Nx100 logits"),  # the class count
        (3, 32, 10, "Nx3x32x32 input and gives Nx10 logits"),  # the input size and channels
        (1, 32, 10, "Nx1x32x32 input and gives Nx10 logits"),  # the input size alone
    ],
)
def test_an_onnx_file_that_disagrees_with_config_json_is_refused_on_load(
    ckpt, image, in_chans, size, num_classes, shape
) -> None:
    tiny_onnx(ckpt / ONNX_NAME, in_chans, size, num_classes)
    expected = (
        f"{ckpt / ONNX_NAME}: the ONNX model takes {shape}, but {ckpt / CONFIG_NAME} describes 1x28x28 images "
        "and 10 classes: the file and the config belong to different models"
    )
    with pytest.raises(CheckpointError) as err:
        cifarzoo.load(ckpt, backend="onnx", device="cpu")
    assert str(err.value) == expected
    assert one_error_line(run("predict", image, "--model", ckpt, "--backend", "onnx")) == f"error: {expected}"


def test_a_lone_onnx_file_with_bad_metadata_is_one_line(tmp_path) -> None:
    config = {**ZOO["resnet26-fm"].model_config().to_dict(), "num_classes": "ten"}
    path = tiny_onnx(tmp_path / "alone.onnx", 1, 28, 10, config=config)
    with pytest.raises(ConfigError) as err:
        cifarzoo.load(path, device="cpu")
    assert str(err.value) == f"{path} (cifarzoo.config metadata): num_classes must be an integer, got 'ten'"
    deep = tiny_onnx(tmp_path / "deep.onnx", 1, 28, 10)
    import onnx

    model = onnx.load(str(deep))
    model.metadata_props.add(key="cifarzoo.config", value="[" * 100_000)
    onnx.save(model, str(deep))
    with pytest.raises(ConfigError, match=r"deep\.onnx \(cifarzoo\.config metadata\): not readable JSON \(nested"):
        cifarzoo.load(deep, device="cpu")
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x01not protobuf at all" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.onnx: not a readable ONNX model"):
        cifarzoo.load(tmp_path / "garbage.onnx", device="cpu")


# ----------------------------------------------------------------------------------------------------------
# config.json: huge numbers and deep nesting


HOSTILE_CONFIGS = {
    "a 5,000-digit number": lambda text: text.replace('"num_classes": 10', '"num_classes": ' + "7" * 5000),
    "deep nesting": lambda text: text.replace('"recipe": "resnet26-fm"', '"recipe": ' + "[" * 50_000 + "]" * 50_000),
}


@pytest.mark.parametrize("what", list(HOSTILE_CONFIGS))
def test_hostile_config_json_is_one_line_naming_the_file(ckpt, image, what) -> None:
    tiny_onnx(ckpt / ONNX_NAME, 1, 28, 10)
    path = ckpt / CONFIG_NAME
    path.write_text(HOSTILE_CONFIGS[what](path.read_text()))
    assert len(path.read_text()) > 5000  # the edit took
    reason = "too many digits" if "digit" in what else "nested too deeply"
    for backend in ("torch", "onnx"):
        with pytest.raises(ConfigError if backend == "onnx" else CheckpointError) as err:
            cifarzoo.load(ckpt, backend=backend, device="cpu")
        assert str(err.value).startswith(f"{path}: not a readable JSON file") and reason in str(err.value)
        assert len(str(err.value)) < 300
    line = one_error_line(run("predict", image, "--model", ckpt, "--backend", "torch"))
    assert str(path) in line and reason in line


def test_a_long_value_does_not_flood_the_message(ckpt) -> None:
    path = ckpt / CONFIG_NAME
    data = json.loads(path.read_text())
    data["num_classes"] = int("9" * 4000)  # under Python's digit limit, so it parses
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="num_classes must be an integer from 1 to 100000") as err:
        cifarzoo.load(ckpt, device="cpu")
    assert len(str(err.value)) < 300


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"dataset": ["fm"]}, "dataset must be a string or null, got ['fm']"),
        ({"name": 7}, "name must be a string or null, got 7"),
        ({"metrics": {"test_top1": "high"}}, "metrics must map names to numbers"),
        ({"recipe": 3}, "recipe must be a name, a table or null, got 3"),
        ({"classes": [[0]] * 10}, "classes must be a list of names"),
        ({"model_args": {"drop_rate": 5}}, "bad model_args for resnet26: dropout probability"),
    ],
)
def test_free_form_config_fields_are_validated(ckpt, change, reason) -> None:
    path = ckpt / CONFIG_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(CheckpointError) as err:
        cifarzoo.load(ckpt, device="cpu")
    assert str(err.value).startswith(f"{path}: ") and reason in str(err.value)


# ----------------------------------------------------------------------------------------------------------
# --device


@pytest.mark.parametrize(
    ("device", "reason"),
    [
        ("banana", "unknown device 'banana'; choose auto, cpu, cuda or cuda:N"),
        ("cpu:1", "unknown device 'cpu:1'"),
        ("cuda:x", "unknown device 'cuda:x'"),
        ("cuda:7", "device 'cuda:7'"),
    ],
)
def test_a_bad_device_is_one_line_for_predict_eval_and_load(fm_folder, image, device, reason) -> None:
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    for model, backend in ((fm_folder, "torch"), (DEFAULT_MODEL, "onnx")):
        with pytest.raises(CifarzooError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            cifarzoo.load(model, device=device, backend=backend, trust_code=True)
    assert reason in one_error_line(run("predict", image, "--device", device))  # the bundled model, via ONNX
    assert reason in one_error_line(
        run("eval", "--custom-dir", image.parent, "--model", fm_folder, "--backend", "torch", "--device", device)
    )


def test_a_missing_gpu_is_named(fm_folder) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(CifarzooError, match="device 'cuda' asked for CUDA, but torch sees no CUDA device"):
        cifarzoo.load(fm_folder, device="cuda")


# ----------------------------------------------------------------------------------------------------------
# Which source was used


def test_the_resolved_source_comes_with_every_backend(fm_folder, tmp_path, monkeypatch) -> None:
    zoo = cifarzoo.load(DEFAULT_MODEL, backend="onnx", device="cpu")
    assert zoo.source is not None and zoo.source.kind == "zoo" and zoo.source.ref == DEFAULT_MODEL
    assert zoo.source.pinned == frozenset(ZOO[DEFAULT_MODEL].weights.sha256) and CONFIG_NAME in zoo.source.pinned
    assert json.loads(json.dumps(zoo.source.to_dict())) == {
        "kind": "zoo", "ref": DEFAULT_MODEL, "path": str(zoo.source.path), "pinned": sorted(zoo.source.pinned),
    }
    folder = cifarzoo.load(fm_folder, device="cpu")
    assert (folder.source.kind, folder.source.path, folder.source.pinned) == ("folder", fm_folder, frozenset())
    shutil.copytree(fm_folder, tmp_path / DEFAULT_MODEL)
    monkeypatch.chdir(tmp_path)
    local = cifarzoo.load(f"./{DEFAULT_MODEL}", device="cpu")
    assert local.source.kind == "folder" and local.source.describe() == f"folder ./{DEFAULT_MODEL}: {DEFAULT_MODEL}"
    assert cifarzoo.load(DEFAULT_MODEL, device="cpu").source.kind == "zoo"  # the folder of that name changes nothing


def test_predict_and_eval_say_which_source_was_used(fm_folder, image, tmp_path, monkeypatch) -> None:
    bundle = str(resolve_bundle())
    pins = sorted(ZOO[DEFAULT_MODEL].weights.sha256)
    zoo_source = {"kind": "zoo", "ref": DEFAULT_MODEL, "path": bundle, "pinned": pins}
    predicted = run("predict", image, "--json", "--verbose")
    assert predicted.exit_code == 0, predicted.output
    assert [row["model"] for row in json.loads(predicted.stdout)] == [zoo_source]
    assert predicted.stderr == (
        f"model: zoo {DEFAULT_MODEL}: {bundle} (sha256-pinned: {', '.join(pins)}); backend: onnx\n"
    )
    assert [row["backend"] for row in json.loads(predicted.stdout)] == ["onnx"]
    assert run("predict", image).stderr == ""  # without --verbose, nothing on stderr

    (tmp_path / "set" / "Bag").mkdir(parents=True)
    shutil.copy(image, tmp_path / "set" / "Bag" / "x.png")
    evaluated = run("eval", "--model", fm_folder, "--backend", "torch", "--custom-dir", tmp_path / "set", "--json",
                    "--verbose")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["model"] == {
        "kind": "folder", "ref": str(fm_folder), "path": str(fm_folder), "pinned": []
    }
    assert evaluated.stderr.startswith(f"model: folder {fm_folder}: {fm_folder}; backend: torch\n")
    assert json.loads(evaluated.stdout)["backend"] == "torch"


def test_eval_checks_for_one_test_set_before_loading(monkeypatch) -> None:
    import cifarzoo.api

    monkeypatch.setattr(cifarzoo.api, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    line = one_error_line(run("eval", "--model", "hf://nobody/nothing"))
    assert line == (
        "error: evaluate needs exactly one test set, one of dataset (--dataset), custom_dir (--custom-dir), labels "
        "(--labels) or array (--array); got none"
    )
    with pytest.raises(CifarzooError, match="got dataset, labels$"):
        cifarzoo.evaluate(DEFAULT_MODEL, "fashion-mnist", labels="x.csv")


# ----------------------------------------------------------------------------------------------------------
# Advice never points into the installed package


def test_a_zoo_entry_without_the_backends_file_gets_advice_outside_the_package() -> None:
    assert not (resolve_bundle() / TORCHSCRIPT_NAME).exists()  # the precondition of this test
    with pytest.raises(CheckpointError) as err:
        cifarzoo.load(DEFAULT_MODEL, backend="torchscript", trust_code=True)
    message = str(err.value)
    assert message == (
        f"{DEFAULT_MODEL}: the zoo entry has no {TORCHSCRIPT_NAME}; `cifarzoo export {DEFAULT_MODEL} --format "
        f"torchscript` writes a copy of the model with one into ./{DEFAULT_MODEL}/, which then loads as "
        f"./{DEFAULT_MODEL}"
    )
    assert str(PACKAGE) not in message and "site-packages" not in message


def resolve_bundle() -> Path:
    from cifarzoo.io.resolve import resolve_model_dir

    return resolve_model_dir(DEFAULT_MODEL)


def test_a_foreign_pt_gets_convert_advice_not_trust_code(tmp_path, fm_folder) -> None:
    state = cifarzoo.load(fm_folder, device="cpu").net.state_dict()
    for name in ("foreign.pt", "foreign.pth"):
        torch.save({"net": state, "acc": 91.0}, tmp_path / name)
        for trust in (False, True):
            with pytest.raises(CifarzooError) as err:
                cifarzoo.load(tmp_path / name, trust_code=trust)
            message = str(err.value)
            assert f"`cifarzoo convert {tmp_path / name} --arch ARCH --dataset DATASET --out DIR`" in message
            assert "trust" not in message


# ----------------------------------------------------------------------------------------------------------
# Export: a full disk or a read-only folder


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_full_disk_during_export_is_one_line_and_leaves_nothing(ckpt, monkeypatch, fmt) -> None:
    import onnx

    before = sorted(p.name for p in ckpt.iterdir())
    monkeypatch.setattr(onnx, "save", _enospc)  # the last write of the ONNX export
    monkeypatch.setattr(torch.jit, "save", _enospc)
    target = ckpt / (ONNX_NAME if fmt == "onnx" else TORCHSCRIPT_NAME)
    line = one_error_line(run("export", ckpt, "--format", fmt))
    assert line == f"error: {target}: {fmt} export failed: No space left on device; nothing was written"
    assert sorted(p.name for p in ckpt.iterdir()) == before  # no partial file, no .tmp


def test_a_read_only_folder_is_one_line(ckpt, tmp_path, monkeypatch) -> None:
    import tempfile

    # Tests run as root, for whom chmod does not make a folder read-only: refuse the temp file as the OS would.
    real = tempfile.mkstemp
    out = tmp_path / "readonly"
    out.mkdir()

    def read_only(*args, **kwargs):
        if Path(kwargs.get("dir", "")) == out:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    line = one_error_line(run("export", ckpt, "--out", out / "m.onnx"))
    assert line == f"error: {out / 'm.onnx'}: onnx export failed: Read-only file system; nothing was written"
    assert list(out.iterdir()) == []


def test_a_failed_zoo_export_removes_the_folder_it_made(tmp_path, monkeypatch) -> None:
    import onnx

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(onnx, "save", _enospc)
    line = one_error_line(run("export", DEFAULT_MODEL))
    assert line.startswith(f"error: {DEFAULT_MODEL}/{ONNX_NAME}: onnx export failed: No space left on device")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------------
# Paths no test ran before: CLI export, fp16 ONNX, a failed parity check, predict --backend torchscript


def test_cli_export_onnx_and_torchscript_then_predict_with_each(ckpt, image) -> None:
    onnx_run = run("export", ckpt, "--format", "onnx", "--check")
    assert onnx_run.exit_code == 0, onnx_run.output
    assert onnx_run.stdout.splitlines()[0] == f"wrote {ckpt / ONNX_NAME} (onnx fp32, exporter: dynamo)"
    assert onnx_run.stdout.splitlines()[1].startswith("parity vs torch: n=256, ") and onnx_run.stdout.endswith(": ok\n")
    ts_run = run("export", ckpt, "--format", "torchscript")
    assert ts_run.exit_code == 0
    assert ts_run.stdout == f"wrote {ckpt / TORCHSCRIPT_NAME} (torchscript fp32, exporter: trace)\n"

    results = {}
    for backend in ("torch", "onnx", "torchscript"):
        args = ["predict", image, "--model", ckpt, "--backend", backend, "--json", "--topk", "3"]
        done = run(*args, "--trust-code") if backend == "torchscript" else run(*args)
        assert done.exit_code == 0, done.output
        results[backend] = json.loads(done.stdout)
    assert one_error_line(run("predict", image, "--model", ckpt, "--backend", "torchscript")).endswith(
        "or use the ONNX or safetensors files"
    )
    preds = {backend: rows[0] for backend, rows in results.items()}
    assert preds["torchscript"]["label"] == preds["onnx"]["label"] == preds["torch"]["label"]
    assert abs(preds["torchscript"]["prob"] - preds["torch"]["prob"]) < 1e-5


def test_cli_export_fp16_onnx_predicts_close_to_fp32(ckpt) -> None:
    done = run("export", ckpt, "--dtype", "fp16", "--check")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"wrote {ckpt / ONNX_FILES['fp16']} (onnx fp16")
    assert run("export", ckpt).exit_code == 0
    from cifarzoo.runtime.onnx import OnnxModel

    fp32 = OnnxModel.from_file(ckpt / ONNX_NAME, device="cpu")
    fp16 = cifarzoo.load(ckpt / ONNX_FILES["fp16"], device="cpu")  # a lone file picks the ONNX backend
    assert isinstance(fp16, OnnxModel) and fp16.config == fp32.config
    x = np.random.default_rng(1).standard_normal((64, 1, 28, 28)).astype(np.float32)
    a, b = fp32.logits(x), fp16.logits(x)
    assert b.dtype == np.float32  # float32 in and out, fp16 inside
    assert np.abs(a - b).max() <= 2e-2 * np.abs(a).max()
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.95
    assert not np.array_equal(a, b)  # it really is another precision


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_failed_parity_check_deletes_its_file(ckpt, monkeypatch, fmt) -> None:
    from cifarzoo.io import export as io_export

    monkeypatch.setattr(io_export.Parity, "passes", lambda self, dtype: False)
    target = ckpt / (ONNX_NAME if fmt == "onnx" else TORCHSCRIPT_NAME)
    line = one_error_line(run("export", ckpt, "--format", fmt, "--check"))
    assert line.startswith(f"error: {target}: fp32 export fails its parity check (n=256, max |diff| ")
    assert line.endswith("top-1 agreement 100.00%); not written")
    assert not target.exists() and sorted(p.name for p in ckpt.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]


# ----------------------------------------------------------------------------------------------------------
# A CIFAR tarball with a member that climbs out of the extraction folder


def _cifar10_tarball(path: Path, evil: tarfile.TarInfo, evil_data: bytes = b"") -> Path:
    """A cifar-10-binary.tar.gz in the official layout (two tiny record files), plus one hostile member."""
    classes = ZOO["resnet26-c10"].dataset.classes
    records = np.zeros((2, 3073), np.uint8)
    records[:, 0] = [3, 5]
    files = {f"cifar-10-batches-bin/data_batch_{i}.bin": records.tobytes() for i in range(1, 6)}
    files["cifar-10-batches-bin/test_batch.bin"] = records.tobytes()
    files["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(classes) + "\n").encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        evil.size = len(evil_data)
        tar.addfile(evil, io.BytesIO(evil_data))
    return path


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize("with_filter", [True, False], ids=["data-filter", "older-python"])
@pytest.mark.parametrize(
    "evil",
    [
        lambda: tarfile.TarInfo("../evil"),
        lambda: tarfile.TarInfo("cifar-10-batches-bin/../../../evil"),
        lambda: _symlink("cifar-10-batches-bin/escape", "../../../evil"),
    ],
    ids=["dotdot", "nested-dotdot", "symlink-out"],
)
def test_a_tarball_member_outside_the_folder_is_refused(tmp_path, monkeypatch, evil, with_filter) -> None:
    from cifarzoo.data.datasets import load_cifar10

    if not with_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)  # the fallback for Pythons without filters
    data_dir = tmp_path / "a" / "data"
    data_dir.mkdir(parents=True)
    _cifar10_tarball(data_dir / "cifar-10-binary.tar.gz", evil(), b"pwned")
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(CifarzooError) as err:
        load_cifar10("test", data_dir=data_dir)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{data_dir / 'cifar-10-binary.tar.gz'}: not a readable tar.gz")
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written anywhere, inside or outside data_dir
    assert not any(p.name in ("evil", "escape") for p in tmp_path.rglob("*"))


def test_the_same_tarball_without_the_hostile_member_loads(tmp_path) -> None:
    """The control for the refusals above: the archive itself is a valid CIFAR-10."""
    from cifarzoo.data.datasets import load_cifar10

    info = tarfile.TarInfo("cifar-10-batches-bin/readme.html")
    _cifar10_tarball(tmp_path / "cifar-10-binary.tar.gz", info, b"<html></html>")
    data = load_cifar10("test", data_dir=tmp_path)
    assert len(data) == 2 and data.labels.tolist() == [3, 5]


# ----------------------------------------------------------------------------------------------------------
# Review findings


def test_unknown_names_and_foreign_files_are_one_line(tmp_path) -> None:
    with pytest.raises(UnknownModelError, match="no such checkpoint directory"):
        cifarzoo.load(tmp_path / "missing")
    (tmp_path / "weights.ckpt").write_bytes(b"x")
    with pytest.raises(UnknownModelError, match=r"weights\.ckpt: not a model folder or an exported file"):
        cifarzoo.load(tmp_path / "weights.ckpt")


def test_torch_runner_restores_a_4d_buffers_layout() -> None:
    """``Module.to(memory_format=...)`` replaces buffers with new tensors; the runner must restore the module's
    own buffer, not the one it captured before the conversion."""
    from cifarzoo.runtime.torch_runner import TorchRunner

    class WithBuffer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.register_buffer("kernel", torch.randn(2, 3, 4, 5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3)) + self.kernel.sum()

    module = WithBuffer()
    kernel = module.kernel.clone()
    TorchRunner(module)(np.zeros((1, 3, 8, 8), np.float32))
    assert module.kernel.is_contiguous() and module.conv.weight.is_contiguous()
    assert torch.equal(module.kernel, kernel)


def test_torchscript_defaults_to_auto_like_every_backend() -> None:
    import inspect

    from cifarzoo.runtime.onnx import OnnxModel
    from cifarzoo.runtime.torchscript import TorchScriptModel

    defaults = {
        f"{cls.__name__}.{method}": inspect.signature(getattr(cls, method)).parameters["device"].default
        for cls in (OnnxModel, TorchScriptModel)
        for method in ("from_file", "from_dir", "__init__")
    }
    assert set(defaults.values()) == {"auto"}, defaults

"""Export: every arch to ONNX and TorchScript within tolerance; the ONNX path never imports torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli_without_torch

import cifarzoo
from cifarzoo.engines.export import export
from cifarzoo.errors import CifarzooError
from cifarzoo.io.export import check_parity, parity_inputs
from cifarzoo.io.layout import ONNX_NAME, TORCHSCRIPT_NAME
from cifarzoo.models.specs import ARCHS
from cifarzoo.runtime.onnx import OnnxModel, cuda_usable, onnx_providers
from cifarzoo.runtime.torchscript import TorchScriptModel

# tv_resnet50 upsamples to 224 px: parity on 256 inputs takes a while on 2 cores, but every arch is covered.
ENTRIES = [f"{arch}-fm" if not arch.startswith("tv_") else f"{arch}-c10" for arch in ARCHS]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One random-weight checkpoint folder per arch, with non-trivial BatchNorm statistics."""
    folders = {}
    for name in ENTRIES:
        torch.manual_seed(0)
        model = (
            cifarzoo.create_model(name, zero_init_last=False)
            if not name.startswith("tv_")
            else cifarzoo.create_model(name)
        )
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.8, 1.2)
        folders[name] = tmp_path_factory.mktemp(name) / "ckpt"
        model.save_pretrained(folders[name])
    return folders


@pytest.mark.parametrize("name", ENTRIES)
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_arch_exports_within_tolerance(checkpoints, name, fmt) -> None:
    folder = checkpoints[name]
    result = export(folder, fmt=fmt, check=True)  # raises outside 1e-4 relative / identical top-1 on 256 inputs
    assert result.parity.n == 256 and result.parity.relative_diff <= 1e-4 and result.parity.top1_agreement == 1.0
    assert result.path == folder / (ONNX_NAME if fmt == "onnx" else TORCHSCRIPT_NAME)
    if fmt == "onnx":
        assert result.exporter == "dynamo"
        loaded = cifarzoo.load(folder, backend="onnx", device="cpu")
        import onnx

        graph = onnx.load(str(result.path))
        assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
        meta = {p.key: p.value for p in graph.metadata_props}
        assert json.loads(meta["cifarzoo.config"])["arch"] == name.rsplit("-", 1)[0]
    else:
        loaded = cifarzoo.load(folder, backend="torchscript", device="cpu", trust_code=True)
    assert isinstance(loaded, OnnxModel if fmt == "onnx" else TorchScriptModel)
    assert loaded.classes == cifarzoo.load(folder).classes and loaded.config == cifarzoo.load(folder).config


def test_onnx_batch_axis_is_dynamic(checkpoints) -> None:
    folder = checkpoints["resnet26-fm"]
    export(folder, fmt="onnx")
    onnx_model = OnnxModel.from_dir(folder, device="cpu")
    for batch in (1, 7, 300):
        assert onnx_model.logits(parity_inputs(onnx_model.config, n=batch)).shape == (batch, 10)


def test_backends_predict_the_same(checkpoints, tmp_path) -> None:
    from PIL import Image

    folder = checkpoints["resnet34-fm"]
    export(folder, fmt="onnx")
    export(folder, fmt="torchscript")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(paths[-1])
    results = [
        cifarzoo.load(folder, backend=b, device="cpu", trust_code=True).predict(paths, topk=3)
        for b in ("torch", "onnx", "torchscript")
    ]
    for preds in results[1:]:
        assert [p.label for p in preds] == [p.label for p in results[0]]
        assert np.allclose([p.prob for p in preds], [p.prob for p in results[0]], atol=1e-5)
    assert cifarzoo.load(folder, backend="auto", device="cpu").__class__ is OnnxModel


def test_single_files_load_on_their_own(checkpoints, tmp_path) -> None:
    folder = checkpoints["plain26-fm"]
    export(folder, fmt="onnx", out=tmp_path / "alone.onnx")
    export(folder, fmt="torchscript", out=tmp_path / "alone.pt")
    for path in (tmp_path / "alone.onnx", tmp_path / "alone.pt"):  # no config.json beside them
        assert cifarzoo.load(path, trust_code=True).config.arch == "plain26"


def test_fp16_onnx_is_written_with_float_io(checkpoints, tmp_path) -> None:
    import onnx

    result = export(checkpoints["resnet26-fm"], fmt="onnx", dtype="fp16", out=tmp_path / "m16.onnx")
    graph = onnx.load(str(result.path))
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.graph.initializer)


@pytest.mark.parametrize("name", ["resnet26-fm", "resnet34-fm", "plain26-fm"])  # bottleneck, basic, no skips
def test_fp16_storage_halves_an_fp16_checkpoint_and_changes_no_output(checkpoints, name, tmp_path) -> None:
    """Weights saved in fp16 (as the bundled releases are) are stored as fp16 in the ONNX file, BatchNorm
    unfolded; onnxruntime runs the same fp32 graph as the default export, so the logits are those of the default
    export (to the last bits of fp32 rounding) and of torch (the parity check)."""
    import onnx

    folder = tmp_path / "fp16"
    cifarzoo.load(checkpoints[name], backend="torch", device="cpu").save_pretrained(folder, dtype=torch.float16)
    plain = export(folder, fmt="onnx", check=True, out=tmp_path / "plain.onnx")
    compact = export(folder, fmt="onnx", check=True, out=tmp_path / "compact.onnx", fp16_storage=True)
    assert compact.parity.relative_diff <= 1e-4 and compact.parity.top1_agreement == 1.0
    assert compact.path.stat().st_size < 0.55 * plain.path.stat().st_size
    stored = onnx.load(str(compact.path)).graph.initializer
    assert sum(t.data_type == onnx.TensorProto.FLOAT16 for t in stored) >= 10
    assert not [t.name for t in stored if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) > 1]
    x = parity_inputs(cifarzoo.load(folder, backend="torch").config, n=64)
    reference = OnnxModel.from_file(plain.path, device="cpu").logits(x)
    np.testing.assert_allclose(OnnxModel.from_file(compact.path, device="cpu").logits(x), reference,
                               rtol=0, atol=1e-5 * float(np.abs(reference).max()))


def test_fp16_storage_keeps_weights_fp16_cannot_hold_in_fp32(checkpoints, tmp_path) -> None:
    """fp32-trained weights are not fp16 values: storing them in fp16 would change the outputs, so they stay fp32."""
    import onnx

    result = export(checkpoints["resnet26-fm"], fmt="onnx", check=True, out=tmp_path / "m.onnx", fp16_storage=True)
    convs = [t for t in onnx.load(str(result.path)).graph.initializer if len(t.dims) == 4]
    assert convs and all(t.data_type == onnx.TensorProto.FLOAT for t in convs)
    assert result.parity.relative_diff <= 1e-4


def test_fp16_storage_is_for_fp32_onnx_only(checkpoints, tmp_path) -> None:
    for fmt, dtype in (("onnx", "int8"), ("onnx", "fp16"), ("torchscript", "fp32")):
        with pytest.raises(CifarzooError, match="--fp16-storage applies to fp32 ONNX files"):
            export(checkpoints["resnet26-fm"], fmt=fmt, dtype=dtype, fp16_storage=True, out=tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_fallback_exporter_is_used_and_reported(checkpoints, tmp_path, monkeypatch) -> None:
    real_export = torch.onnx.export

    def no_dynamo(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("simulated torch.export failure")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    result = export(checkpoints["resnet26-fm"], fmt="onnx", out=tmp_path / "legacy.onnx", check=True)
    assert result.exporter == "torchscript" and result.parity.top1_agreement == 1.0


def test_failed_export_leaves_no_file(checkpoints, tmp_path, monkeypatch) -> None:
    tried: list[bool] = []

    def broken(*args, **kwargs):
        tried.append(bool(kwargs.get("dynamo")))
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    # An exporter crash is a bug, not a user mistake: it propagates unchanged (a traceback), after both exporters
    # were tried, the torch.export-based one first.
    with pytest.raises(RuntimeError, match="^exporter crashed$"):
        export(checkpoints["resnet26-fm"], fmt="onnx", out=tmp_path / "x.onnx")
    assert tried == [True, False]
    assert list(tmp_path.iterdir()) == []


def test_int8_parity_images_are_never_calibration_images(monkeypatch) -> None:
    """Calibration takes the first 512 images of one seeded order of the training set, the parity check the next
    256: disjoint by construction (two independent random draws would overlap)."""
    from cifarzoo.data.datasets import ArrayDataset
    from cifarzoo.engines import export as engine

    n = 1_000  # small, so that overlapping draws would be certain
    images = np.zeros((n, 28, 28, 1), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = np.arange(n) // 256, np.arange(n) % 256  # each image says its index
    data = ArrayDataset(images, np.zeros(n, np.int64), tuple(f"c{i}" for i in range(10)), "fake:train")
    monkeypatch.setattr(engine, "load_dataset", lambda *args, **kwargs: data)
    config = cifarzoo.create_model("resnet26-fm").config

    def indices(batch: np.ndarray) -> set[int]:
        return set((batch[:, 0, 0, 0].astype(int) * 256 + batch[:, 0, 1, 0]).tolist())

    calibration = indices(engine._calibration_images(config, None, None, engine.CALIBRATION_IMAGES))
    held_out = indices(
        engine._calibration_images(config, None, None, engine.PARITY_INPUTS, offset=engine.CALIBRATION_IMAGES)
    )
    assert len(calibration) == 512 and len(held_out) == 256 and not calibration & held_out
    with pytest.raises(CifarzooError, match="no training images held out from calibration"):
        engine._calibration_images(config, None, None, 10, offset=n)


def test_bad_format_and_dtype(checkpoints) -> None:
    with pytest.raises(CifarzooError, match="unknown format"):
        export(checkpoints["resnet26-fm"], fmt="tflite")
    with pytest.raises(CifarzooError, match="not available for torchscript"):
        export(checkpoints["resnet26-fm"], fmt="torchscript", dtype="int8")


def test_providers_use_cuda_only_when_usable() -> None:
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    expected = cuda_usable()
    assert (onnx_providers("auto")[0] != "CPUExecutionProvider") == expected
    if not expected:
        with pytest.raises(CifarzooError, match="no usable CUDA"):
            onnx_providers("cuda")


def test_parity_detects_a_wrong_export() -> None:
    x = np.random.default_rng(0).normal(size=(256, 1, 28, 28)).astype(np.float32)
    model = cifarzoo.create_model("resnet26-fm", zero_init_last=False).eval()
    other = cifarzoo.create_model("resnet26-fm", zero_init_last=False).eval()  # different random weights
    same = check_parity(model.logits, model.logits, x)
    assert same.passes("fp32")
    assert not check_parity(model.logits, other.logits, x).passes("fp32")


def test_onnx_predict_never_imports_torch(checkpoints, tmp_path) -> None:
    from PIL import Image

    folder = checkpoints["resnet26-fm"]
    export(folder, fmt="onnx")
    Image.new("L", (28, 28), 200).save(tmp_path / "one.png")
    stdout = run_cli_without_torch(
        ["predict", str(tmp_path / "one.png"), "--model", str(folder), "--backend", "onnx", "--json"]
    )
    assert json.loads(stdout)[0]["label"]

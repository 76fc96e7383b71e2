"""The checkpoint format: save -> load is exact, loading is strict, configs are validated."""

from __future__ import annotations

import json

import pytest
import torch

import cifarzoo
from cifarzoo.config import ModelConfig
from cifarzoo.errors import CheckpointError, ConfigError, NoWeightsError, UnknownModelError
from cifarzoo.io.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_weights, save_checkpoint
from cifarzoo.models.specs import ARCHS
from cifarzoo.registry import ZOO

# One zoo entry per arch (plus the grayscale Fashion-MNIST variant of each CIFAR net).
ENTRIES = [f"{arch}-c10" for arch in ARCHS] + [f"{arch}-fm" for arch in ARCHS if not arch.startswith("tv_")]


def _randomize_bn(model: torch.nn.Module) -> None:
    # Non-trivial BatchNorm statistics, so that a loader that forgot the buffers would be caught.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name", ENTRIES)
def test_save_load_gives_bit_identical_logits(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = cifarzoo.create_model(name)
    _randomize_bn(model)
    model.eval()
    cfg = model.config
    x = torch.randn(3, cfg.in_chans, cfg.preprocess.input_size, cfg.preprocess.input_size)
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = cifarzoo.load(tmp_path / "ckpt")
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    assert loaded.config == cfg
    assert loaded.classes == ZOO[name].dataset.classes


def test_checkpoint_files_and_config(tmp_path) -> None:
    model = cifarzoo.create_model("resnet34-c100", drop_rate=0.2)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    data = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert data["arch"] == "resnet34" and data["num_classes"] == 100 and len(data["classes"]) == 100
    assert data["architecture"]["block"] == "basic" and data["architecture"]["depths"] == [3, 4, 6, 3]
    assert data["preprocess"]["std"] == [0.2673, 0.2564, 0.2762]
    assert data["model_args"] == {"drop_rate": 0.2}
    assert data["recipe"] == "resnet34-c100" and data["cifarzoo_version"] == cifarzoo.__version__
    assert cifarzoo.load(tmp_path).net.dropout.p == 0.2


def test_fp16_checkpoint_loads_into_fp32_model(tmp_path) -> None:
    model = cifarzoo.create_model("resnet26-fm").eval()
    model.save_pretrained(tmp_path, dtype=torch.float16)
    assert load_weights(tmp_path)["fc.weight"].dtype == torch.float16
    loaded = cifarzoo.load(tmp_path)
    assert loaded.net.fc.weight.dtype == torch.float32
    assert torch.equal(loaded.net.fc.weight, model.net.fc.weight.half().float())


def test_create_model_with_new_classes(tmp_path) -> None:
    model = cifarzoo.create_model("resnet26-c10", classes=["cat", "dog"])
    assert model.config.num_classes == 2 and model.classes == ("cat", "dog") and model.config.name is None
    assert model.config.preprocess == ZOO["resnet26-c10"].model_config().preprocess
    assert cifarzoo.create_model("resnet26", num_classes=3).classes == ("class_0", "class_1", "class_2")
    model.save_pretrained(tmp_path)
    assert cifarzoo.load(tmp_path).net.fc.out_features == 2


def _tamper(directory, edit) -> None:
    from safetensors.torch import save_file

    weights = load_weights(directory)
    edit(weights)
    save_file(weights, str(directory / WEIGHTS_NAME))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda w: w.pop("fc.bias"), "missing keys.*fc.bias"),
        (lambda w: w.__setitem__("extra.weight", torch.zeros(1)), "unexpected keys.*extra.weight"),
        (lambda w: w.__setitem__("fc.bias", torch.zeros(7)), "shape mismatch.*fc.bias"),
    ],
)
def test_loading_is_strict(tmp_path, edit, message) -> None:
    cifarzoo.create_model("resnet26-c10").save_pretrained(tmp_path)
    _tamper(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message):
        cifarzoo.load(tmp_path)


def test_module_prefixed_keys_are_rejected_by_name(tmp_path) -> None:
    cifarzoo.create_model("resnet26-c10").save_pretrained(tmp_path)
    _tamper(tmp_path, lambda w: [w.__setitem__("module." + k, w.pop(k)) for k in list(w)])
    with pytest.raises(CheckpointError, match=r"model.safetensors.*missing keys.*unexpected keys \(\d+\): module\."):
        cifarzoo.load(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch": "resnet99"}, "unknown arch 'resnet99'"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": "10"}, "num_classes must be an integer"),
        ({"classes": ["a"]}, "classes has 1 names but num_classes is 10"),
        ({"preprocess": {"input_size": 32, "mean": [0.5], "std": [0.2, 0.2, 0.2]}}, "need 3 values"),
        ({"preprocess": {"input_size": 32, "mean": [0.5] * 3, "std": [0.2, 0.0, 0.2]}}, "std must be positive"),
        ({"preprocess": {"input_size": 32, "mean": ["a"] * 3, "std": [0.2] * 3}}, "invalid PreprocessConfig"),
        ({"colour": "red"}, "unknown keys \\['colour'\\]"),
    ],
)
def test_config_validation_names_the_file(tmp_path, change, message) -> None:
    cifarzoo.create_model("resnet26-c10").save_pretrained(tmp_path)
    data = json.loads((tmp_path / CONFIG_NAME).read_text())
    data.update(change)
    (tmp_path / CONFIG_NAME).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=message) as info:
        cifarzoo.load(tmp_path)
    assert str(tmp_path / CONFIG_NAME) in str(info.value)


def test_broken_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="config.json: file not found"):
        cifarzoo.load(tmp_path)
    cifarzoo.create_model("resnet26-c10").save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        cifarzoo.load(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON file"):
        cifarzoo.load(tmp_path)


def test_config_round_trip() -> None:
    cfg = ZOO["plain50-c100"].model_config()
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError):
        ModelConfig.from_dict([1, 2])


def test_load_names_that_are_not_trained_models(tmp_path) -> None:
    with pytest.raises(NoWeightsError, match="resnet50-c10 has no released weights"):
        cifarzoo.load("resnet50-c10")
    with pytest.raises(UnknownModelError, match="is an architecture"):
        cifarzoo.load("resnet50")
    with pytest.raises(UnknownModelError, match="no such checkpoint directory"):
        cifarzoo.load(str(tmp_path / "missing"))


def test_save_is_atomic_and_overwrites_cleanly(tmp_path) -> None:
    model = cifarzoo.create_model("resnet26-c10")
    save_checkpoint(model.net.state_dict(), model.config, tmp_path)
    save_checkpoint(model.net.state_dict(), model.config, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files left


def test_zoo_model_is_a_trainable_module() -> None:
    model = cifarzoo.create_model("resnet26-c10")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.net.fc.weight.clone()
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.net.fc.weight)

"""The registry's numbers are the real models' numbers (torchvision's test_extended_models idea)."""

from __future__ import annotations

import pytest

from cifarzoo.data.specs import CIFAR10, DATASETS
from cifarzoo.models.factory import build_model, count_flops, count_params
from cifarzoo.registry import ZOO, get_entry, list_models, split_name


def _build(entry):
    cfg = entry.model_config()
    return build_model(entry.arch, cfg.num_classes, cfg.in_chans, **cfg.model_args), cfg


@pytest.mark.parametrize("name", list(ZOO))
def test_params_and_gflops_match_the_real_model(name: str) -> None:
    entry = ZOO[name]
    model, cfg = _build(entry)
    assert count_params(model) == entry.num_params
    assert round(count_flops(model, cfg.preprocess.input_size, cfg.in_chans) / 1e9, 3) == entry.gflops


@pytest.mark.parametrize("name", list(ZOO))
def test_entry_config_is_consistent(name: str) -> None:
    entry = ZOO[name]
    cfg = entry.model_config()
    assert split_name(name) == (entry.arch, entry.dataset.tag)
    assert cfg.num_classes == len(cfg.classes) == len(entry.dataset.classes)
    assert len(cfg.preprocess.mean) == len(cfg.preprocess.std) == cfg.in_chans
    assert cfg.recipe == name and cfg.name == name
    assert entry.weights.kind in ("none", "bundled") and (entry.top1 is None) == (not entry.weights.available)


def test_every_resnet_and_plain_depth_exists_for_c10_and_c100() -> None:
    for family in ("resnet", "plain"):
        for depth in (26, 34, 50):
            for tag in ("c10", "c100"):
                assert f"{family}{depth}-{tag}" in ZOO


def test_cifar_statistics_are_the_dataset_std_not_the_copied_one() -> None:
    assert CIFAR10.std == (0.2470, 0.2435, 0.2616)
    assert ZOO["resnet50-c10"].model_config().preprocess.std == (0.2470, 0.2435, 0.2616)


def test_class_lists() -> None:
    assert [DATASETS[t].num_classes for t in ("c10", "c100", "fm")] == [10, 100, 10]
    assert len(set(DATASETS["c100"].classes)) == 100


def test_list_models_filters() -> None:
    assert list_models("resnet*-c10") == ["resnet26-c10", "resnet34-c10", "resnet50-c10"]
    assert all(n.endswith("-fm") for n in list_models(dataset="fm"))
    assert list_models(dataset="fashion-mnist") == list_models(dataset="fm")
    assert set(list_models(pretrained=True)) == {n for n, e in ZOO.items() if e.weights.available}


def test_unknown_name_suggests_close_matches() -> None:
    from cifarzoo.errors import UnknownModelError

    with pytest.raises(UnknownModelError, match="resnet50-c10"):
        get_entry("resnet50-c1")


def test_registry_import_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import cifarzoo, cifarzoo.registry, cifarzoo.cli, sys; cifarzoo.list_models(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The registry's numbers are the real models' numbers (torchvision's test_extended_models idea)."""

from __future__ import annotations

import pytest

from cifarzoo.data.specs import CIFAR10, DATASETS
from cifarzoo.models.factory import build_model, count_flops, count_params
from cifarzoo.registry import DEFAULT_MODEL, ZOO, get_entry, list_models, offline_default, split_name
from cifarzoo.releases import (
    RELEASES_MODULE,
    RecipeRef,
    Release,
    WeightsKind,
    WeightsSource,
    render_releases_module,
    write_releases_module,
)
from cifarzoo.training.recipe import recipe_differences


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

    code = (
        "import cifarzoo, cifarzoo.registry, cifarzoo.cli, sys; cifarzoo.list_models(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _read_back(text: str) -> dict[str, Release]:
    namespace: dict = {}
    exec(compile(text, "<rendered releases>", "exec"), namespace)
    return namespace["RELEASES"]


def test_generated_releases_module_round_trips_and_is_not_edited_by_hand() -> None:
    from cifarzoo._releases import RELEASES

    text = render_releases_module(RELEASES)
    assert _read_back(text) == RELEASES  # the writer's text reads back as equal objects
    # ...and the file is exactly what the writer gives: an edit by hand shows here (rerun train/bundle.py).
    assert RELEASES_MODULE.read_text(encoding="utf-8") == text
    assert all(len(line) <= 120 for line in text.splitlines())


def test_writer_renders_any_release_stably(tmp_path) -> None:
    release = Release(
        source=WeightsSource(kind="hub", location="user/resnet50-c10", revision="0123abc", sha256={"a.bin": "ff"}),
        metrics={"test": {"top1": 95.123456, "ece": 0.012345678, "n": 10_000}, "": {"top1": 1 / 3}},
        license="Apache-2.0",
        recipe=RecipeRef("resnet50-c10", variant="fast", overrides=["optim.lr=0.2", 'model.pretrained="x"']),
        epochs=40,
        best_epoch=38,
    )
    assert release.metrics == {"test": {"top1": 95.12, "ece": 0.0123, "n": 10_000}, "": {"top1": 0.33}}
    assert release.recipe.command() == 'resnet50-c10 --variant fast --set optim.lr=0.2 --set model.pretrained="x"'
    path = write_releases_module({"resnet50-c10": release, "plain26-fm": release}, tmp_path / "_releases.py")
    text = path.read_text(encoding="utf-8")
    assert _read_back(text) == {"plain26-fm": release, "resnet50-c10": release}
    assert render_releases_module(_read_back(text)) == text
    assert text.index('"plain26-fm"') < text.index('"resnet50-c10"')  # sorted, whatever the insertion order


def test_offline_default_is_the_best_release_bundled_with_onnx() -> None:
    def release(kind: WeightsKind, files: tuple[str, ...], top1: float | None) -> Release:
        return Release(WeightsSource(kind=kind, location="x", sha256={f: "ff" for f in files}),
                       {"test": {"top1": top1}} if top1 is not None else {}, "Apache-2.0", RecipeRef("x"), 5, 5)

    with_onnx = ("model.safetensors", "model.onnx", "config.json")
    releases = {
        "resnet26-fm": release("bundled", with_onnx, 94.03),
        "plain26-fm": release("bundled", ("model.safetensors", "config.json"), 94.56),  # better, but no ONNX
        "resnet50-c10": release("hub", with_onnx, 95.6),  # better, but needs the network
        "resnet34-fm": release("bundled", with_onnx, None),  # not measured yet
    }
    assert offline_default(releases) == "resnet26-fm"
    releases["resnet34-fm"] = release("bundled", with_onnx, 94.2)
    assert offline_default(releases) == "resnet34-fm"
    releases["plain34-fm"] = release("bundled", with_onnx, 94.2)  # a tie: the first name alphabetically
    assert offline_default(releases) == "plain34-fm"
    with pytest.raises(ValueError, match="no release is bundled with an ONNX file"):
        offline_default({"plain26-fm": releases["plain26-fm"]})
    # The package's own default follows the same rule over the real releases.
    assert offline_default({name: e.release for name, e in ZOO.items() if e.release is not None}) == DEFAULT_MODEL


def test_release_rejects_what_it_cannot_record() -> None:
    source = WeightsSource(kind="bundled", location="resnet26-fm")
    with pytest.raises(ValueError, match="finite"):
        Release(source, {"test": {"top1": float("nan")}}, "Apache-2.0", RecipeRef("resnet26-fm"), 15, 15)
    with pytest.raises(ValueError, match="best_epoch"):
        Release(source, {}, "Apache-2.0", RecipeRef("resnet26-fm"), 15, 16)
    with pytest.raises(ValueError, match="kind"):
        Release(WeightsSource(), {}, "Apache-2.0", RecipeRef("resnet26-fm"), 15, 15)


@pytest.mark.parametrize("name", [n for n, e in ZOO.items() if e.release is not None])
def test_flat_metrics_and_weights_are_the_release(name: str) -> None:
    entry = ZOO[name]
    release = entry.release
    assert entry.weights == release.source and entry.recipe == release.recipe.name == name
    assert dict(entry.metrics) == release.flat_metrics()
    assert entry.metrics["epochs"] == release.epochs and entry.metrics["best_epoch"] == release.best_epoch
    assert entry.top1 == release.metrics["test"]["top1"]
    for split, values in release.metrics.items():
        for metric, value in values.items():
            assert entry.metrics[f"{split}_{metric}"] == value
    rebuilt = Release.from_flat_metrics(entry.metrics, source=release.source, license=release.license,
                                        recipe=release.recipe)
    assert rebuilt == release


def test_bundled_release_pins_every_file_and_claims_its_recorded_recipe() -> None:
    import json
    from pathlib import Path

    import cifarzoo

    for name, entry in ZOO.items():
        if entry.weights.kind != "bundled":
            continue
        folder = Path(cifarzoo.__file__).parent / "weights" / entry.weights.location
        assert set(entry.weights.sha256) == {p.name for p in folder.iterdir()}  # config.json too
        recorded = json.loads((folder / "config.json").read_text())["recipe"]
        assert recipe_differences(entry.release.recipe, recorded) == {}
        claimed = entry.release.recipe
        changed = RecipeRef(name, variant=claimed.variant, overrides=(*claimed.overrides, "train.epochs=3"))
        assert recipe_differences(changed, recorded) == {
            "train.epochs": (entry.release.epochs, 3)
        }

"""Recipes: every zoo recipe loads and validates; overrides and variants; clear errors."""

from __future__ import annotations

import pytest

from cifarzoo.errors import ConfigError
from cifarzoo.registry import ZOO
from cifarzoo.training.recipe import Recipe, list_recipes, load_recipe, recipe_dir


def test_every_zoo_entry_has_a_recipe_with_its_arch_and_dataset() -> None:
    assert set(list_recipes()) == set(ZOO)
    for name, entry in ZOO.items():
        recipe = load_recipe(name)
        assert recipe.name == name
        assert recipe.model.arch == entry.arch and recipe.data.dataset == entry.dataset.name


def test_cifar_recipes_reproduce_the_original_settings() -> None:
    r = load_recipe("resnet50-c10")
    assert (r.optim.name, r.optim.lr, r.optim.momentum, r.optim.nesterov, r.optim.weight_decay) == (
        "sgd", 0.1, 0.9, True, 5e-4
    )
    assert r.schedule.name == "cosine" and 64 <= r.train.batch_size <= 128 and 200 <= r.train.epochs <= 300
    assert r.data.crop_padding == 4 and r.data.flip and r.model.drop_rate > 0


def test_fast_variant_uses_fewer_epochs_and_airbench_techniques() -> None:
    base, fast = load_recipe("resnet50-c10"), load_recipe("resnet50-c10", variant="fast")
    assert fast.train.epochs < base.train.epochs / 4
    assert fast.train.label_smoothing > 0 and fast.train.ema_decay > 0 and fast.train.tta == "flip"
    with pytest.raises(ConfigError, match="no variant 'slow'"):
        load_recipe("resnet50-c10", variant="slow")


def test_overrides_parse_types() -> None:
    r = load_recipe(
        "resnet26-fm",
        overrides=["optim.lr=0.05", "train.tta=none", "optim.nesterov=false", "schedule.milestones=[0.3, 0.6]"],
    )
    assert r.optim.lr == 0.05 and r.train.tta == "none" and r.optim.nesterov is False
    assert r.schedule.milestones == (0.3, 0.6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", r"optim has unknown keys \['lrr'\]"),
        ("optim.lr=fast", "optim.lr must be a number"),
        ("optim.name=sgdd", "optim.name must be one of"),
        ("train.epochs=0", "train.epochs must be >= 1"),
        ("model.arch=resnet99", "model.arch must be one of"),
        ("lr", "--set expects section.key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe("resnet26-fm", overrides=[override])


def test_recipe_files_and_bases(tmp_path) -> None:
    (tmp_path / "base.toml").write_text('[optim]\nlr = 0.3\n[train]\nepochs = 7\n')
    (tmp_path / "mine.toml").write_text('base = "base.toml"\n[model]\narch = "plain34"\n[train]\nepochs = 3\n')
    r = load_recipe(tmp_path / "mine.toml")
    assert (r.name, r.model.arch, r.optim.lr, r.train.epochs) == ("mine", "plain34", 0.3, 3)
    (tmp_path / "loop.toml").write_text('base = "loop.toml"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_recipe(tmp_path / "loop.toml")
    with pytest.raises(ConfigError, match="no recipe named 'resnet26-f'; did you mean resnet26-fm"):
        load_recipe("resnet26-f")


def test_round_trip_through_dict() -> None:
    r = load_recipe("tv_resnet50-c10", variant="head")
    assert r.model.freeze == "all-but-head"
    assert Recipe.from_dict(r.to_dict()) == r


def test_train_recipes_folder_is_the_packaged_one() -> None:
    from pathlib import Path

    linked = Path(__file__).parents[1] / "train" / "recipes"
    assert linked.resolve() == recipe_dir().resolve()

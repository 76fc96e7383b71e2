"""Property-based tests (Hypothesis) for the recipe parsers: TOML recipe files, ``--set KEY=VALUE`` overrides and
a resumed run's ``recipe.json``. Whatever the input, the loader returns a valid recipe or raises a
:class:`CifarzooError` (one line for the CLI), never another exception; a recipe that loads puts its run inside
``runs/``."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cifarzoo.errors import CifarzooError
from cifarzoo.training.recipe import Recipe, _flatten, load_recipe, recipe_dir, recipe_for_run

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REAL_KEYS = sorted(_flatten(Recipe().to_dict()))
SECTIONS = sorted({key.split(".")[0] for key in REAL_KEYS if "." in key})

keys = st.one_of(
    st.sampled_from(REAL_KEYS),
    st.sampled_from(REAL_KEYS).map(lambda key: key + ".deeper"),
    st.sampled_from(SECTIONS),
    st.sampled_from(["name", "base", "variants", "", ".", "..", "optim..lr", " optim.lr", "optim.lr "]),
    st.text(max_size=20),
)
# Value text as typed after --set KEY=: numbers at and beyond every limit, literals of every kind, nesting bombs.
value_texts = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from([
        "1e308", "1e999", "-1e999", "-0.0", "0", "-1", "2**63", "9" * 400, "9" * 5000, "nan", "inf", "True", "none",
        "[0.9]", "[0.9, 0.999, 0.5]", "[]", "()", "{}", "{[1]: 2}", "{{1}}", "[" * 300, "[" * 100 + "]" * 100,
        "(" * 5000, "'text'", "b'bytes'", "1j", "0x10", "1_000", "../../x", "a/b", "..", "'\\x00'", "\x00",
        "lambda: 0", "__import__('os')", "1 if 1 else 2", "...",
    ]),
)
assignments = st.builds(lambda key, sep, value: f"{key}{sep}{value}", keys, st.sampled_from(["=", " = ", "", "=="]),
                        value_texts)


@FUZZ
@given(overrides=st.lists(assignments, max_size=4), variant=st.one_of(st.none(), st.sampled_from(["fast", "plateau"])))
def test_set_overrides_load_or_raise_a_clean_error(overrides: list[str], variant: str | None) -> None:
    _loads_or_clean_error(lambda: recipe_for_run("resnet26-fm", variant=variant, overrides=overrides))


# ----------------------------------------------------------------------------------------------------------
# TOML recipe files

toml_values = st.recursive(
    st.one_of(
        st.integers(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(),
        st.booleans(),
        st.text(max_size=30),
        st.sampled_from(["../../x", "_cifar.toml", "resnet26", "sgd", "cosine", "fashion-mnist", "folder", "."]),
    ),
    lambda children: st.lists(children, max_size=3),
    max_leaves=6,
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not isinstance(value, float) or value == value else "nan"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (a lone surrogate makes the file invalid, as it should)
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def _toml_document(top: dict[str, Any], tables: dict[str, dict[str, Any]]) -> str:
    lines = [f"{json.dumps(key)} = {_toml_value(value)}" for key, value in top.items()]
    for table, entries in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{json.dumps(key)} = {_toml_value(value)}" for key, value in entries.items()]
    return "\n".join(lines) + "\n"


section_entries = st.dictionaries(
    st.one_of(st.sampled_from([key.split(".", 1)[1] for key in REAL_KEYS if "." in key]), st.text(max_size=10)),
    toml_values, max_size=4,
)
tables = st.dictionaries(
    st.one_of(
        st.sampled_from(SECTIONS),
        st.sampled_from(["variants.fast", 'variants."../x"', "variants", "optim.inner"]),
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
    ),
    section_entries, max_size=4,
)
top_level = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.text(max_size=20), st.sampled_from(["../../x", "ok-name", "..", "a/b", "x" * 300]),
                          toml_values),
        "base": st.one_of(st.sampled_from(["_cifar.toml", "_fm.toml", "mine.toml", "missing.toml", "", "/dev/null",
                                           "../_cifar.toml", "sub"]), toml_values),
        "description": toml_values,
        "optim": toml_values,
    },
)


@FUZZ
@given(top=top_level, body=tables, variant=st.one_of(st.none(), st.sampled_from(["fast", "../x"]), st.text(max_size=8)),
       overrides=st.lists(assignments, max_size=2))
def test_recipe_files_load_or_raise_a_clean_error(top, body, variant, overrides) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for base in ("_cifar.toml", "_fm.toml"):  # real bases beside the file, so that some documents load
            shutil.copy(recipe_dir() / base, Path(folder, base))
        (Path(folder) / "sub").mkdir()
        path = Path(folder, "mine.toml")
        path.write_text(_toml_document(top, body), encoding="utf-8", errors="surrogatepass")
        _loads_or_clean_error(lambda: recipe_for_run(path, variant=variant, overrides=overrides))


@FUZZ
@given(text=st.text(max_size=300))
def test_any_text_as_a_recipe_file_loads_or_raises_a_clean_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "mine.toml")
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _loads_or_clean_error(lambda: recipe_for_run(path))


# ----------------------------------------------------------------------------------------------------------
# A resumed run's recipe.json

json_documents = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.one_of(st.sampled_from(SECTIONS + REAL_KEYS), st.text(max_size=8)),
                                               children, max_size=4)),
    max_leaves=10,
)


@FUZZ
@given(document=st.one_of(
    json_documents.map(json.dumps),
    # A real recipe.json with one value replaced: the documents that get furthest.
    st.tuples(st.sampled_from(REAL_KEYS), json_documents).map(lambda kv: json.dumps(_with(kv[0], kv[1]))),
    st.binary(max_size=50).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["[" * 100_000, '{"name": ' * 50_000, "", "{", "NaN", '{"name": "../../x"}']),
))
def test_a_resumed_runs_recipe_json_loads_or_raises_a_clean_error(document: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "recipe.json").write_text(document, encoding="utf-8", errors="surrogatepass")
        _loads_or_clean_error(lambda: recipe_for_run("resnet26-fm", out=folder, resume=True))


def _with(dotted: str, value: Any) -> dict[str, Any]:
    data = load_recipe("resnet26-fm").to_dict()
    *sections, key = dotted.split(".")
    target = data
    for section in sections:
        target = target[section]
    target[key] = value
    return data


def _loads_or_clean_error(load) -> None:
    try:
        recipe, run_dir = load()
    except CifarzooError as exc:
        assert "\n" not in str(exc).strip(), str(exc)  # the CLI prints it as one line
        return
    assert isinstance(recipe, Recipe)
    recipe.validate()
    if run_dir.parts[0] == "runs":  # no --out: the run stays inside runs/, one folder deep
        assert len(run_dir.parts) == 2 and run_dir.name not in ("", ".", ".."), run_dir

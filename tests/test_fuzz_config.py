"""Property-based tests (Hypothesis) for what a model folder feeds the loader: ``config.json`` as JSON values, as
text and as mutations of a valid config, and ``model.safetensors`` as random or half-valid bytes.

The property is always the same: the input loads, or it is refused with a :class:`CifarzooError` (a one-line
message); never any other exception, which the CLI would show as a traceback.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cifarzoo
from cifarzoo.config import ModelConfig
from cifarzoo.errors import CifarzooError
from cifarzoo.io.checkpoint import load_checkpoint
from cifarzoo.io.layout import CONFIG_NAME, WEIGHTS_NAME

# No example database: runs leave no .hypothesis/ folder behind, and every run draws afresh from the seed.
FAST = settings(database=None, deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
# Each example below builds a network (a fraction of a second on 2 cores): fewer of them.
SLOW = settings(database=None, deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture])

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)  # beyond float range: float() overflows
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def valid() -> dict[str, Any]:
    """A real config.json's content (resnet26-fm, 1x28x28, 10 classes)."""
    return cifarzoo.create_model("resnet26-fm").config.to_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A valid checkpoint folder, the source of the scratch folders below."""
    folder = tmp_path_factory.mktemp("fuzz") / "ckpt"
    cifarzoo.create_model("resnet26-fm").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, weights) -> Path:
    """One folder per test module that every example overwrites (examples run one after another): copying a
    16 MB checkpoint per example would cost more than the checks."""
    return Path(shutil.copytree(weights, tmp_path_factory.mktemp("scratch") / "ckpt"))


def loads_or_refuses(function, *args: Any) -> Any:
    """Call ``function``; a CifarzooError is a clean refusal (one line), anything else fails the test."""
    try:
        return function(*args)
    except CifarzooError as exc:
        assert "\n" not in str(exc), str(exc)
        return None


# ----------------------------------------------------------------------------------------------------------
# config.json


@FAST
@given(JSON_VALUES)
def test_any_json_value_is_a_config_or_a_config_error(data: Any) -> None:
    loads_or_refuses(ModelConfig.from_dict, data)


@FAST
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_is_a_config_or_a_config_error(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("text") / CONFIG_NAME
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    loads_or_refuses(ModelConfig.load, path)


# Values that broke or nearly broke real parsers: huge and nested numbers, odd types, hostile strings.
HOSTILE_TEXT = st.sampled_from([
    "1" * 5000, "-" + "9" * 4301, "1e999", "-1e999", "NaN", "Infinity", "[" * 3000 + "]" * 3000,
    "{" + '"a":' * 1 + "[" * 2000 + "]" * 2000 + "}", '"\\ud800"', '"\\u0000"', "1.5", "true", "null", "[]", "{}",
    '"' + "x" * 10_000 + '"', "0", "-1", "100001", "2147483648",
])


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value (dict keys and list indices)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:12]):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(data: Any, path: tuple, action: str, value: Any) -> Any:
    if not path:
        return value if action != "delete" else {}
    head, rest = path[0], path[1:]
    copy = dict(data) if isinstance(data, dict) else list(data)
    if rest:
        copy[head] = _mutate(copy[head], rest, action, value)
    elif action == "delete":
        del copy[head]
    elif action == "add" and isinstance(copy, dict):
        copy[f"{head}_extra"] = value
    else:
        copy[head] = value
    return copy


SPLICE = "\x00splice\x00"  # stands for raw text json.dumps cannot write (a 5,000-digit number, deep nesting)


@st.composite
def mutated_configs(draw, valid: dict[str, Any]) -> str:
    """config.json text: a valid config with one or two edits below the top level (a value replaced by any JSON
    value or by hostile raw text, a key deleted or added). The whole document replaced is the test above."""
    data: Any = valid
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(_paths(data)[1:] or [()]))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        data = _mutate(data, path, action, draw(JSON_VALUES | st.just(SPLICE)))
    try:
        text = json.dumps(data)
    except ValueError:  # an integer json itself refuses to write (over the digit limit)
        text = "{}"
    return text.replace(json.dumps(SPLICE), draw(HOSTILE_TEXT))


@SLOW
@given(data=st.data())
def test_a_mutated_config_loads_or_is_refused(valid, scratch, weights, data) -> None:
    text = data.draw(mutated_configs(valid))
    folder = scratch
    shutil.copyfile(weights / WEIGHTS_NAME, folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(text, encoding="utf-8")
    config = loads_or_refuses(ModelConfig.load, folder / CONFIG_NAME)
    model = loads_or_refuses(lambda: cifarzoo.load(folder, device="cpu"))
    if config is None:
        assert model is None  # a config the reader refuses never loads as a model
    if model is not None:
        assert model.config == config and model.net.fc.out_features == config.num_classes


# ----------------------------------------------------------------------------------------------------------
# model.safetensors


@FAST
@given(st.binary(max_size=512))
def test_random_bytes_as_weights_are_refused(scratch, weights, blob: bytes) -> None:
    shutil.copyfile(weights / CONFIG_NAME, scratch / CONFIG_NAME)
    (scratch / WEIGHTS_NAME).write_bytes(blob)
    assert loads_or_refuses(load_checkpoint, scratch) is None


SAFETENSORS_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
                      "C64", "U64", "X9"]


@st.composite
def safetensors_files(draw) -> bytes:
    """A structurally valid safetensors file (8-byte header length, JSON header, data) whose entries may lie:
    real key names with random dtypes, shapes and offsets, plus metadata and junk keys."""
    keys = ["fc.weight", "fc.bias", "stem.0.weight", "stem.1.num_batches_tracked", "extra.weight"]
    header: dict[str, Any] = {}
    offset = 0
    for key in draw(st.lists(st.sampled_from(keys), unique=True, max_size=5)):
        shape = draw(st.lists(st.integers(0, 12), max_size=3))
        size = draw(st.integers(0, 64))
        start = draw(st.sampled_from([offset, max(0, offset - 4), offset + 3]))
        header[key] = {"dtype": draw(st.sampled_from(SAFETENSORS_DTYPES)), "shape": shape,
                       "data_offsets": [start, start + size]}
        offset = start + size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=3))
    if draw(st.booleans()):
        header[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    encoded = json.dumps(header).encode()
    data = draw(st.binary(min_size=0, max_size=offset + 8))
    return struct.pack("<Q", len(encoded)) + encoded + data


@FAST
@given(safetensors_files())
def test_lying_safetensors_headers_are_refused(scratch, weights, blob: bytes) -> None:
    shutil.copyfile(weights / CONFIG_NAME, scratch / CONFIG_NAME)
    (scratch / WEIGHTS_NAME).write_bytes(blob)
    assert loads_or_refuses(load_checkpoint, scratch) is None


def test_a_header_that_quotes_a_line_break_is_still_a_one_line_error(scratch, weights) -> None:
    """Found by the property above: safetensors' complaint quotes the header's text, here a dtype made of a line
    break, and the message must stay one line (escaped), still naming the file."""
    header = b'{"fc.weight": {"dtype": "\\n", "shape": [], "data_offsets": [0, 0]}}'
    (scratch / WEIGHTS_NAME).write_bytes(struct.pack("<Q", len(header)) + header)
    try:
        with pytest.raises(CifarzooError) as refused:
            load_checkpoint(scratch)
    finally:
        shutil.copyfile(weights / WEIGHTS_NAME, scratch / WEIGHTS_NAME)
    message = str(refused.value)
    assert "\n" not in message and "\\n" in message and str(scratch / WEIGHTS_NAME) in message


@given(st.text())
def test_error_messages_are_one_line_whatever_they_quote(text: str) -> None:
    from cifarzoo.errors import one_line

    shown = str(CifarzooError(f"file.png: {text}"))
    assert len(shown.splitlines()) <= 1 and shown.isprintable()
    assert shown == f"file.png: {text}" or not text.isprintable()  # printable text is left exactly as it was
    assert one_line(shown) == shown


@SLOW
@given(st.sampled_from(["fc.weight", "fc.bias", "stem.1.running_var", "stem.1.num_batches_tracked"]),
       st.sampled_from([torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8, torch.uint8,
                        torch.bool, torch.complex64, torch.float8_e4m3fn]),
       st.sampled_from([0.0, float("nan"), float("inf"), 1e30]))
def test_real_tensors_of_any_dtype_and_value_load_or_are_refused(scratch, weights, key, dtype, fill) -> None:
    from safetensors.torch import load_file, save_file

    folder = scratch
    shutil.copyfile(weights / CONFIG_NAME, folder / CONFIG_NAME)
    state = load_file(str(weights / WEIGHTS_NAME))
    try:
        state[key] = torch.full_like(state[key], fill, dtype=torch.float64).to(dtype)
    except (RuntimeError, OverflowError):  # a fill the dtype cannot hold (NaN as an integer): not a file we can write
        assume(False)
    save_file(state, str(folder / WEIGHTS_NAME))
    loaded = loads_or_refuses(load_checkpoint, folder)
    if loaded is not None:  # what loads is a usable model: float weights where floats belong, all finite
        net, _ = loaded
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                assert tensor.dtype == torch.float32 and bool(torch.isfinite(tensor).all()), name
        # ... and the file's tensor was of the right kind: a float where a float belongs, an integer counter else.
        is_counter = key.endswith("num_batches_tracked")
        assert dtype not in (torch.bool, torch.complex64) and dtype.is_floating_point != is_counter

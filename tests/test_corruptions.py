"""The CIFAR-10-C corruptions: the batch contract for every corruption x severity, and a reference property each."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cifarzoo.data import corruptions as corr
from cifarzoo.data.corruptions import (
    CORRUPTIONS,
    RANDOM_CORRUPTIONS,
    SEVERITIES,
    corrupt_batch,
    parse_corruptions,
    parse_severities,
)
from cifarzoo.errors import ConfigError

CIFAR10_C_NAMES = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
GRID = [(name, severity) for name in CORRUPTIONS for severity in SEVERITIES]


def textured(n: int, side: int, channels: int, *, low: float = 50, span: float = 150) -> np.ndarray:
    """(n, side, side, channels) uint8: smooth gradients, a bright bar (an edge, moved per image), a fine texture."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1)
    images = []
    for k in range(n):
        base = np.stack([xx, yy, 1 - xx], -1)[..., :channels] * span + low
        base[side // 4 : side // 2, side // 4 + k : 3 * side // 4] += 0.4 * span
        base += rng.uniform(-0.27, 0.27, base.shape) * span
        images.append(base)
    return np.clip(np.stack(images), 0, 255).astype(np.uint8)


RGB32 = textured(8, 32, 3)
GRAY28 = textured(8, 28, 1)
for _batch in (RGB32, GRAY28):
    _batch.setflags(write=False)  # like a memory-mapped dataset: corruptions must copy, never write
BATCHES = {"rgb32": RGB32, "gray28": GRAY28}


def flat(level: int, shape: tuple[int, ...] = (4, 32, 32, 3)) -> np.ndarray:
    return np.full(shape, level, np.uint8)


def laplacian_energy(images: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian: the high-frequency energy a blur removes."""
    x = images.astype(np.float64)
    lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return float((lap**2).mean())


def mean_abs_change(before: np.ndarray, after: np.ndarray) -> float:
    return float(np.abs(after.astype(np.int64) - before.astype(np.int64)).mean())


def run_all(images: np.ndarray, name: str, *, seed: int = 0) -> list[np.ndarray]:
    return [corrupt_batch(images, name, severity, seed=seed) for severity in SEVERITIES]


# --- names and parsing -------------------------------------------------------------------------------------------


def test_names_and_order_are_cifar10c() -> None:
    assert CORRUPTIONS == CIFAR10_C_NAMES
    assert SEVERITIES == (1, 2, 3, 4, 5)
    assert set(corr._OPS) == set(CORRUPTIONS)
    assert set(CORRUPTIONS) > RANDOM_CORRUPTIONS


def test_parse_corruptions() -> None:
    assert parse_corruptions("all") == CORRUPTIONS
    assert parse_corruptions(" ALL ") == CORRUPTIONS
    assert parse_corruptions("fog,contrast") == ("fog", "contrast")
    assert parse_corruptions("Gaussian-Noise, fog,gaussian_noise") == ("gaussian_noise", "fog")


@pytest.mark.parametrize("spec", ["nope", "fog,nope", "", " , ", "all,fog", "gaussian"])
def test_parse_corruptions_rejects_with_one_line_listing_the_names(spec: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_corruptions(spec)
    message = str(err.value)
    assert "\n" not in message
    assert all(name in message for name in CORRUPTIONS) and "'all'" in message


def test_parse_severities() -> None:
    assert parse_severities("1-5") == (1, 2, 3, 4, 5)
    assert parse_severities("3") == (3,)
    assert parse_severities(3) == (3,)
    assert parse_severities("1,3") == (1, 3)
    assert parse_severities(" 5, 1-2 ,2") == (1, 2, 5)


@pytest.mark.parametrize("spec", ["0", "6", "1-6", "0-5", "5-1", "abc", "", "1,", "-1", "1-", "2.5", "1--3"])
def test_parse_severities_rejects_with_one_line_naming_the_range(spec: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_severities(spec)
    message = str(err.value)
    assert "\n" not in message and "1 to 5" in message and "1-5" in message


def test_corrupt_batch_rejects_bad_arguments() -> None:
    x = RGB32[:2]
    with pytest.raises(ConfigError, match="valid corruptions are gaussian_noise, shot_noise"):
        corrupt_batch(x, "blur", 1, seed=0)
    for severity in (0, 6, True, 2.0):
        with pytest.raises(ConfigError, match="valid severities are 1, 2, 3, 4, 5"):
            corrupt_batch(x, "fog", severity, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-negative"):
        corrupt_batch(x, "fog", 1, seed=-1)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) uint8"):
        corrupt_batch(x.astype(np.float32), "fog", 1, seed=0)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) uint8"):
        corrupt_batch(x[0], "fog", 1, seed=0)
    with pytest.raises(ValueError, match=r"C = 1 or 3"):
        corrupt_batch(np.zeros((1, 32, 32, 4), np.uint8), "fog", 1, seed=0)
    with pytest.raises(ValueError, match="at least 8x8"):
        corrupt_batch(np.zeros((1, 4, 32, 3), np.uint8), "fog", 1, seed=0)
    assert corrupt_batch(x[:0], "fog", 1, seed=0).shape == (0, 32, 32, 3)


def test_import_is_light() -> None:
    """The module loads without scipy (imported when a corruption runs) and without torch."""
    code = "import sys, cifarzoo.data.corruptions; print(sorted({'scipy', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the contract, for every corruption x severity ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BATCHES))
@pytest.mark.parametrize(("name", "severity"), GRID)
def test_contract(name: str, severity: int, kind: str) -> None:
    x = BATCHES[kind]
    before = x.copy()
    out = corrupt_batch(x, name, severity, seed=11)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert np.array_equal(x, before), "the input must not be modified"
    assert not np.array_equal(out, x), "the corruption must change the images"
    # deterministic for a seed
    assert np.array_equal(corrupt_batch(x, name, severity, seed=11), out)
    # batch-size independent: one batch of 8 == 8 batches of 1 == batches of 3 + 5
    singles = [corrupt_batch(x[i : i + 1], name, severity, seed=11, start_index=i) for i in range(len(x))]
    assert np.array_equal(np.concatenate(singles), out)
    split = [
        corrupt_batch(x[:3], name, severity, seed=11),
        corrupt_batch(x[3:], name, severity, seed=11, start_index=3),
    ]
    assert np.array_equal(np.concatenate(split), out)
    other_seed = corrupt_batch(x, name, severity, seed=12)
    other_position = corrupt_batch(x[:1], name, severity, seed=11, start_index=5)
    if name in RANDOM_CORRUPTIONS:
        assert not np.array_equal(other_seed, out), "another seed must give other draws"
        assert not np.array_equal(other_position, out[:1]), "each position in the stream must have its own draws"
    else:
        assert np.array_equal(other_seed, out) and np.array_equal(other_position, out[:1])


@pytest.mark.parametrize("shape", [(2, 24, 40, 3), (2, 64, 64, 1), (1, 8, 8, 3)])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_other_sizes(name: str, shape: tuple[int, int, int, int]) -> None:
    x = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    out = corrupt_batch(x, name, 5, seed=1)
    assert out.shape == shape and out.dtype == np.uint8
    assert np.array_equal(corrupt_batch(x[1:], name, 5, seed=1, start_index=1), out[1:])


# --- reference properties ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", SEVERITIES)
def test_gaussian_noise_std_on_mid_gray(severity: int) -> None:
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    residual = corrupt_batch(flat(128), "gaussian_noise", severity, seed=0).astype(np.float64) - 128
    assert residual.std() == pytest.approx(c * 255, rel=0.03)
    assert abs(residual.mean() + 0.5) < 0.5  # zero-mean noise, less the truncation's half level


@pytest.mark.parametrize("severity", SEVERITIES)
def test_shot_noise_variance_grows_with_intensity(severity: int) -> None:
    photons = (500, 250, 100, 75, 50)[severity - 1]
    variances = {}
    for level in (32, 96):
        out = corrupt_batch(flat(level), "shot_noise", severity, seed=0).astype(np.float64)
        variances[level] = out.var()
        # Poisson: variance = mean / photons in [0, 1] units, i.e. 255 * level / photons in pixel units
        assert out.var() == pytest.approx(255 * level / photons, rel=0.08)
    assert variances[96] / variances[32] == pytest.approx(3, rel=0.12)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_impulse_noise_fraction(severity: int) -> None:
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    out = corrupt_batch(flat(128, (8, 32, 32, 3)), "impulse_noise", severity, seed=0)
    salt, pepper = (out == 255).mean(), (out == 0).mean()
    assert salt + pepper == pytest.approx(amount, rel=0.15)
    assert salt == pytest.approx(pepper, rel=0.35)
    assert np.all((out == 128) | (out == 0) | (out == 255))  # the rest untouched


@pytest.mark.parametrize("kind", sorted(BATCHES))
@pytest.mark.parametrize("name", ["defocus_blur", "motion_blur", "zoom_blur", "glass_blur", "pixelate"])
def test_blurs_remove_high_frequencies(name: str, kind: str) -> None:
    x = BATCHES[kind]
    clean = laplacian_energy(x)
    energies = [laplacian_energy(out) for out in run_all(x, name)]
    assert max(energies) < 0.95 * clean, energies
    assert energies[-1] < energies[0]
    if name in ("zoom_blur", "pixelate"):  # deterministic and strictly stronger with severity
        assert all(b < a for a, b in zip(energies, energies[1:])), energies


def test_motion_blur_kernel_is_imagemagicks_one_sided_line() -> None:
    weights, rows, cols = corr._motion_taps(6, 1.0, 0.0)
    assert len(weights) == 13 and weights.sum() == pytest.approx(1)
    assert np.allclose(weights[1] / weights[0], np.exp(-0.5)) and np.all(np.diff(weights) < 0)
    assert rows.tolist() == [0] * 13 and cols.tolist() == list(range(13))
    _, rows, cols = corr._motion_taps(6, 1.0, 90.0)
    assert rows.tolist() == list(range(13)) and cols.tolist() == [0] * 13
    # A single bright pixel smears to one side only (the kernel looks ahead along the angle).
    dot = np.zeros((1, 9, 21, 1))
    dot[0, 4, 14] = 255
    out = corr._motion_blur_batch(dot, 6, 2.0, [0.0])[0, ..., 0]
    assert out[4, 15:].max() == 0 and out[4, :14].max() > 0 and np.all(out[[0, 1, 2, 3, 5, 6, 7, 8]] == 0)
    assert out.sum() == pytest.approx(255)


def test_glass_shuffle_vectorised_equals_the_sequential_loop() -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    offsets = corr._glass_offsets(rng, 32, 32, 1)
    assert set(np.unique(offsets)) == {-1, 0}  # as randint(-1, 1): the reference never moves right or down
    assert np.array_equal(corr._glass_shuffle(image, offsets, 1), corr._glass_shuffle_sequential(image, offsets, 1))
    # With delta 2 the loop reads pixels it already wrote, so a one-shot gather would differ: the loop is kept.
    offsets = corr._glass_offsets(rng, 32, 32, 2)
    rows = np.arange(30, 2, -1)[:, None]
    cols = np.arange(30, 2, -1)[None, :]
    gathered = image.copy()
    gathered[rows, cols] = image[rows + offsets[..., 1], cols + offsets[..., 0]]
    sequential = corr._glass_shuffle_sequential(image, offsets, 2)
    assert not np.array_equal(gathered, sequential)
    assert np.array_equal(corr._glass_shuffle(image, offsets, 2), sequential)


@pytest.mark.parametrize("kind", sorted(BATCHES))
@pytest.mark.parametrize("severity", SEVERITIES)
def test_contrast_shrinks_the_range_around_the_mean(severity: int, kind: str) -> None:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = BATCHES[kind].astype(np.float64)
    out = corrupt_batch(BATCHES[kind], "contrast", severity, seed=0).astype(np.float64)
    means_in, means_out = x.mean(axis=(1, 2)), out.mean(axis=(1, 2))
    assert np.all(np.abs(means_out - means_in + 0.5) < 0.6)  # per image and channel, less truncation
    deviation_in = x - means_in[:, None, None]
    deviation_out = out - means_out[:, None, None]
    assert np.abs(deviation_out - c * deviation_in).max() < 1.01


@pytest.mark.parametrize("severity", SEVERITIES)
def test_brightness_raises_hsv_value(severity: int) -> None:
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    for x in (RGB32, GRAY28):
        out = corrupt_batch(x, "brightness", severity, seed=0).astype(np.float64)
        value_in, value_out = x.max(axis=-1).astype(np.float64), out.max(axis=-1)
        assert np.abs(value_out - np.minimum(value_in + c * 255, 255)).max() <= 1.0
        assert out.mean() > x.mean() + 0.5 * c * 255
    # RGB keeps hue and saturation: channel ratios are kept (where nothing clips)
    rgb = np.array([[[[40, 80, 120]]]], np.uint8).repeat(8, 1).repeat(8, 2)
    out = corrupt_batch(rgb, "brightness", severity, seed=0)[0, 0, 0].astype(np.float64)
    assert out / out[2] == pytest.approx(np.array([40, 80, 120]) / 120, abs=0.01)
    black = corrupt_batch(np.zeros((1, 8, 8, 3), np.uint8), "brightness", severity, seed=0)
    assert np.all(black == int(c * 255))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_jpeg_is_pils_round_trip(severity: int) -> None:
    quality = (80, 65, 58, 50, 40)[severity - 1]
    for x in (RGB32, GRAY28):
        out = corrupt_batch(x, "jpeg_compression", severity, seed=0)
        for image, got in zip(x, out):
            buffer = io.BytesIO()
            Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buffer, "JPEG", quality=quality)
            expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
            assert np.array_equal(got, expected.reshape(image.shape))


def test_pixelate_is_blocky() -> None:
    for x in (RGB32, GRAY28):
        outs = run_all(x, "pixelate")
        # share of horizontally adjacent pixels that are equal: next to none on the texture, and growing
        equal = [float((out[:, :, 1:] == out[:, :, :-1]).mean()) for out in [x, *outs]]
        assert equal[0] < 0.05 and equal[-1] > 0.25 and all(b >= a for a, b in zip(equal, equal[1:])), equal
        # the mean colour is kept (box filters average)
        assert all(abs(out.mean() - x.mean()) < 1 for out in outs)


@pytest.mark.parametrize("name", ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "elastic_transform", "fog"])
def test_spatial_corruptions_keep_a_flat_image(name: str) -> None:
    """Blurs and warps only move or average pixels: a constant image stays constant (fog: its peak is restored)."""
    for shape in ((2, 32, 32, 3), (2, 28, 28, 1)):
        for out in run_all(flat(140, shape), name):
            assert np.abs(out.astype(np.int64) - 140).max() <= 1 if name != "fog" else out.max() <= 140


@pytest.mark.parametrize("name", ["zoom_blur", "elastic_transform", "glass_blur"])
def test_geometric_corruptions_move_pixels_but_keep_the_mean(name: str) -> None:
    for x in (RGB32, GRAY28):
        for out in run_all(x, name):
            assert mean_abs_change(x, out) > 5
            assert abs(float(out.mean()) - float(x.mean())) < 8


def test_snow_only_whitens() -> None:
    x = textured(8, 32, 3, low=20, span=90)
    means = []
    for out in run_all(x, "snow"):
        assert np.all(out.astype(np.int64) >= x.astype(np.int64) - 1)  # snow and its glare only add light
        means.append(float(out.mean()))
    assert all(m > x.mean() + 5 for m in means) and means[-1] > means[0]


def test_frost_brightens_a_dark_image() -> None:
    for x in (textured(8, 32, 3, low=10, span=80), textured(8, 28, 1, low=10, span=80)):
        for severity, out in zip(SEVERITIES, run_all(x, "frost")):
            assert out.mean() > x.mean() + 10, severity
            if severity <= 2:  # the image is kept at full weight: frost only adds
                assert np.all(out >= x)


def test_fog_lifts_the_background_and_flattens() -> None:
    x = GRAY28.copy()
    x[:, :, :6] = 0  # a black band, like Fashion-MNIST's background
    outs = run_all(x, "fog")
    for out in outs:
        assert out[:, :, :6].mean() > 5  # fog lies over the background
        assert np.all(out.max(axis=(1, 2, 3)) <= x.max(axis=(1, 2, 3)))  # the peak is normalised back
    assert laplacian_energy(outs[-1]) < 0.5 * laplacian_energy(x)


@pytest.mark.parametrize("kind", sorted(BATCHES))
@pytest.mark.parametrize(
    "name",
    [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "zoom_blur",
        "contrast",
        "brightness",
        "pixelate",
        "fog",
        "snow",
    ],
)
def test_severity_is_monotonic(name: str, kind: str) -> None:
    x = BATCHES[kind]
    changes = [mean_abs_change(x, out) for out in run_all(x, name)]
    assert all(b > a for a, b in zip(changes, changes[1:])), changes

"""The 15 CIFAR-10-C corruptions at severities 1-5, on batches of uint8 images. numpy, scipy.ndimage and PIL only.

The parameters are the 32x32 ones of Hendrycks & Dietterich's ``make_cifar_c.py`` (the script that made CIFAR-10-C),
reimplemented without OpenCV, ImageMagick (wand) or scikit-image. Applied to CIFAR-10's test set at 32x32 this makes
CIFAR-10-C, up to the random draws and the deviations listed below.

The API, for ``cifarzoo eval --corruptions ... --severity ...``::

    names = parse_corruptions("all")          # or "gaussian_noise,fog"; ConfigError on an unknown name
    levels = parse_severities("1-5")          # or "3", "1,3"; ConfigError outside 1-5
    for name in names:
        for severity in levels:
            for start, batch in batches:      # (N, H, W, C) uint8, C = 1 or 3
                out = corrupt_batch(batch, name, severity, seed=seed, start_index=start)

Determinism: image ``i`` of a stream gets its own generator, seeded from ``(seed, name, severity, start_index + i)``
through :class:`numpy.random.SeedSequence`, so the output does not depend on how the stream is cut into batches.

Other sizes: the parameters are for 32x32. For an image whose shorter side is ``side``, the spatial parameters are
scaled by ``side / 32``: blur radii and sigmas (defocus, glass, motion), the elastic displacement, affine jitter and
smoothing (which the reference already writes as fractions of the image size), the fog map (a plasma fractal as large
as the image) and the snow layer (drawn at the 32x32 geometry, then resized). Zoom factors and the pixelate factor are
already relative to the image size. For grayscale (C = 1) every operation applies to the single channel: brightness
shifts HSV's value, which for gray is the pixel itself; snow's "grayscale" term is the image itself.

Deviations from ``make_cifar_c.py`` (beyond the random draws, which no port can reproduce):

- frost: the reference blends crops of six frost photographs, which we do not ship. A frost texture is synthesised
  procedurally from the image's generator (ridged plasma fractals, tinted ice blue); the blend coefficients are theirs.
- motion blur (and snow's streaks): ImageMagick's ``MotionBlurImage`` is rebuilt as its one-sided, Gaussian-weighted
  line kernel (``2*ceil(radius)+1`` taps, weight ``exp(-i^2 / 2 sigma^2)``, tap ``i`` at
  ``(round(i cos a), round(i sin a))``, edge pixels repeated) applied with numpy, brought to uint8 as ImageMagick's
  Q16 build does. Checked against ImageMagick 6.9 (wand) with the same angles: identical output.
- defocus blur: OpenCV's ``filter2D`` / ``GaussianBlur`` become ``scipy.ndimage`` with ``mode="mirror"`` (OpenCV's
  default BORDER_REFLECT_101). At sizes other than 32 the disk is area-sampled rather than thresholded on the
  integer grid: a thresholded disk of a scaled radius jumps in steps (at 28x28, severity 4's radius 0.875 would
  cover one pixel and blur less than severity 3).
- glass blur: the reference's "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` acts on numpy views, so it is a
  copy (``x[h, w] = x[h', w']``); CIFAR-10-C was made with that, and so is this. For ``max_delta = 1`` (every size
  below 48 pixels) the sequential loop equals one vectorised gather; larger deltas keep the sequential loop.
- elastic transform: OpenCV's ``getAffineTransform`` / ``warpAffine`` (bilinear, BORDER_REFLECT_101) become a
  3-point solve and ``scipy.ndimage.affine_transform`` with ``mode="mirror"``.
- impulse noise follows scikit-image's ``random_noise(mode="s&p")``: each value (per channel) is replaced with
  probability ``amount``, half by 0 and half by 255.
- brightness: scikit-image's RGB -> HSV -> RGB round trip with V raised by ``c`` is computed in closed form: with hue
  and saturation fixed, RGB is proportional to V, so each pixel is scaled by ``V' / V`` (black becomes gray ``c``).
- like CIFAR-10-C (``np.uint8(...)``), float results are truncated, not rounded, to uint8.

Checked against make_cifar_c.py itself (OpenCV 4, scikit-image 0.26, ImageMagick 6.9), fed the same random draws, on
32x32 RGB images: gaussian and shot noise, glass and motion and zoom blur, fog, contrast, pixelate and JPEG give
identical bytes; defocus, snow and elastic differ by one level on under 0.03% of the values; brightness on up to 5%
(the reference's float HSV round trip lands just below an integer, which truncation turns into one level less).
Impulse noise (scikit-image draws from its own generator) and frost (no photos) have no byte-level counterpart.
"""

from __future__ import annotations

import io
import math
import zlib
from types import MappingProxyType, ModuleType
from typing import Callable, Literal, Mapping, Sequence, get_args

import numpy as np
from PIL import Image

from cifarzoo.errors import ConfigError

__all__ = [
    "CORRUPTIONS",
    "RANDOM_CORRUPTIONS",
    "SEVERITIES",
    "CorruptionName",
    "check_seed",
    "corrupt_batch",
    "parse_corruptions",
    "parse_severities",
]

CorruptionName = Literal[
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
]
# CIFAR-10-C's names, in its order (the order of its .npy files and of the paper's tables).
CORRUPTIONS: tuple[CorruptionName, ...] = get_args(CorruptionName)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
# The corruptions that draw random numbers (the others ignore the seed).
RANDOM_CORRUPTIONS: frozenset[CorruptionName] = frozenset(
    {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "snow",
        "frost",
        "fog",
        "elastic_transform",
    }
)

REFERENCE_SIDE = 32  # the image side make_cifar_c.py's parameters are for
MIN_SIDE = 8  # below this the spatial operations (elastic's affine square, glass's shuffle window) degenerate


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def parse_corruptions(spec: str) -> tuple[CorruptionName, ...]:
    """``"all"`` or a comma-separated list of names -> the corruptions, in the order given, without repeats.

    Names are case-insensitive and may use ``-`` for ``_`` (``Gaussian-Noise``). Raises :class:`ConfigError` with
    one line listing the valid names for anything else.
    """
    items = [_normalise_name(item) for item in spec.split(",") if item.strip()]
    if items == ["all"]:
        return CORRUPTIONS
    chosen: list[CorruptionName] = []
    for item in items:
        name = _lookup(item)
        if name is None:
            raise ConfigError(f"unknown corruption {item!r}: use 'all' or a comma-separated list of {_valid_names()}")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ConfigError(f"no corruption given: use 'all' or a comma-separated list of {_valid_names()}")
    return tuple(chosen)


def check_seed(seed: object) -> int:
    """``seed`` as an int, or a one-line :class:`ConfigError` unless it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"invalid seed {seed!r}: the corruption seed must be a non-negative integer")
    return int(seed)


def parse_severities(spec: str | int) -> tuple[int, ...]:
    """``"1-5"``, ``"3"`` or ``"1,3"`` (items may mix, ``"1-2,5"``) -> sorted severities without repeats.

    Raises :class:`ConfigError` with one line naming the valid severities for anything outside 1-5 or unparsable.
    """
    text = str(spec).strip()
    usage = f"invalid severity {text!r}: use a level from 1 to 5, a range such as 1-5, or a list such as 1,3"
    levels: set[int] = set()
    items = [item.strip() for item in text.split(",")]
    if not text or any(not item for item in items):
        raise ConfigError(usage)
    for item in items:
        low_text, sep, high_text = item.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if sep else low
        except ValueError:
            raise ConfigError(usage) from None
        if low > high or low not in SEVERITIES or high not in SEVERITIES:
            raise ConfigError(usage)
        levels.update(range(low, high + 1))
    return tuple(sorted(levels))


def corrupt_batch(
    images: np.ndarray, name: CorruptionName | str, severity: int, *, seed: int, start_index: int = 0
) -> np.ndarray:
    """Apply one corruption at one severity to a batch of images, deterministically.

    Args:
        images: ``(N, H, W, C)`` uint8, C = 1 (grayscale) or 3 (RGB), H and W at least 8. Not modified.
        name: one of :data:`CORRUPTIONS`.
        severity: 1-5.
        seed: a non-negative integer; with ``name``, ``severity`` and the image's position it fixes every draw.
        start_index: the position of ``images[0]`` in the whole stream; image ``i`` draws from its own generator
            seeded by ``(seed, name, severity, start_index + i)``, so any batching of a stream gives the same output.

    Returns:
        A new ``(N, H, W, C)`` uint8 array.
    """
    key = _lookup(_normalise_name(str(name)))
    if key is None:
        raise ConfigError(f"unknown corruption {name!r}: valid corruptions are {_valid_names()}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or int(severity) not in SEVERITIES:
        raise ConfigError(f"invalid severity {severity!r}: valid severities are 1, 2, 3, 4, 5")
    check_seed(seed)
    if start_index < 0:
        raise ValueError(f"start_index must be >= 0, got {start_index}")
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[3] not in (1, 3)
    ):
        shape = getattr(images, "shape", None)
        raise ValueError(f"images must be an (N, H, W, C) uint8 array with C = 1 or 3, got {shape}")
    if min(images.shape[1:3]) < MIN_SIDE:
        raise ValueError(f"images must be at least {MIN_SIDE}x{MIN_SIDE} to corrupt, got {images.shape[1:3]}")
    if len(images) == 0:
        return images.copy()
    level = int(severity)
    rngs: list[np.random.Generator] = []
    if key in RANDOM_CORRUPTIONS:
        name_key = zlib.crc32(key.encode())  # stable across runs and Python versions, unlike hash()
        rngs = [
            np.random.default_rng(np.random.SeedSequence([int(seed), name_key, level, start_index + i]))
            for i in range(len(images))
        ]
    out = _OPS[key](images, level, rngs)
    assert out.shape == images.shape and out.dtype == np.uint8, (key, out.shape, out.dtype)
    return out


def _normalise_name(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(" ", "_")


def _lookup(text: str) -> CorruptionName | None:
    for name in CORRUPTIONS:
        if name == text:
            return name
    return None


def _valid_names() -> str:
    return ", ".join(CORRUPTIONS)


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------

_Op = Callable[[np.ndarray, int, Sequence[np.random.Generator]], np.ndarray]


def _ndi() -> ModuleType:
    # scipy.ndimage takes ~0.3 s to import: only the corruptions that use it pay for it, when they first run.
    import scipy.ndimage

    return scipy.ndimage


def _to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float64) / 255.0


def _to_uint8(x01: np.ndarray) -> np.ndarray:
    # Truncation, like make_cifar_c.py's np.uint8(...) on its [0, 255] floats.
    return (np.clip(x01, 0.0, 1.0) * 255.0).astype(np.uint8)


def _scale(images: np.ndarray) -> float:
    return min(images.shape[1:3]) / REFERENCE_SIDE


def _gray(x01: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, H, W, 1) luma (ITU-R 601 weights, as OpenCV's RGB2GRAY)."""
    if x01.shape[-1] == 1:
        return x01
    return (x01 @ np.array([0.299, 0.587, 0.114]))[..., None]


def _zoom_hw(batch: np.ndarray, factor_h: float, factor_w: float, **options: object) -> np.ndarray:
    """``scipy.ndimage.zoom`` of each (H, W, C) image of an (N, H, W, C) batch, bilinear, in one call.

    The images and channels are stacked on the last, unzoomed axis: ~2x faster than a 4-D zoom with factors of 1
    on the batch and channel axes, which still interpolates along them.
    """
    n, h, w, c = batch.shape
    stacked = np.moveaxis(batch, 0, 2).reshape(h, w, n * c)
    zoomed = _ndi().zoom(stacked, (factor_h, factor_w, 1), order=1, **options)
    return np.moveaxis(zoomed.reshape(zoomed.shape[0], zoomed.shape[1], n, c), 2, 0)


def _clipped_zoom(batch: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of each (N, H, W, C) image by ``factor`` >= 1 (bilinear) and crop back to H x W."""
    _, h, w, _ = batch.shape
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = _zoom_hw(batch[:, top : top + ch, left : left + cw], factor, factor)
    trim_top, trim_left = (zoomed.shape[1] - h) // 2, (zoomed.shape[2] - w) // 2
    return zoomed[:, trim_top : trim_top + h, trim_left : trim_left + w]


def _plasma_fractals(rngs: Sequence[np.random.Generator], mapsize: int, wibbledecay: float) -> np.ndarray:
    """(N, mapsize, mapsize) diamond-square heightmaps in [0, 1], one per generator; ``mapsize`` a power of two.

    make_cifar_c.py's generator: the random offset at each level is ``wibble * U(-wibble, wibble)``, and ``wibble``
    shrinks by ``wibbledecay`` per octave (a smaller decay keeps more fine detail). Each map draws from its own
    generator only, in the same order whatever the batch; the arithmetic runs on the whole batch at once.
    """
    grid = np.empty((len(rngs), mapsize, mapsize), dtype=np.float64)
    grid[:, 0, 0] = 0.0
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        noise = np.stack([rng.uniform(-wibble, wibble, total.shape[1:]) for rng in rngs])
        return total / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        # squares: each square's centre is the mean of its corners
        corners = grid[:, 0:mapsize:step, 0:mapsize:step]
        square = corners + np.roll(corners, shift=-1, axis=1)
        square += np.roll(square, shift=-1, axis=2)
        grid[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(square)
        # diamonds: each edge midpoint is the mean of its two corners and two square centres
        centres = grid[:, half:mapsize:step, half:mapsize:step]
        corners = grid[:, 0:mapsize:step, 0:mapsize:step]
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        grid[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(top)
        left = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        grid[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(left)
        step //= 2
        wibble /= wibbledecay
    grid -= grid.min(axis=(1, 2), keepdims=True)
    return grid / grid.max(axis=(1, 2), keepdims=True)


def _power_of_two_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _motion_taps(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ImageMagick's motion-blur kernel: (weights, row offsets, column offsets) of its one-sided line of taps."""
    width = 2 * math.ceil(radius) + 1
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    theta = math.radians(angle)
    # ImageMagick rounds the offsets with ceil(v - 0.5), i.e. halves round down.
    rows = np.ceil(i * math.sin(theta) - 0.5).astype(np.intp)
    cols = np.ceil(i * math.cos(theta) - 0.5).astype(np.intp)
    return weights, rows, cols


def _motion_blur_batch(batch: np.ndarray, radius: float, sigma: float, angles: Sequence[float]) -> np.ndarray:
    """Motion-blur each (H, W, C) image of a float batch along its own angle; edge pixels repeat beyond the border.

    This is the correlation of each image with its line kernel (mode "nearest"), computed as a weighted sum of
    shifted copies: the kernel has only ``2*ceil(radius)+1`` non-zero taps in a (2r+1)^2 square, so gathering the
    taps costs a fraction of a dense 2-D correlation.
    """
    n, h, w, _ = batch.shape
    taps = [_motion_taps(radius, sigma, angle) for angle in angles]
    weights = np.stack([t[0] for t in taps])  # (N, T)
    row_off = np.stack([t[1] for t in taps])
    col_off = np.stack([t[2] for t in taps])
    image_index = np.arange(n)[:, None, None]
    out = np.zeros_like(batch, dtype=np.float64)
    for t in range(weights.shape[1]):
        rows = np.clip(np.arange(h)[None, :] + row_off[:, t, None], 0, h - 1)  # (N, H)
        cols = np.clip(np.arange(w)[None, :] + col_off[:, t, None], 0, w - 1)  # (N, W)
        out += weights[:, t, None, None, None] * batch[image_index, rows[:, :, None], cols[:, None, :]]
    return out


def _imagemagick_to_uint8(values: np.ndarray) -> np.ndarray:
    """ImageMagick's (Q16) rounding of a [0, 255] float result: to its 16-bit quantum, then truncated to 8 bits.

    Checked against ImageMagick 6.9 through wand: this matches its motion blur's 8-bit output exactly, where plain
    rounding is off by one on half the pixels.
    """
    quantum = np.floor(np.clip(values, 0.0, 255.0) * 257.0 + 0.5)
    return np.floor(quantum / 257.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# The corruptions: each takes (N, H, W, C) uint8, a severity and one generator per image, and returns uint8.
# ---------------------------------------------------------------------------------------------------------------


def _gaussian_noise(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    noise = np.stack([rng.normal(scale=c, size=images.shape[1:]) for rng in rngs])
    return _to_uint8(_to_float(images) + noise)


def _shot_noise(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    c = (500, 250, 100, 75, 50)[severity - 1]  # photons at full intensity
    x01 = _to_float(images)
    return _to_uint8(np.stack([rng.poisson(x * c) for rng, x in zip(rngs, x01)]) / c)


def _impulse_noise(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    out = images.copy()
    for image, rng in zip(out, rngs):
        flipped = rng.random(image.shape) <= amount
        salted = rng.random(image.shape) <= 0.5
        image[flipped & salted] = 255
        image[flipped & ~salted] = 0
    return out


def _disk_kernel(radius: float, alias_blur: float, *, on_grid: bool) -> np.ndarray:
    """make_cifar_c.py's defocus kernel: a normalised disk, smoothed by a small Gaussian against aliasing.

    ``on_grid`` keeps the reference's disk (pixels whose centre lies within ``radius``); otherwise each pixel is
    weighted by the fraction of it the disk covers (8x8 samples), which grows smoothly with the radius.
    """
    half = 8 if radius <= 8 else math.ceil(radius)
    taps = 3 if radius <= 8 else 5
    coords = np.arange(-half, half + 1, dtype=np.float64)
    if on_grid:
        yy, xx = np.meshgrid(coords, coords, indexing="ij")
        disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    else:
        sub = (np.arange(8) + 0.5) / 8 - 0.5
        fine = (coords[:, None] + sub[None, :]).ravel()
        yy, xx = np.meshgrid(fine, fine, indexing="ij")
        size = len(coords)
        disk = (xx**2 + yy**2 <= radius**2).reshape(size, 8, size, 8).mean(axis=(1, 3))
        if disk.sum() == 0:  # a disk smaller than one sample: a point
            disk[half, half] = 1.0
    disk /= disk.sum()
    # OpenCV's GaussianBlur(ksize=taps, sigmaX=alias_blur) on the kernel: separable, BORDER_REFLECT_101.
    g = np.exp(-((np.arange(taps) - taps // 2) ** 2) / (2.0 * alias_blur**2))
    g /= g.sum()
    ndi = _ndi()
    kernel = ndi.correlate1d(ndi.correlate1d(disk, g, axis=0, mode="mirror"), g, axis=1, mode="mirror")
    # The reference builds its kernel in float32; rounding it the same way keeps the outputs' truncation in step.
    kernel = kernel.astype(np.float32).astype(np.float64)
    # Drop all-zero border rows/columns (the kernel is symmetric): zero taps change nothing, and cost time.
    nonzero = np.flatnonzero(kernel.any(axis=0) | kernel.any(axis=1))
    margin = min(int(nonzero[0]), len(coords) - 1 - int(nonzero[-1]))
    return kernel[margin : len(coords) - margin, margin : len(coords) - margin]


def _defocus_blur(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    s = _scale(images)
    kernel = _disk_kernel(radius * s, alias_blur * s, on_grid=s == 1)
    # OpenCV's filter2D per channel with BORDER_REFLECT_101 = scipy's "mirror"; the kernel spans H and W only.
    out = _ndi().correlate(_to_float(images), kernel[None, :, :, None], mode="mirror")
    return _to_uint8(out)


def _glass_offsets(rng: np.random.Generator, h: int, w: int, delta: int) -> np.ndarray:
    """One pass's random (dx, dy) for positions h-delta..delta+1 (rows) x w-delta..delta+1 (columns), in loop order."""
    return rng.integers(-delta, delta, size=(h - 2 * delta, w - 2 * delta, 2))


def _glass_shuffle_sequential(image: np.ndarray, offsets: np.ndarray, delta: int) -> np.ndarray:
    """make_cifar_c.py's loop as it behaves on numpy arrays: ``x[h, w] = x[h + dy, w + dx]``, rows and columns from
    the bottom right, each step seeing the earlier ones."""
    out = image.copy()
    h, w = image.shape[:2]
    for i, row in enumerate(range(h - delta, delta, -1)):
        for j, col in enumerate(range(w - delta, delta, -1)):
            dx, dy = offsets[i, j]
            out[row, col] = out[row + dy, col + dx]
    return out


def _glass_shuffle(image: np.ndarray, offsets: np.ndarray, delta: int) -> np.ndarray:
    """The loop of :func:`_glass_shuffle_sequential`, vectorised where that changes nothing.

    With delta = 1 the offsets are -1 or 0, so each source pixel lies above or left of its target: the loop, which
    walks from the bottom right, has not written it yet. Every step then reads an original pixel, and the loop is
    one gather. Larger deltas reach pixels already written, so they keep the loop.
    """
    if delta != 1:
        return _glass_shuffle_sequential(image, offsets, delta)
    h, w = image.shape[:2]
    rows = np.arange(h - delta, delta, -1)[:, None]
    cols = np.arange(w - delta, delta, -1)[None, :]
    out = image.copy()
    out[rows, cols] = image[rows + offsets[..., 1], cols + offsets[..., 0]]
    return out


def _glass_blur(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    sigma, delta, iterations = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[severity - 1]
    s = _scale(images)
    sigma, delta = sigma * s, max(1, round(delta * s))
    _, h, w, _ = images.shape
    ndi = _ndi()
    # scikit-image's gaussian(..., multichannel=True): per channel, mode "nearest", truncate 4.
    blur = (0, sigma, sigma, 0)
    shuffled = _to_uint8(ndi.gaussian_filter(_to_float(images), sigma=blur, mode="nearest", truncate=4.0))
    for k, rng in enumerate(rngs):
        for _ in range(iterations):
            shuffled[k] = _glass_shuffle(shuffled[k], _glass_offsets(rng, h, w, delta), delta)
    return _to_uint8(ndi.gaussian_filter(_to_float(shuffled), sigma=blur, mode="nearest", truncate=4.0))


def _motion_blur(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    s = _scale(images)
    angles = [rng.uniform(-45, 45) for rng in rngs]
    out = _motion_blur_batch(images.astype(np.float64), radius * s, sigma * s, angles)
    return _imagemagick_to_uint8(out)


def _zoom_blur(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    # np.arange with a float step, as the reference: 7, 12, 16, 21 and 26 zoom factors (1.06 and 1.11 included).
    stop = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    factors = np.arange(1, stop, 0.01)
    x01 = _to_float(images).astype(np.float32)
    total = np.zeros_like(x01)
    for factor in factors:
        total += _clipped_zoom(x01, float(factor))
    return _to_uint8((x01 + total) / (len(factors) + 1))


def _snow(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    loc, spread, zoom, threshold, radius, sigma, keep = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[severity - 1]
    _, h, w, _ = images.shape
    s = _scale(images)
    # The snow layer is made at the 32x32 geometry (flake size, streak length) and resized to the image.
    h0, w0 = round(h / s), round(w / s)
    flakes = np.stack([rng.normal(loc=loc, scale=spread, size=(h0, w0)) for rng in rngs])[..., None]
    flakes = _clipped_zoom(flakes, zoom)
    flakes[flakes < threshold] = 0
    # The reference streaks the layer as an 8-bit image with ImageMagick.
    layer_u8 = _to_uint8(flakes).astype(np.float64)
    angles = [rng.uniform(-135, -45) for rng in rngs]
    layer = _imagemagick_to_uint8(_motion_blur_batch(layer_u8, radius, sigma, angles)) / 255.0
    if (h0, w0) != (h, w):
        layer = _zoom_hw(layer, h / h0, w / w0, grid_mode=True, mode="nearest")
    x01 = _to_float(images)
    x01 = keep * x01 + (1 - keep) * np.maximum(x01, _gray(x01) * 1.5 + 0.5)
    return _to_uint8(x01 + layer + np.rot90(layer, k=2, axes=(1, 2)))


# Frost is ice blue-white: the tint of the synthetic texture for RGB (and its luma for grayscale).
_FROST_TINT = np.array([0.86, 0.93, 1.0])


def _frost_textures(rngs: Sequence[np.random.Generator], h: int, w: int) -> np.ndarray:
    """Synthetic frost layers in [0, 1], (N, h, w), in place of make_cifar_c.py's frost photographs.

    Ice crystals are thin bright veins over a fine grain: the veins are the ridges (``1 - |2p - 1|``, sharpened) of
    two plasma fractals, one coarse and one fine, over a faint plasma haze. The mix is set so the mean is about 0.4
    of full scale with the brightest veins at 1, roughly like crops of the reference photos.
    """
    size = _power_of_two_at_least(max(h, w))
    coarse = 1.0 - np.abs(2.0 * _plasma_fractals(rngs, size, 2.0) - 1.0)
    fine = 1.0 - np.abs(2.0 * _plasma_fractals(rngs, size, 1.5) - 1.0)
    haze = _plasma_fractals(rngs, size, 2.5)
    texture = 0.55 * coarse**6 + 0.45 * fine**4 + 0.35 * haze
    texture = texture / texture.max(axis=(1, 2), keepdims=True)
    return texture[:, :h, :w]


def _frost(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    keep, frost_weight = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    _, h, w, c = images.shape
    texture = _frost_textures(rngs, h, w)[..., None]
    tint = _FROST_TINT if c == 3 else _gray(_FROST_TINT[None, None, None, :])[0, 0, 0]
    frost = texture * tint * 255.0
    return np.clip(keep * images.astype(np.float64) + frost_weight * frost, 0, 255).astype(np.uint8)


def _fog(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    thickness, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    _, h, w, _ = images.shape
    size = _power_of_two_at_least(max(h, w))  # 32 for CIFAR, as the reference
    x01 = _to_float(images)
    peak = x01.max(axis=(1, 2, 3), keepdims=True)
    fog = _plasma_fractals(rngs, size, decay)[:, :h, :w, None]
    return _to_uint8((x01 + thickness * fog) * peak / (peak + thickness))


def _brightness(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    x01 = _to_float(images)
    value = x01.max(axis=-1, keepdims=True)  # HSV's V; for grayscale the pixel itself
    raised = np.minimum(value + c, 1.0)
    # Hue and saturation fixed: RGB scales with V. Black (V = 0, saturation 0) becomes gray at the new V.
    scaled = x01 * (raised / np.where(value > 0, value, 1.0))
    return _to_uint8(np.where(value > 0, scaled, raised))


def _contrast(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x01 = _to_float(images)
    means = x01.mean(axis=(1, 2), keepdims=True)  # per image and channel
    return _to_uint8((x01 - means) * c + means)


def _elastic_transform(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    # (displacement scale, displacement smoothing sigma, affine jitter), as fractions of the image side.
    alpha, sigma, jitter = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))[
        severity - 1
    ]
    _, h, w, c = images.shape
    side = min(h, w)
    alpha, sigma, jitter = side * alpha, side * sigma, side * jitter
    ndi = _ndi()
    x01 = _to_float(images)
    out = np.empty_like(x01)
    # A random affine map: three points around the centre, (x, y) as OpenCV takes them, each move by up to `jitter`.
    cx, cy, half = w // 2, h // 2, side // 3
    src = np.array([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], dtype=np.float64)
    grid_y, grid_x = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    # Per image and channel in 2-D: the displacements differ per image, and a 4-D map_coordinates over the batch
    # interpolates along the image and channel axes too, which costs ~3x more.
    for k, rng in enumerate(rngs):
        dst = src + rng.uniform(-jitter, jitter, size=src.shape)
        forward = np.linalg.solve(np.column_stack([src, np.ones(3)]), dst).T  # 2x3: (x, y, 1) -> (x', y')
        inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))  # a warp samples the source of each output
        matrix, offset = inverse[:2, :2][::-1, ::-1], inverse[:2, 2][::-1]  # (x, y) -> (row, column) order
        # A smooth random displacement field (scikit-image's gaussian: mode "reflect", truncate 3).
        dx, dy = (
            ndi.gaussian_filter(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
            for _ in range(2)
        )
        coords = np.stack([grid_y + dy, grid_x + dx])
        for channel in range(c):
            # OpenCV's warpAffine (bilinear, BORDER_REFLECT_101 = scipy's "mirror"), then the displacement.
            warped = ndi.affine_transform(x01[k, ..., channel], matrix, offset=offset, order=1, mode="mirror")
            out[k, ..., channel] = ndi.map_coordinates(warped, coords, order=1, mode="reflect")
    return _to_uint8(out)


def _per_image(images: np.ndarray, apply: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Run a PIL operation on each image (mode L for one channel, RGB for three)."""
    out = np.empty_like(images)
    for k, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        out[k] = np.asarray(apply(pil)).reshape(image.shape)
    return out


def _pixelate(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    _, h, w, _ = images.shape
    small = (int(w * c), int(h * c))
    return _per_image(images, lambda im: im.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX))


def _jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        decoded.load()
        return decoded.copy()


def _jpeg_compression(images: np.ndarray, severity: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    quality = (80, 65, 58, 50, 40)[severity - 1]
    return _per_image(images, lambda im: _jpeg_round_trip(im, quality))


_OPS: Mapping[CorruptionName, _Op] = MappingProxyType(
    {
        "gaussian_noise": _gaussian_noise,
        "shot_noise": _shot_noise,
        "impulse_noise": _impulse_noise,
        "defocus_blur": _defocus_blur,
        "glass_blur": _glass_blur,
        "motion_blur": _motion_blur,
        "zoom_blur": _zoom_blur,
        "snow": _snow,
        "frost": _frost,
        "fog": _fog,
        "brightness": _brightness,
        "contrast": _contrast,
        "elastic_transform": _elastic_transform,
        "pixelate": _pixelate,
        "jpeg_compression": _jpeg_compression,
    }
)

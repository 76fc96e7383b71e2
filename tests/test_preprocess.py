"""The one preprocessing path, on generated images of every mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cifarzoo.config import PreprocessConfig
from cifarzoo.data.preprocess import load_uint8, normalize, preprocess, read_image
from cifarzoo.data.specs import CIFAR10, FASHION_MNIST
from cifarzoo.errors import ImageReadError

RGB32 = CIFAR10.preprocess_config()  # 32x32 RGB, white background
GRAY28 = FASHION_MNIST.preprocess_config()  # 28x28 L, black background


def save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def test_image_at_model_size_is_untouched(tmp_path, rng) -> None:
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = save(Image.fromarray(pixels), tmp_path / "x.png")
    assert np.array_equal(load_uint8(path, RGB32), pixels)


def test_grayscale_to_rgb_and_rgb_to_grayscale(tmp_path, rng) -> None:
    gray = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    out = load_uint8(save(Image.fromarray(gray), tmp_path / "g.png"), RGB32)
    assert out.shape == (32, 32, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[..., 0] = 255
    out = load_uint8(save(Image.fromarray(rgb), tmp_path / "red.png"), GRAY28)
    assert out.shape == (28, 28, 1) and np.all(out == 76)  # ITU-R 601 luma of pure red


def test_palette_with_alpha_is_composited_on_background(tmp_path) -> None:
    img = Image.new("P", (32, 32))
    img.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    img.paste(1, (0, 0, 16, 32))  # left half colour 1 (red), right half colour 0 (transparent)
    path = save(img, tmp_path / "p.png", transparency=0)
    assert Image.open(path).mode == "P"
    out = load_uint8(path, RGB32)
    assert out[0, 0].tolist() == [200, 10, 10]
    assert out[0, 31].tolist() == [255, 255, 255]  # transparent -> CIFAR's white background


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_modes(tmp_path, mode) -> None:
    channels = 4 if mode == "RGBA" else 2
    arr = np.full((32, 32, channels), 100, np.uint8)
    arr[..., -1] = 255
    arr[:, 16:, -1] = 0  # right half transparent
    out = load_uint8(save(Image.fromarray(arr, mode), tmp_path / "a.png"), GRAY28)
    assert out.shape == (28, 28, 1)
    assert out[14, 2, 0] == 100 and out[14, 26, 0] == 0  # black background for Fashion-MNIST


def test_cmyk_jpeg(tmp_path) -> None:
    path = save(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    r, g, b = load_uint8(path, RGB32)[16, 16].astype(int)
    assert r > 200 and g < 60 and b < 60  # cyan-free, full magenta+yellow = red


def test_sixteen_bit_png_is_rescaled_not_clipped(tmp_path) -> None:
    arr = np.zeros((32, 32), np.uint16)
    arr[:, :16] = 65535
    arr[:, 16:] = 32896  # 128 * 257
    path = save(Image.fromarray(arr), tmp_path / "16.png")
    assert Image.open(path).mode.startswith("I")
    out = load_uint8(path, RGB32)
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 31].tolist() == [128, 128, 128]


def test_float_and_one_bit_images(tmp_path) -> None:
    arr = np.zeros((32, 32), np.float32)
    arr[:, 16:] = 1.0
    out = load_uint8(Image.fromarray(arr, "F"), RGB32)
    assert out[0, 0, 0] == 0 and out[0, 31, 0] == 255
    bw = Image.fromarray((arr > 0.5).astype(np.uint8) * 255).convert("1")
    out = load_uint8(save(bw, tmp_path / "bw.png"), RGB32)
    assert out[0, 0, 0] == 0 and out[0, 31, 0] == 255


def test_exif_orientation_is_applied(tmp_path) -> None:
    arr = np.zeros((32, 64, 3), np.uint8)  # wide image, left half white
    arr[:, :32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = save(Image.fromarray(arr), tmp_path / "r.jpg", exif=exif, quality=95)
    img = read_image(path)
    assert img.size == (32, 64)  # now tall
    top = np.asarray(img)[:8].mean()
    bottom = np.asarray(img)[-8:].mean()
    assert top > 200 and bottom < 50  # the white left half is now on top


def test_animated_gif_gives_first_frame(tmp_path) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 2
    r, g, b = load_uint8(path, RGB32)[0, 0].astype(int)
    assert r > 200 and b < 50


def test_resize_policies() -> None:
    arr = np.zeros((32, 64, 3), np.uint8)  # 64 wide, 32 tall: left quarter red, centre green, right blue
    arr[:, :16, 0] = 255
    arr[:, 16:48, 1] = 255
    arr[:, 48:, 2] = 255
    img = Image.fromarray(arr)
    crop = load_uint8(img, RGB32)
    assert crop.shape == (32, 32, 3) and (crop[..., 1] == 255).all()  # only the green centre survives
    import dataclasses

    stretch = load_uint8(img, dataclasses.replace(RGB32, resize="stretch", interpolation="nearest"))
    assert stretch[0, 0].tolist() == [255, 0, 0] and stretch[0, 31].tolist() == [0, 0, 255]
    box = load_uint8(img, dataclasses.replace(RGB32, resize="letterbox", interpolation="nearest"))
    assert box[0, 16].tolist() == [255, 255, 255] and box[16, 16].tolist() == [0, 255, 0]  # padded top


def test_downscale_is_antialiased() -> None:
    checker = (np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8)
    out = load_uint8(Image.fromarray(checker), RGB32)
    assert np.abs(out.astype(int) - 128).max() <= 2  # averages, no aliasing


def test_normalize_matches_the_formula(rng) -> None:
    batch = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out = normalize(batch, RGB32)
    expected = (batch.astype(np.float64) / 255 - np.array(RGB32.mean)) / np.array(RGB32.std)
    assert out.shape == (2, 3, 32, 32) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, expected.transpose(0, 3, 1, 2), atol=1e-5)


def test_preprocess_accepts_paths_pil_and_arrays(tmp_path, rng) -> None:
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = save(Image.fromarray(pixels), tmp_path / "x.png")
    out = preprocess([path, Image.fromarray(pixels), pixels, str(path)], RGB32)
    assert out.shape == (4, 3, 32, 32)
    assert all(np.array_equal(out[0], out[i]) for i in range(1, 4))
    with pytest.raises(ValueError, match="shape"):
        preprocess([np.zeros((32, 32, 2), np.uint8)], RGB32)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am text", "not an image"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_unreadable_files_name_the_file_and_reason(tmp_path, content, reason) -> None:
    path = tmp_path / "bad.png"
    if content == "truncated":
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (9, 9, 9)).save(buffer, "PNG")
        content = buffer.getvalue()[:60]
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        load_uint8(path, RGB32)
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path) -> None:
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_image(tmp_path)


def test_preprocess_config_validation() -> None:
    from cifarzoo.errors import ConfigError

    with pytest.raises(ConfigError, match="resize"):
        PreprocessConfig(input_size=32, mean=(0.5,), std=(0.5,), color_mode="L", resize="zoom")
    with pytest.raises(ConfigError, match="color_mode"):
        PreprocessConfig(input_size=32, mean=(0.5,), std=(0.5,), color_mode="CMYK")

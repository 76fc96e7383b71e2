"""The one preprocessing path: decode -> convert -> resize -> normalise, with PIL and numpy only.

Every backend (torch, ONNX, TorchScript) and every engine (train, eval, predict) takes its input through
these functions, configured by the model's own :class:`~cifarzoo.config.PreprocessConfig`. Nothing here
imports torch, so the ONNX path starts fast.
"""

from __future__ import annotations

import errno
import os
import warnings
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifarzoo.config import PreprocessConfig
from cifarzoo.errors import ImageReadError, display_path

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode one image file, applying its EXIF orientation.

    Animated images give their first frame. Raises :class:`ImageReadError` naming the file and the reason
    (missing, unreadable, empty, not an image, truncated, too large) instead of PIL's or the OS's exceptions.
    """
    shown = display_path(path)
    try:
        with warnings.catch_warnings():
            # PIL warns above MAX_IMAGE_PIXELS and raises above twice that; both mean "don't decode this".
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                # catch_warnings is process-wide, not per thread: while other threads of a decode pool enter and
                # leave it, the warning above can slip through as a mere warning. Check the limit directly too.
                limit = Image.MAX_IMAGE_PIXELS
                if limit and img.width * img.height > limit:
                    raise Image.DecompressionBombError(f"{img.width}x{img.height} pixels exceeds the limit of {limit}")
                img.seek(0)
                img.load()
                oriented = ImageOps.exif_transpose(img)
                # exif_transpose returns the same object when there is nothing to do; detach it from the file.
                return oriented.copy() if oriented is img else oriented
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageReadError(shown, f"image too large to decode safely ({exc})") from None
    except FileNotFoundError:
        reason = "broken symlink" if os.path.islink(path) else "file not found"
        raise ImageReadError(shown, reason) from None
    except IsADirectoryError:
        raise ImageReadError(shown, "is a directory") from None
    except PermissionError:
        raise ImageReadError(shown, "permission denied") from None
    except UnidentifiedImageError:
        reason = "empty file" if _file_size(path) == 0 else "not an image, or an unsupported format"
        raise ImageReadError(shown, reason) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageReadError(shown, "symlink loop") from None
        raise ImageReadError(shown, f"truncated or corrupt image data ({exc})") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as exc:  # raised by some malformed files
        raise ImageReadError(shown, f"corrupt image data ({type(exc).__name__}: {exc})") from None


def _file_size(path: str | os.PathLike) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def to_color_mode(img: Image.Image, color_mode: str, background: int = 0) -> Image.Image:
    """Convert any PIL mode to ``"RGB"`` or ``"L"``.

    Transparent pixels (RGBA, LA, palettes with transparency) are composited onto ``background``; 16- and
    32-bit integer and float images are rescaled to 8 bits instead of being clipped.
    """
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = Image.fromarray(_wide_to_uint8(np.asarray(img)), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (background, background, background, 255))
        img = Image.alpha_composite(canvas, rgba).convert("RGB")
    return img if img.mode == color_mode else img.convert(color_mode)


def _wide_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Rescale a 16/32-bit or float single-channel array to uint8."""
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64))
        peak = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        return np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    peak = arr.max(initial=0)
    if peak <= 255:
        return np.clip(arr, 0, 255).astype(np.uint8)
    full_scale = 65535 if peak <= 65535 else int(peak)
    return np.clip((arr * 255 + full_scale // 2) // full_scale, 0, 255).astype(np.uint8)


def resize(img: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Apply the config's resize policy; an image already at the input size is returned unchanged."""
    size = cfg.input_size
    w, h = img.size
    if (w, h) == (size, size):
        return img
    resample = _RESAMPLE[cfg.interpolation]
    if cfg.resize == "stretch":
        return img.resize((size, size), resample)
    if cfg.resize == "center-crop":
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((new_w, new_h), resample)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return img.crop((left, top, left + size, top + size))
    # letterbox
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    fill = cfg.background if img.mode == "L" else (cfg.background,) * 3
    canvas = Image.new(img.mode, (size, size), fill)
    canvas.paste(img.resize((new_w, new_h), resample), ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def load_uint8(image: ImageInput, cfg: PreprocessConfig) -> np.ndarray:
    """Decode, convert and resize one image to a ``(H, W, C)`` uint8 array at the model's input size."""
    if isinstance(image, np.ndarray):
        image = _array_to_pil(image)
    elif not isinstance(image, Image.Image):
        image = read_image(image)
    img = resize(to_color_mode(image, cfg.color_mode, cfg.background), cfg)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def try_load_uint8(image: ImageInput, cfg: PreprocessConfig) -> np.ndarray | ImageReadError:
    """:func:`load_uint8`, returning the error instead of raising it, for loops that go on past bad files."""
    try:
        return load_uint8(image, cfg)
    except ImageReadError as exc:
        return exc


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.ndim != 2:
            raise ValueError(f"colour image arrays must be uint8, got {arr.dtype}")
        arr = _wide_to_uint8(arr)
    return Image.fromarray(arr)


def normalize(batch_uint8: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """``(N, H, W, C)`` uint8 -> ``(N, C, H, W)`` float32, scaled to 0-1 and normalised by mean/std."""
    if batch_uint8.ndim != 4 or batch_uint8.shape[-1] != cfg.in_chans:
        raise ValueError(f"expected (N, H, W, {cfg.in_chans}) uint8 images, got shape {batch_uint8.shape}")
    scale, shift = (np.asarray(v, dtype=np.float32) for v in cfg.affine())
    out = batch_uint8.astype(np.float32) * scale + shift  # (x/255 - mean)/std as one multiply-add
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def preprocess(images: Sequence[ImageInput], cfg: PreprocessConfig) -> np.ndarray:
    """Decode and normalise a batch: the model's input as ``(N, C, H, W)`` float32.

    Raises :class:`ImageReadError` for the first unreadable file; callers that must go on past bad files
    (predict, eval) call :func:`load_uint8` per file and batch the good ones with :func:`normalize`.
    """
    return normalize(np.stack([load_uint8(img, cfg) for img in images]), cfg)


def path_of(image: ImageInput) -> str | None:
    """The display path of a file input, ``None`` for in-memory images."""
    return display_path(image) if isinstance(image, (str, os.PathLike)) else None


__all__ = [
    "read_image",
    "to_color_mode",
    "resize",
    "load_uint8",
    "try_load_uint8",
    "normalize",
    "preprocess",
    "path_of",
]

"""The one preprocessing path: decode -> convert -> resize -> normalise, with PIL and numpy only.

Every backend (torch, ONNX, TorchScript) and every engine (train, eval, predict) takes its input through
these functions, configured by the model's own :class:`~cifarzoo.config.PreprocessConfig`. Nothing here
imports torch, so the ONNX path starts fast.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from types import MappingProxyType
from typing import BinaryIO, Mapping, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifarzoo.config import PreprocessConfig
from cifarzoo.data.files import not_regular_reason, os_reason
from cifarzoo.errors import ImageReadError, display_path

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


# Memory caps, sized for a tool whose models see 32x32 images (Pillow's own MAX_IMAGE_PIXELS, 89 Mpx by default and
# process-wide, is far too generous for that: a 9400x9400 RGBA PNG of 370 KB takes 1.85 GB to decode). Both are
# checked from the image header, before any pixel is decoded. A Pillow limit set lower is honoured as well.
MPX = 1 << 20
MAX_IMAGE_PIXELS = 16 * MPX  # 4096x4096: far above any photo this tool is meant for
# Peak bytes per pixel while one image of each mode is decoded and converted to the model's mode, measured with
# ru_maxrss on 2800x2800 and 3000x3000 images and rounded up (RGB 4.2-5.1, L 1.2-5.2, P 6.1, RGBA 12-16, LA 16-20,
# I;16 10.2, I 8.3, F 21.6): Pillow stores RGB as 4 bytes, alpha compositing holds several full-size copies at
# once, and 16-bit and float data are rescaled through 32/64-bit arrays. Modes not listed take the widest figure.
DECODE_BYTES_PER_PIXEL: Mapping[str, int] = MappingProxyType(
    {"1": 8, "L": 8, "P": 8, "RGB": 8, "YCbCr": 8, "CMYK": 8, "LAB": 8, "HSV": 8, "RGBX": 8,
     "RGBA": 16, "RGBa": 16, "LA": 24, "La": 24, "PA": 24,
     "I;16": 12, "I;16L": 12, "I;16B": 12, "I;16N": 12, "I": 12, "F": 24}
)
WIDEST_BYTES_PER_PIXEL = max(DECODE_BYTES_PER_PIXEL.values())
# The most memory one image may take while it is decoded: a 16 Mpx RGB image (128 MiB). Wider modes get fewer
# pixels (RGBA: 8 Mpx, LA: 5.3 Mpx). The decode pool sizes its workers by this figure.
MAX_DECODE_BYTES = MAX_IMAGE_PIXELS * DECODE_BYTES_PER_PIXEL["RGB"]

# Decoding threads share one process, and each may hold up to MAX_DECODE_BYTES at once (an image at the cap, mid-
# conversion). So a decode pool gets at most this much for images in flight, and never more than half of the memory
# the system has available now: workers = budget // MAX_DECODE_BYTES (8 with the default 1 GiB), at least 1.
DECODE_MEMORY_BUDGET = 1 << 30
MAX_DECODE_WORKERS = 8


def decode_workers(requested: int | None = None) -> int:
    """How many decoding threads to run: ``requested`` (default: cores + 1, at most 8), capped so that the
    worst case, every worker decoding an image at the pixel cap, fits :data:`DECODE_MEMORY_BUDGET` and half of
    the memory available now. Always at least 1."""
    wanted = requested or min(MAX_DECODE_WORKERS, (os.cpu_count() or 1) + 1)
    budget = DECODE_MEMORY_BUDGET
    available = _available_memory()
    if available is not None:
        budget = min(budget, available // 2)
    return max(1, min(wanted, budget // MAX_DECODE_BYTES))


def _available_memory() -> int | None:
    """Memory available now, in bytes: Linux's MemAvailable (free memory plus the page cache it can drop), else
    the free physical pages, else ``None`` where the OS does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # Windows and macOS have no SC_AVPHYS_PAGES
        return None


# What Pillow's plugins raise on malformed data besides OSError: a damaged file is a reason to skip it, not a bug.
_DECODE_ERRORS = (
    ValueError, SyntaxError, EOFError, MemoryError, struct.error, IndexError, KeyError, TypeError,
    ZeroDivisionError, OverflowError, RecursionError, zlib.error,
)


def pixel_limit(mode: str) -> int:
    """The most pixels an image of this PIL mode may have to be decoded (see :data:`MAX_DECODE_BYTES`)."""
    limit = min(MAX_IMAGE_PIXELS, MAX_DECODE_BYTES // DECODE_BYTES_PER_PIXEL.get(mode, WIDEST_BYTES_PER_PIXEL))
    pillow = Image.MAX_IMAGE_PIXELS  # read, never set: a caller that lowered it gets its own limit
    return min(limit, int(pillow)) if pillow else limit


def _pixels_text(count: int) -> str:
    if count >= MPX:
        return f"{count // MPX} Mpx" if count % MPX == 0 else f"{count / MPX:.1f} Mpx"
    return f"{count:,} pixel"


def _open_nonblocking(file: str, flags: int) -> int:
    # O_NONBLOCK: should the path turn into a FIFO between the stat and the open, the open returns at once
    # instead of waiting for a writer; it changes nothing for regular files. Windows has neither.
    return os.open(file, flags | getattr(os, "O_NONBLOCK", 0))


def _open_regular(path: str | os.PathLike, shown: str) -> BinaryIO:
    """Open a regular file for reading; anything else (missing, a FIFO, a device, a loop) is an ImageReadError."""
    try:
        reason = not_regular_reason(os.stat(path).st_mode)
        if reason is None:
            f = open(path, "rb", opener=_open_nonblocking)  # noqa: SIM115 - the caller closes it
            reason = not_regular_reason(os.fstat(f.fileno()).st_mode)  # the file opened is the one that counts
            if reason is None:
                return f
            f.close()
    except FileNotFoundError:
        reason = "broken symlink" if os.path.islink(path) else "file not found"
    except OSError as exc:
        reason = os_reason(exc)
    except ValueError as exc:  # a NUL character in the name
        reason = f"invalid file name ({exc})"
    raise ImageReadError(shown, reason)


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode one image file, applying its EXIF orientation.

    Animated images give their first frame. Only regular files are opened (a FIFO or a device named
    ``x.png`` is refused unread), and an image over :func:`pixel_limit` for its mode is refused from its
    header, before decoding. Raises :class:`ImageReadError` naming the file and the reason (missing,
    unreadable, empty, not an image, truncated, too large, not a regular file) instead of PIL's or the OS's
    exceptions.
    """
    shown = display_path(path)
    with _open_regular(path, shown) as f:
        try:
            return _decode(f, shown)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageReadError(shown, f"image too large to decode safely ({exc})") from None
        except UnidentifiedImageError:
            empty = os.fstat(f.fileno()).st_size == 0
            raise ImageReadError(shown, "empty file" if empty else "not an image, or an unsupported format") from None
        except OSError as exc:
            raise ImageReadError(shown, f"truncated or corrupt image data ({exc})") from None
        except _DECODE_ERRORS as exc:
            raise ImageReadError(shown, f"corrupt image data ({type(exc).__name__}: {exc})") from None


def _decode(f: BinaryIO, shown: str) -> Image.Image:
    with warnings.catch_warnings():
        # PIL warns above its MAX_IMAGE_PIXELS and raises above twice that; both mean "don't decode this".
        # catch_warnings is process-wide, not per thread, so pixel_limit checks Pillow's limit directly too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(f)  # lazy: reads the header only
    width, height = img.size
    # A palette with transparency is composited through RGBA: it costs what an alpha mode costs.
    limit = pixel_limit("PA" if img.mode == "P" and "transparency" in img.info else img.mode)
    if width * height > limit:
        raise ImageReadError(
            shown, f"too large: {width}x{height} pixels is over the {_pixels_text(limit)} limit for {img.mode} "
                   "images (a memory cap; shrink it first)"
        )
    img.seek(0)
    img.load()  # the pixels now live in memory: the image outlives the file, and needs no copy
    ImageOps.exif_transpose(img, in_place=True)  # in place: a copy would double the peak memory
    return img


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
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (background, background, background, 255))
        img = Image.alpha_composite(canvas, rgba).convert("RGB")
    return img if img.mode == color_mode else img.convert(color_mode)


def _wide_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Rescale a 16/32-bit or float single-channel array to uint8."""
    if arr.dtype.kind == "f":
        work = np.nan_to_num(arr.astype(np.float64), copy=False)  # one float64 copy, then rescaled in place
        work /= 1.0 if work.max(initial=0.0) <= 1.0 else 255.0
        work *= 255.0
        work += 0.5
        return np.clip(work, 0, 255, out=work).astype(np.uint8)
    peak = int(arr.max(initial=0))
    if peak <= 255:
        return np.clip(arr, 0, 255).astype(np.uint8)
    full_scale = 65535 if peak <= 65535 else peak
    # Rounded integer rescaling, in place; 16-bit data fits uint32 (65535 * 255 + 32767 < 2**32), so only
    # wider data pays for int64.
    work = np.clip(arr, 0, None).astype(np.uint32 if full_scale <= 65535 else np.int64)
    work *= 255
    work += full_scale // 2
    work //= full_scale
    return work.astype(np.uint8)


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
    """Decode, convert and resize one image to a ``(H, W, C)`` uint8 array at the model's input size.

    A file that decodes to a mode with no conversion to the model's (a rare PIL mode) is an
    :class:`ImageReadError` naming it; a PIL image or array of a wrong shape or mode is a ``ValueError``.
    """
    if isinstance(image, np.ndarray):
        image = _array_to_pil(image)
    elif not isinstance(image, Image.Image):
        shown = display_path(image)
        image = read_image(image)
        try:
            return _to_uint8(image, cfg)
        except (*_DECODE_ERRORS, OSError) as exc:  # from the file's content, so a reason to skip it
            reason = f"cannot convert its {image.mode} pixels ({type(exc).__name__}: {exc})"
            raise ImageReadError(shown, reason) from None
    return _to_uint8(image, cfg)


def _to_uint8(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
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
    "decode_workers",
    "pixel_limit",
]

"""What every backend shares: images in, top-k labels out, in whole batches. Torch-free.

The decode/normalise half is numpy + PIL (``cifarzoo.data.preprocess``), and the network is any callable that
maps a float32 NCHW array to logits, so one loop serves every backend (torch, ONNX, TorchScript).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator, Sequence

import numpy as np

from cifarzoo.config import ModelConfig, PreprocessConfig
from cifarzoo.data.preprocess import ImageInput, decode_workers, normalize, path_of, try_load_uint8
from cifarzoo.data.tta import LogitsFn
from cifarzoo.errors import CheckpointError, ImageReadError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

    from cifarzoo.io.resolve import ModelSource


@dataclass
class Prediction:
    """One image's result: the top label and the ``k`` most likely ``(label, probability)`` pairs."""

    path: str | None
    label: str
    index: int
    prob: float
    topk: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "label": self.label,
            "index": self.index,
            "prob": self.prob,
            "topk": [{"label": label, "prob": prob} for label, prob in self.topk],
        }


@dataclass
class PredictResult:
    """Predictions for the readable images, in input order, and the files that could not be read."""

    predictions: list[Prediction] = field(default_factory=list)
    failures: list[ImageReadError] = field(default_factory=list)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float64)
    return exp / exp.sum(axis=1, keepdims=True)


def predictions_from_logits(
    logits: np.ndarray, classes: Sequence[str], k: int, paths: Sequence[str | None], temperature: float = 1.0
) -> list[Prediction]:
    """Softmax of ``logits / temperature`` (the model's calibration) and top-k, for a whole batch at once."""
    probs = softmax(np.asarray(logits, dtype=np.float32) / np.float32(temperature))
    k = max(1, min(k, probs.shape[1]))
    # argsort on the negated probabilities; stable, so ties keep the lower class index first.
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    results = []
    for row, (path, indices) in enumerate(zip(paths, top)):
        pairs = [(classes[i], float(probs[row, i])) for i in indices]
        results.append(Prediction(path, pairs[0][0], int(indices[0]), pairs[0][1], pairs))
    return results


def decode_stream(
    images: Iterable[ImageInput],
    cfg: PreprocessConfig,
    batch_size: int,
    workers: int | None = None,
    prefetch: int = 1,
) -> Iterator[tuple[list[ImageInput], list[np.ndarray | ImageReadError]]]:
    """Decode images in a thread pool, ``batch_size`` at a time, yielding ``(inputs, arrays_or_errors)`` in order.

    PIL releases the GIL while decoding, so threads overlap file reads and decodes. Before a chunk is yielded,
    the next ``prefetch`` chunks are already submitted to the pool, so they decode while the caller runs the
    network on this one. ``images`` is consumed lazily and at most ``1 + prefetch`` chunks are in flight:
    memory stays bounded for any number of files, and the number of threads is capped by
    :func:`decode_workers` so that their worst-case images fit the memory budget.

    When the caller stops early (an error, ``--strict``, Ctrl-C), queued decodes are cancelled and nothing
    waits for the ones running: the first Ctrl-C ends the command at once.
    """
    source = iter(images)
    pool = ThreadPoolExecutor(max_workers=decode_workers(workers), thread_name_prefix="cifarzoo-decode")
    pending: deque[tuple[list[ImageInput], list[Future]]] = deque()

    def submit_next() -> bool:
        chunk = list(islice(source, batch_size))
        if chunk:
            pending.append((chunk, [pool.submit(try_load_uint8, image, cfg) for image in chunk]))
        return bool(chunk)

    finished = False
    try:
        submit_next()
        while pending:
            chunk, futures = pending.popleft()
            while len(pending) < max(1, prefetch) and submit_next():
                pass
            yield chunk, [future.result() for future in futures]
        finished = True
    finally:
        # Stopped early (an exception, KeyboardInterrupt, or the caller closing the generator): cancel what is
        # queued and do not wait for the decodes running, each bounded by the pixel cap.
        pool.shutdown(wait=finished, cancel_futures=True)


def predict_images(
    logits_fn: LogitsFn,
    config: ModelConfig,
    images: Iterable[ImageInput],
    *,
    topk: int = 5,
    batch_size: int = 256,
    strict: bool = False,
) -> PredictResult:
    """Predict every image; unreadable files are collected in ``failures`` (or raised when ``strict``)."""
    result = PredictResult()
    for inputs, decoded in decode_stream(images, config.preprocess, batch_size):
        good = [(image, arr) for image, arr in zip(inputs, decoded) if isinstance(arr, np.ndarray)]
        errors = [arr for arr in decoded if isinstance(arr, ImageReadError)]
        if errors and strict:
            raise errors[0]
        result.failures.extend(errors)
        if good:
            batch = normalize(np.stack([arr for _, arr in good]), config.preprocess)
            paths = [path_of(image) for image, _ in good]
            result.predictions.extend(
                predictions_from_logits(logits_fn(batch), config.classes, topk, paths, config.temperature)
            )
    return result


class Predictor:
    """What every backend offers: ``config``, ``classes``, ``logits(batch)`` and ``predict(images)``.

    Subclasses implement :meth:`logits`; preprocessing, batching, softmax and top-k are shared.
    """

    config: ModelConfig
    # What the model was loaded from (zoo entry, Hub snapshot, folder or file); set by ``cifarzoo.load``.
    source: ModelSource | None = None
    # The backend's name, as ``cifarzoo.load(backend=...)`` and ``--backend`` spell it.
    backend: ClassVar[str] = ""
    # True when the ONNX file is the cache's export of a checkpoint folder without one (``backend="auto"``).
    cached_export: bool = False
    # The file a backend reads from a model folder, and the `cifarzoo export --format` that writes it.
    file_name: ClassVar[str] = ""
    export_format: ClassVar[str] = ""

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "auto", *, trust_code: bool = False) -> Self:
        """Load one exported file; backends that read files override this. ``trust_code`` allows formats that
        run code as they load (TorchScript); data formats (ONNX) ignore it."""
        raise NotImplementedError(f"{cls.__name__} does not load exported files")

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, device: str = "auto", *, trust_code: bool = False) -> Self:
        """The backend's file in a model folder (``model.onnx``, ``model.torchscript.pt``)."""
        directory = Path(directory)
        if not (directory / cls.file_name).is_file():
            raise CheckpointError(
                f"{directory}: no {cls.file_name}; create it with "
                f"`cifarzoo export {directory} --format {cls.export_format}`"
            )
        return cls.from_file(directory / cls.file_name, device, trust_code=trust_code)

    def describe_backend(self) -> str:
        """What runs the network, for ``--verbose`` and reports: ``onnx``, ``onnx (cached export: PATH)``, ..."""
        path = getattr(self, "path", None)
        return f"{self.backend} (cached export: {path})" if self.cached_export else self.backend

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a normalised float32 ``(N, C, H, W)`` batch."""
        raise NotImplementedError

    def predict(self, images: Any, *, topk: int = 5, batch_size: int = 256) -> list[Prediction]:
        """Top-k labels for image files, PIL images or ``(H, W[, C])`` uint8 arrays (one or a list).

        Images go through the model's own preprocessing (decode, convert, resize policy, normalise), and the
        probabilities through its calibration (``config.calibration``, temperature scaling). An unreadable file
        raises :class:`~cifarzoo.errors.ImageReadError`.
        """
        if isinstance(images, (str, os.PathLike, np.ndarray)) or not isinstance(images, Sequence):
            images = [images]
        result = predict_images(self.logits, self.config, images, topk=topk, batch_size=batch_size, strict=True)
        return result.predictions


__all__ = [
    "Prediction",
    "PredictResult",
    "Predictor",
    "decode_stream",
    "predict_images",
    "predictions_from_logits",
]

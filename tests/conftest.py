"""Shared fixtures: small generated images and checkpoints, all offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Derived files (the ONNX export cache) go to a folder of the test session's own, never ~/.cache; CLI
    subprocesses inherit it through the environment."""
    import os

    folder = tmp_path_factory.mktemp("cifarzoo-cache")
    before = os.environ.get("CIFARZOO_CACHE")
    os.environ["CIFARZOO_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("CIFARZOO_CACHE", None)
    else:
        os.environ["CIFARZOO_CACHE"] = before


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def random_rgb(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def c10_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """An untrained resnet26-c10 saved as a checkpoint directory (random weights, real format)."""
    import cifarzoo

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("ckpt") / "resnet26-c10"
    model = cifarzoo.create_model("resnet26-c10", zero_init_last=False)
    model.save_pretrained(directory)
    return directory


@pytest.fixture
def image_dir(tmp_path, rng):
    """Three valid 32x32 PNGs in a folder (one in a subfolder)."""
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    paths = [tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "b.png", tmp_path / "imgs" / "sub" / "c.png"]
    for path in paths:
        Image.fromarray(random_rgb(rng)).save(path)
    return tmp_path / "imgs"


class CodeRunningObject:
    """Unpickling this runs ``touch marker``: what a safe loader must refuse."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def write_code_running_pickle(path, marker) -> None:
    import pickle

    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": CodeRunningObject(marker)}, f, protocol=2)  # torch.save's protocol


def run_cli_without_torch(args: list[str]) -> str:
    """Run ``cifarzoo ARGS`` in a fresh interpreter, assert it succeeded without importing torch, return stdout."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from cifarzoo.cli import main\n"
        f"sys.argv = ['cifarzoo', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('NO_TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO_TORCH")
    return out.stdout.rsplit("NO_TORCH", 1)[0]

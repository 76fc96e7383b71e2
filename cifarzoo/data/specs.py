"""Dataset descriptions: class names, normalisation statistics and image geometry. Torch-free.

Statistics are the per-channel mean and standard deviation of each training set's pixels on the 0-1 scale.
The CIFAR-10 std is (0.2470, 0.2435, 0.2616): the (0.2023, 0.1994, 0.2010) copied across many CIFAR
repositories is the mean of per-image stds, not the dataset std.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from cifarzoo.config import ColorMode, PreprocessConfig
from cifarzoo.errors import ConfigError

# The built-in datasets' canonical names: the type for annotations, the tuple for membership checks and
# help texts. Both come from this one declaration, so a new dataset cannot be added to one and not the other.
DatasetName = Literal["cifar10", "cifar100", "fashion-mnist"]
DATASET_NAMES: tuple[DatasetName, ...] = get_args(DatasetName)

# Images split off a training set (seeded, see ``train_val_split``) to choose the best epoch: the recipes'
# ``data.val_size`` default, and what model cards mean by "val". 5,000 is 10% of CIFAR's 50,000 training images.
VAL_SIZE = 5000


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's identity and image format.

    Attributes:
        name: canonical name (``cifar10``); ``tag`` is the short form used in zoo names (``c10``).
        title: human-readable name for tables and model cards.
        classes: label names in index order.
        mean, std: normalisation statistics of the training pixels (0-1 scale).
        input_size: native image side in pixels.
        color_mode: ``"RGB"`` or ``"L"``.
        background: the typical background gray level, used for transparency and letterbox padding.
        hub_id: the dataset's id on the Hugging Face Hub (``uoft-cs/cifar10``), for model cards; ``None``
            when it has none.
        bibtex: how to cite the dataset, as a BibTeX entry; ``None`` when there is nothing to cite.
    """

    name: DatasetName
    tag: str
    title: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    color_mode: ColorMode
    background: int
    hub_id: str | None = None
    bibtex: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def preprocess_config(
        self, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None
    ) -> PreprocessConfig:
        """The preprocessing that feeds this dataset's images to a model; ``mean``/``std`` override the stats
        (transfer models keep the ImageNet statistics their backbone was trained with)."""
        return PreprocessConfig(
            input_size=self.input_size,
            mean=mean or self.mean,
            std=std or self.std,
            color_mode=self.color_mode,
            background=self.background,
        )


_CIFAR_BIBTEX = """@techreport{krizhevsky2009learning,
  title       = {Learning Multiple Layers of Features from Tiny Images},
  author      = {Krizhevsky, Alex},
  institution = {University of Toronto},
  year        = {2009}
}"""

_FASHION_MNIST_BIBTEX = """@article{xiao2017fashion,
  title   = {Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms},
  author  = {Xiao, Han and Rasul, Kashif and Vollgraf, Roland},
  journal = {arXiv preprint arXiv:1708.07747},
  year    = {2017}
}"""

CIFAR10 = DatasetSpec(
    name="cifar10",
    tag="c10",
    title="CIFAR-10",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    input_size=32,
    color_mode="RGB",
    background=255,
    hub_id="uoft-cs/cifar10",
    bibtex=_CIFAR_BIBTEX,
)

CIFAR100 = DatasetSpec(
    name="cifar100",
    tag="c100",
    title="CIFAR-100",
    classes=(
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
        "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
        "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
        "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
        "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
        "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
        "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
        "squirrel", "streetcar", "sunflower", "sweet_pepper", "table",
        "tank", "telephone", "television", "tiger", "tractor",
        "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    ),  # fmt: skip
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    input_size=32,
    color_mode="RGB",
    background=255,
    hub_id="uoft-cs/cifar100",
    bibtex=_CIFAR_BIBTEX,
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    tag="fm",
    title="Fashion-MNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mean=(0.2860,),
    std=(0.3530,),
    input_size=28,
    color_mode="L",
    background=0,  # white garments on black
    hub_id="zalando-datasets/fashion_mnist",
    bibtex=_FASHION_MNIST_BIBTEX,
)

# ImageNet statistics, kept by transfer models whose backbone was trained with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS: dict[str, DatasetSpec] = {spec.tag: spec for spec in (CIFAR10, CIFAR100, FASHION_MNIST)}


def get_dataset_spec(name_or_tag: str) -> DatasetSpec:
    """Look a dataset up by tag (``c10``) or name (``cifar10``)."""
    key = name_or_tag.lower()
    for spec in DATASETS.values():
        if key in (spec.tag, spec.name):
            return spec
    known = ", ".join(f"{s.name} ({s.tag})" for s in DATASETS.values())
    raise ConfigError(f"unknown dataset {name_or_tag!r}; known: {known}")

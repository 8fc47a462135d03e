"""Target distributions: toys in 2-D and n-D, bundled digits, ``.npz`` arrays, image data sets
(MNIST, Fashion-MNIST, CIFAR-10, folders of PNG/JPEG files; :class:`ImageDataset`).

``make_dataset(cfg.data)`` builds the target named in a config; ``DATASETS`` lists the names and
the config fields each one reads (fields left ``null`` take the defaults shown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scoregan._checks import closest
from scoregan.data.base import ArrayDataset, Dataset, MixtureDataset
from scoregan.data.files import DataFileError, digits_dataset, npz_dataset
from scoregan.data.images import (
    ImageDataset,
    cifar10_dataset,
    digits_images,
    fashion_mnist_dataset,
    image_folder_dataset,
    make_loader,
    mnist_dataset,
    npz_images_dataset,
)
from scoregan.data.readers import read_cifar10, read_idx, read_image_folder, read_mnist, read_npz_images
from scoregan.schema import ConfigError, DataConfig
from scoregan.data.toys import (
    Checkerboard,
    Pinwheel,
    Rings,
    SwissRoll,
    TwoMoons,
    eight_gaussians,
    grid_gaussians,
    nd_mixture,
)


@dataclass(frozen=True)
class DatasetEntry:
    factory: Callable[..., Dataset]
    fields: tuple[str, ...]  # config fields (of DataConfig) passed to the factory when set


def digits(layout: str = "flat") -> ArrayDataset:
    """The 8×8 digits: flat (1797, 64) vectors or (``layout="image"``) an :class:`ImageDataset` (1797, 1, 8, 8)."""
    return digits_images() if layout == "image" else digits_dataset()


def npz(path: str, key: str = "x", layout: str = "flat") -> ArrayDataset:
    """Array ``key`` of an ``.npz`` file: flattened to (N, d), or (``layout="image"``) as images (N, C, H, W)."""
    return npz_images_dataset(path, key) if layout == "image" else npz_dataset(path, key)


DATASETS: dict[str, DatasetEntry] = {
    "8gaussians": DatasetEntry(eight_gaussians, ("radius", "std", "n_modes")),
    "25gaussians": DatasetEntry(grid_gaussians, ("radius", "std", "n_modes")),
    "gmm": DatasetEntry(nd_mixture, ("dim", "n_modes", "radius", "std", "seed")),
    "swiss_roll": DatasetEntry(SwissRoll, ("scale", "noise")),
    "two_moons": DatasetEntry(TwoMoons, ("scale", "noise")),
    "checkerboard": DatasetEntry(Checkerboard, ("scale",)),
    "rings": DatasetEntry(Rings, ("scale", "n_modes", "noise")),
    "pinwheel": DatasetEntry(Pinwheel, ("scale", "n_modes")),
    "digits": DatasetEntry(digits, ("layout",)),
    "npz": DatasetEntry(npz, ("path", "key", "layout")),
    "mnist": DatasetEntry(mnist_dataset, ("path", "download")),
    "fashion_mnist": DatasetEntry(fashion_mnist_dataset, ("path", "download")),
    "cifar10": DatasetEntry(cifar10_dataset, ("path", "download", "flip")),
    "image_folder": DatasetEntry(image_folder_dataset, ("path", "image_size", "flip")),
}


#: The finite sets (ArrayDataset): the ones data.holdout can split.
FINITE = ("digits", "npz", "mnist", "fashion_mnist", "cifar10", "image_folder")
#: The sets with an official test split: data.holdout draws the held-out images from it.
TEST_SPLIT = ("mnist", "fashion_mnist", "cifar10")
#: The sets read from data.path.
FILE_BACKED = ("npz", "mnist", "fashion_mnist", "cifar10", "image_folder")
#: Fields whose default means "not set" (a dataset that does not take one refuses any other value).
_DEFAULTS = {"layout": "flat", "download": False, "flip": False, "key": "x"}


def _kwargs(cfg: DataConfig) -> dict:
    entry = DATASETS[cfg.name]
    out = {}
    for f in entry.fields:
        v = getattr(cfg, f)
        if v is not None:
            out[f] = v
    return out


def _check_folder(cfg: DataConfig) -> None:
    """data.path of mnist / fashion_mnist / cifar10 / image_folder: given, and not a file where a folder
    is expected (missing files are reported, with what to put where, when the data set is built)."""
    what = {"image_folder": "a folder of PNG/JPEG images",
            "cifar10": "the CIFAR-10 python batches (folder or cifar-10-python.tar.gz)"}.get(cfg.name, "a folder of IDX files")
    if cfg.path is None:
        extra = " (or where data.download = true puts them)" if "download" in DATASETS[cfg.name].fields else ""
        raise ConfigError(f"data.path must name {what}{extra} for dataset {cfg.name!r}")
    if Path(cfg.path).is_file() and cfg.name != "cifar10":
        raise ConfigError(f"data.path = {cfg.path!r}: a file, expected {what}")


def validate_data_config(cfg: DataConfig) -> None:
    """Raise a ConfigError naming the field when ``cfg`` cannot describe a target."""
    if cfg.name not in DATASETS:
        raise ConfigError(f"data.name = {cfg.name!r} is not a dataset; allowed: {', '.join(DATASETS)}{closest(cfg.name, DATASETS)}")
    entry = DATASETS[cfg.name]
    for f in ("radius", "std", "n_modes", "dim", "noise", "scale", "path", "image_size", *_DEFAULTS):
        v = getattr(cfg, f)
        if v != _DEFAULTS.get(f) and f not in entry.fields:
            used = ", ".join(entry.fields) or "no parameters"
            raise ConfigError(f"data.{f} = {v!r} is not used by dataset {cfg.name!r} (it takes {used})")
    if cfg.name == "npz":
        if cfg.path is None:
            raise ConfigError("data.path must name an .npz file for dataset 'npz'")
        if not Path(cfg.path).is_file():
            raise ConfigError(f"data.path = {cfg.path!r}: no such file")
    elif cfg.name in FILE_BACKED:
        _check_folder(cfg)
    if cfg.holdout and cfg.name not in FINITE:
        raise ConfigError(f"data.holdout = {cfg.holdout}: dataset {cfg.name!r} is a distribution one can sample "
                          f"afresh, not a finite set; holdout applies to {', '.join(FINITE)}")


def make_dataset(cfg: DataConfig) -> Dataset:
    """Build the target described by a :class:`scoregan.config.DataConfig` (with ``holdout`` > 0,
    the training part of the finite set, carrying the held-out points as ``heldout``; for mnist,
    fashion_mnist and cifar10 the held-out points come from the official test split)."""
    validate_data_config(cfg)
    data = DATASETS[cfg.name].factory(**_kwargs(cfg))
    if cfg.holdout:
        try:
            if getattr(data, "test_split", None) is not None:  # mnist, fashion_mnist, cifar10: the official test set
                data = data.with_heldout(*data.test_split, cfg.holdout, seed=cfg.seed)
            else:
                data = data.hold_out(cfg.holdout, seed=cfg.seed)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return data


__all__ = [
    "ArrayDataset",
    "DATASETS",
    "DataFileError",
    "Dataset",
    "FILE_BACKED",
    "FINITE",
    "ImageDataset",
    "MixtureDataset",
    "TEST_SPLIT",
    "cifar10_dataset",
    "digits_images",
    "fashion_mnist_dataset",
    "image_folder_dataset",
    "make_loader",
    "mnist_dataset",
    "npz_images_dataset",
    "read_cifar10",
    "read_idx",
    "read_image_folder",
    "read_mnist",
    "read_npz_images",
    "make_dataset",
    "validate_data_config",
    "digits_dataset",
    "npz_dataset",
    "eight_gaussians",
    "grid_gaussians",
    "nd_mixture",
]

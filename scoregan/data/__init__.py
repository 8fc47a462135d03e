"""Target distributions: toys in 2-D and n-D, bundled digits, ``.npz`` arrays.

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


DATASETS: dict[str, DatasetEntry] = {
    "8gaussians": DatasetEntry(eight_gaussians, ("radius", "std", "n_modes")),
    "25gaussians": DatasetEntry(grid_gaussians, ("radius", "std", "n_modes")),
    "gmm": DatasetEntry(nd_mixture, ("dim", "n_modes", "radius", "std", "seed")),
    "swiss_roll": DatasetEntry(SwissRoll, ("scale", "noise")),
    "two_moons": DatasetEntry(TwoMoons, ("scale", "noise")),
    "checkerboard": DatasetEntry(Checkerboard, ("scale",)),
    "rings": DatasetEntry(Rings, ("scale", "n_modes", "noise")),
    "pinwheel": DatasetEntry(Pinwheel, ("scale", "n_modes")),
    "digits": DatasetEntry(digits_dataset, ()),
    "npz": DatasetEntry(npz_dataset, ("path", "key")),
}


FINITE = ("digits", "npz")  # the finite sets (ArrayDataset): the ones data.holdout can split


def _kwargs(cfg: DataConfig) -> dict:
    entry = DATASETS[cfg.name]
    out = {}
    for f in entry.fields:
        v = getattr(cfg, f)
        if v is not None:
            out[f] = v
    return out


def validate_data_config(cfg: DataConfig) -> None:
    """Raise a ConfigError naming the field when ``cfg`` cannot describe a target."""
    if cfg.name not in DATASETS:
        raise ConfigError(f"data.name = {cfg.name!r} is not a dataset; allowed: {', '.join(DATASETS)}{closest(cfg.name, DATASETS)}")
    entry = DATASETS[cfg.name]
    for f in ("radius", "std", "n_modes", "dim", "noise", "scale", "path"):
        if getattr(cfg, f) is not None and f not in entry.fields:
            used = ", ".join(entry.fields) or "no parameters"
            raise ConfigError(f"data.{f} = {getattr(cfg, f)!r} is not used by dataset {cfg.name!r} (it takes {used})")
    if cfg.name == "npz":
        if cfg.path is None:
            raise ConfigError("data.path must name an .npz file for dataset 'npz'")
        if not Path(cfg.path).is_file():
            raise ConfigError(f"data.path = {cfg.path!r}: no such file")
    if cfg.holdout and cfg.name not in FINITE:
        raise ConfigError(f"data.holdout = {cfg.holdout}: dataset {cfg.name!r} is a distribution one can sample "
                          f"afresh, not a finite set; holdout applies to {', '.join(FINITE)}")


def make_dataset(cfg: DataConfig) -> Dataset:
    """Build the target described by a :class:`scoregan.config.DataConfig` (with ``holdout`` > 0,
    the training part of the finite set, carrying the held-out points as ``heldout``)."""
    validate_data_config(cfg)
    data = DATASETS[cfg.name].factory(**_kwargs(cfg))
    if cfg.holdout:
        try:
            data = data.hold_out(cfg.holdout, seed=cfg.seed)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return data


__all__ = [
    "ArrayDataset",
    "DATASETS",
    "DataFileError",
    "Dataset",
    "MixtureDataset",
    "make_dataset",
    "validate_data_config",
    "digits_dataset",
    "npz_dataset",
    "eight_gaussians",
    "grid_gaussians",
    "nd_mixture",
]

"""The dataset interface every target distribution implements."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from scoregan._checks import check_int
from scoregan.scores import GaussianMixture


def holdout_permutation(name: str, n: int, m: int, seed: int) -> torch.Tensor:
    """A permutation of range(n) seeded with ``seed`` whose first ``m`` entries are held out (checked:
    1 <= m <= n − 2, training needs two points)."""
    check_int("data.holdout", m, minimum=1)
    if m > n - 2:
        raise ValueError(f"data.holdout = {m}: dataset {name!r} has {n} points; at most {n - 2} can be held "
                         "out (training needs 2)")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


class Dataset(ABC):
    """A target distribution on R^dim that can be sampled deterministically.

    ``sample(n, generator)`` returns an (n, dim) float32 tensor on the CPU, drawn only from
    ``generator`` (a CPU ``torch.Generator``), so runs are reproducible on any device.
    ``mixture`` is the exact :class:`~scoregan.scores.GaussianMixture` when the target is one
    (then log-density, score and mode statistics are available in closed form), else ``None``.
    ``heldout`` is an (m, dim) tensor of points kept out of training (a finite set split with
    :meth:`ArrayDataset.hold_out`), else ``None``. ``image_shape`` is (C, H, W) when each point is a
    flattened image (dim = C·H·W, row-major NCHW; figures then show images), else ``None``.
    ``labels`` is an (N,) int64 tensor of class labels of a labelled finite set, else ``None``.
    """

    name: str = "dataset"
    dim: int
    mixture: GaussianMixture | None = None
    heldout: torch.Tensor | None = None
    image_shape: tuple[int, int, int] | None = None
    labels: torch.Tensor | None = None

    @abstractmethod
    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor: ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        check_int("n", n, minimum=1)
        return self._sample(n, generator).to(torch.float32)

    def params(self) -> dict:
        """The parameters that define this target (for run directories and tables)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class MixtureDataset(Dataset):
    """A target that is exactly a Gaussian mixture."""

    def __init__(self, name: str, mixture: GaussianMixture, params: dict):
        self.name = name
        self.mixture = mixture
        self.dim = mixture.dim
        self._params = params

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.mixture.sample(n, generator=generator)

    def params(self) -> dict:
        return dict(self._params)


class ArrayDataset(Dataset):
    """A finite set of points (N, dim), sampled uniformly with replacement; optionally labelled
    (``labels`` (N,) int64; :meth:`hold_out` keeps the held-out ones as ``heldout_labels``)."""

    heldout_labels: torch.Tensor | None = None

    def __init__(self, name: str, points: torch.Tensor, params: dict | None = None, *,
                 image_shape: tuple[int, int, int] | None = None, labels: torch.Tensor | None = None):
        if points.ndim != 2 or points.shape[0] < 2:
            raise ValueError(f"{name}: expected an array of shape (N, d) with N >= 2, got {tuple(points.shape)}")
        if image_shape is not None and (len(image_shape) != 3 or math.prod(image_shape) != points.shape[1]):
            raise ValueError(f"{name}: image_shape {image_shape} is not a (C, H, W) that holds {points.shape[1]} values")
        if labels is not None and tuple(labels.shape) != (points.shape[0],):
            raise ValueError(f"{name}: expected {points.shape[0]} labels, got shape {tuple(labels.shape)}")
        self.name = name
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        self.points = points.to(torch.float32).contiguous()
        self.labels = None if labels is None else labels.to(torch.int64)
        self.dim = points.shape[1]
        self._params = params or {}

    def _sample(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        idx = torch.randint(0, self.points.shape[0], (n,), generator=generator)
        return self.points[idx]

    def params(self) -> dict:
        out = {**self._params, "n_points": self.points.shape[0]}
        if self.heldout is not None:
            out["n_heldout"] = self.heldout.shape[0]
        return out

    def hold_out(self, m: int, seed: int = 0) -> ArrayDataset:
        """Split off ``m`` points, chosen by a permutation seeded with ``seed``: the returned
        dataset trains on the other N − m points and carries the m as ``heldout`` (m, d)."""
        perm = holdout_permutation(self.name, self.points.shape[0], m, seed)
        labels = self.labels
        out = ArrayDataset(self.name, self.points[perm[m:]], self._params, image_shape=self.image_shape,
                           labels=None if labels is None else labels[perm[m:]])
        out.heldout = self.points[perm[:m]].contiguous()
        out.heldout_labels = None if labels is None else labels[perm[:m]]
        return out

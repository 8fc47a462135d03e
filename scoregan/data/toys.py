"""Toy targets in 2-D and n-D.

Mixture toys (8 Gaussians, 25 Gaussians, n-D mixtures) are exact :class:`GaussianMixture` objects;
the others (swiss roll, two moons, checkerboard, rings, pinwheel) are samplers with their own
noise. Every sampler draws only from the ``torch.Generator`` it is given.
"""

from __future__ import annotations

import math

import torch

from scoregan.data.base import Dataset, MixtureDataset
from scoregan.scores import GaussianMixture

# 8 Gaussians as in TorchCFM's ``sample_8gaussians``: radius 5, covariance sqrt(0.1)·I.
EIGHT_GAUSSIANS_STD = 0.1**0.25


def eight_gaussians(radius: float = 5.0, std: float = EIGHT_GAUSSIANS_STD, n_modes: int = 8) -> MixtureDataset:
    """``n_modes`` equal isotropic Gaussians evenly spaced on a circle of ``radius``."""
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    gm = GaussianMixture(means, torch.full((n_modes,), std, dtype=torch.float64))
    return MixtureDataset("8gaussians", gm, {"radius": radius, "std": std, "n_modes": n_modes})


def grid_gaussians(radius: float = 4.0, std: float = 0.05, n_modes: int = 25) -> MixtureDataset:
    """A k×k grid (k² = ``n_modes``) of equal isotropic Gaussians on [-radius, radius]²."""
    k = math.isqrt(n_modes)
    if k * k != n_modes or k < 2:
        raise ValueError(f"data.n_modes = {n_modes}: 25gaussians needs a square number >= 4 (4, 9, 16, 25, ...)")
    ticks = torch.linspace(-radius, radius, k, dtype=torch.float64)
    means = torch.cartesian_prod(ticks, ticks)
    gm = GaussianMixture(means, torch.full((n_modes,), std, dtype=torch.float64))
    return MixtureDataset("25gaussians", gm, {"radius": radius, "std": std, "n_modes": n_modes})


def nd_mixture(dim: int = 10, n_modes: int = 16, radius: float = 4.0, std: float = 0.5, seed: int = 0) -> MixtureDataset:
    """``n_modes`` isotropic Gaussians in R^dim with means drawn uniformly on the sphere of ``radius``.

    The means come from ``seed`` alone (not the training seed), so every run sees the same target.
    """
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_modes, dim, generator=g, dtype=torch.float64)
    means = radius * means / means.norm(dim=1, keepdim=True)
    gm = GaussianMixture(means, torch.full((n_modes,), std, dtype=torch.float64))
    return MixtureDataset("gmm", gm, {"dim": dim, "n_modes": n_modes, "radius": radius, "std": std, "seed": seed})


class _Toy2D(Dataset):
    dim = 2

    def __init__(self, **params: float):
        self._params = params
        for k, v in params.items():
            setattr(self, k, v)

    def params(self) -> dict:
        return dict(self._params)

    def _noise(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)


class SwissRoll(_Toy2D):
    """(t cos t, t sin t)·scale/(4.5π) for t ~ 1.5π(1 + 2U), plus isotropic noise; spans about ±scale."""

    name = "swiss_roll"

    def __init__(self, scale: float = 4.0, noise: float = 0.1):
        super().__init__(scale=scale, noise=noise)

    def _sample(self, n, generator):
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator, dtype=torch.float64))
        x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) * (self.scale / (4.5 * math.pi))
        return x + self._noise(n, generator)


class TwoMoons(_Toy2D):
    """Two interleaved half circles of radius ``scale``, centred on the origin, plus noise."""

    name = "two_moons"

    def __init__(self, scale: float = 2.0, noise: float = 0.1):
        super().__init__(scale=scale, noise=noise)

    def _sample(self, n, generator):
        theta = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        lower = torch.rand(n, generator=generator) < 0.5
        x = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
        x[lower] = torch.stack([1 - torch.cos(theta[lower]), 0.5 - torch.sin(theta[lower])], dim=1)
        x = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) * self.scale
        return x + self._noise(n, generator)


class Checkerboard(_Toy2D):
    """Uniform on the 8 dark cells of a 4×4 board covering [-scale, scale]²."""

    name = "checkerboard"

    def __init__(self, scale: float = 4.0):
        super().__init__(scale=scale)

    def _sample(self, n, generator):
        cell = torch.randint(0, 8, (n,), generator=generator)
        row, col = cell // 2, 2 * (cell % 2) + (cell // 2) % 2  # dark cells: (row + col) even
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        x = torch.stack([col + u[:, 0], row + u[:, 1]], dim=1)  # in [0, 4]²
        return (x / 2 - 1) * self.scale


class Rings(_Toy2D):
    """``n_modes`` concentric circles of radii scale·k/n_modes (k = 1..n), equal mass, plus noise."""

    name = "rings"

    def __init__(self, scale: float = 4.0, n_modes: int = 4, noise: float = 0.08):
        super().__init__(scale=scale, n_modes=n_modes, noise=noise)

    def _sample(self, n, generator):
        ring = torch.randint(1, self.n_modes + 1, (n,), generator=generator).to(torch.float64)
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        r = self.scale * ring / self.n_modes
        return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=1) + self._noise(n, generator)


class Pinwheel(_Toy2D):
    """``n_modes`` spiralling arms: a Gaussian (radial std 0.3, tangential 0.05) bent by a rate of 0.25."""

    name = "pinwheel"

    def __init__(self, scale: float = 2.0, n_modes: int = 5):
        super().__init__(scale=scale, n_modes=n_modes)

    def _sample(self, n, generator):
        arm = torch.randint(0, self.n_modes, (n,), generator=generator).to(torch.float64)
        eps = torch.randn(n, 2, generator=generator, dtype=torch.float64) * torch.tensor([0.3, 0.05], dtype=torch.float64)
        eps[:, 0] += 1.0
        angle = arm * (2 * math.pi / self.n_modes) + 0.25 * torch.exp(eps[:, 0])
        c, s = torch.cos(angle), torch.sin(angle)
        x = torch.stack([c * eps[:, 0] - s * eps[:, 1], s * eps[:, 0] + c * eps[:, 1]], dim=1)
        return self.scale * x

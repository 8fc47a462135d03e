"""Mode coverage and high-quality fraction of samples against a Gaussian mixture target.

The classic 2-D convention (Unrolled GAN, VEEGAN) calls a sample *high quality* (HQ) when it lies
within 3 standard deviations of its nearest mode, ‖x − μ_k‖ <= 3σ_k. In d dimensions a sample of
N(μ, σ²I_d) sits at distance ≈ σ√d from μ, so a fixed 3σ ball would reject almost every true
sample. Here the radius keeps the *probability* of the 2-D rule instead: with
‖x − μ‖²/σ² ~ χ²_d for x ~ N(μ, σ²I_d),

    x is HQ  ⇔  ‖x − μ_k‖ / σ_k <= r_d,    r_d = sqrt(F⁻¹_{χ²_d}(p)),   p = 1 − exp(−n_std²/2),

where p = P(χ²_2 <= n_std²) is the probability of the 2-D rule. So r_2 = n_std exactly (the classic
rule), and a sample of an isotropic component is HQ with probability p in every dimension
(0.98889 for n_std = 3; r_1 = 2.54, r_10 = 4.79 for n_std = 3). The nearest mode is the one with the
smallest standardised distance ‖x − μ_k‖/σ_k (the Euclidean nearest when all σ_k are equal), so a
sample is HQ exactly when it lies within r_d σ_k of some mode k. For a well-separated mixture the
HQ fraction of a perfect sampler is p (``ModeStats.hq_expected``). For a non-isotropic component,
``GaussianMixture.component_stds`` is the std along its widest axis, which makes the ball larger
and the probability >= p.

A mode is *covered* when at least ``min_count`` HQ samples are assigned to it. The default scales
with the sample size and the mode's weight: 5 % of the number of HQ samples a perfect sampler would
put there, at least 1,

    min_count_k = max(1, ceil(0.05 · N · w_k · p)),

(5 for N = 2500 samples of 25 equal modes, in the spirit of the VEEGAN / Unrolled-GAN counts, and
insensitive to n_std). A perfect sampler misses it only with negligible probability once N w_k p
is a few dozen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from scipy.stats import chi2

from scoregan._checks import check_int, check_positive
from scoregan.metrics._common import Samples, as_real, as_samples, pairwise_distances, row_chunks

__all__ = ["ModeStats", "mode_stats", "hq_radius", "hq_probability", "COVERAGE_FRACTION"]

#: Default coverage threshold: this share of a mode's expected number of HQ samples.
COVERAGE_FRACTION = 0.05


@dataclass(frozen=True)
class ModeStats:
    """Mode statistics of N samples against a K-mode mixture (module doc).

    modes_covered: modes with at least ``min_counts[k]`` HQ samples; n_modes: K;
    hq_fraction: share of HQ samples; counts: HQ samples assigned to each mode (K,);
    min_counts: the coverage threshold of each mode (K,); covered: per mode (K,);
    radius: the HQ radius r_d in units of the component std; hq_expected: p = 1 − exp(−n_std²/2),
    the HQ probability of a sample of an isotropic component.
    """

    modes_covered: int
    n_modes: int
    hq_fraction: float
    counts: list[int]
    min_counts: list[int]
    covered: list[bool]
    radius: float
    hq_expected: float

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values."""
        return asdict(self)


def hq_probability(n_std: float) -> float:
    """p = P(‖N(0, I₂)‖ <= n_std) = 1 − exp(−n_std²/2): the HQ probability in every dimension."""
    n_std = as_real("n_std", n_std, positive=True)
    return -math.expm1(-0.5 * n_std**2)


def hq_radius(n_std: float, dim: int) -> float:
    """r_d = sqrt(F⁻¹_{χ²_d}(1 − exp(−n_std²/2))), so that P(‖N(0, I_d)‖ <= r_d) = P(‖N(0, I₂)‖ <= n_std).

    Equals n_std for dim = 2 (computed through the survival function for accuracy in the tail).
    """
    n_std = as_real("n_std", n_std, positive=True)
    check_int("dim", dim, minimum=1)
    return math.sqrt(float(chi2.isf(math.exp(-0.5 * n_std**2), dim)))


def _mixture_parameters(mixture: Any, dim: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """means (K, d), weights (K,) normalised, stds (K,) of ``mixture`` as float64 on ``device``."""
    missing = [a for a in ("means", "weights", "component_stds") if not hasattr(mixture, a)]
    if missing:
        raise ValueError(f"mixture must have attributes means (K, d), weights (K,) and component_stds (K,) "
                         f"(a scoregan.scores.GaussianMixture); {type(mixture).__name__} lacks {', '.join(missing)}")
    means = torch.as_tensor(mixture.means).detach().to(device=device, dtype=torch.float64)
    weights = torch.as_tensor(mixture.weights).detach().to(device=device, dtype=torch.float64)
    stds = torch.as_tensor(mixture.component_stds).detach().to(device=device, dtype=torch.float64)
    if means.ndim != 2 or means.shape[1] != dim:
        raise ValueError(f"mixture.means must have shape (K, {dim}) to match x, got {tuple(means.shape)}")
    k = means.shape[0]
    for name, t in (("mixture.weights", weights), ("mixture.component_stds", stds)):
        if tuple(t.shape) != (k,):
            raise ValueError(f"{name} must have shape ({k},), got {tuple(t.shape)}")
        check_positive(name, t)
    return means, weights / weights.sum(), stds


def mode_stats(x: Samples, mixture: Any, *, n_std: float = 3.0, min_count: int | None = None) -> ModeStats:
    """Modes covered and high-quality fraction of samples x (N, d) against ``mixture`` (module doc).

    mixture: a :class:`scoregan.scores.GaussianMixture` (any object with ``means`` (K, d),
    ``weights`` (K,) and ``component_stds`` (K,)). n_std: the 2-D radius in stds, carried to d
    dimensions at equal probability. min_count: HQ samples a mode needs to count as covered (the
    same for every mode); None for the weight- and size-scaled default of the module doc.
    """
    x = as_samples("x", x)
    n, d = x.shape
    p = hq_probability(n_std)
    radius = hq_radius(n_std, d)
    if min_count is not None:
        check_int("min_count", min_count, minimum=1)
    means, weights, stds = _mixture_parameters(mixture, d, x.device)
    k = means.shape[0]

    counts = torch.zeros(k, dtype=torch.int64, device=x.device)
    for rows in row_chunks(n, k):
        z = pairwise_distances(x[rows], means) / stds  # standardised distances (n_b, K)
        best, mode = z.min(dim=1)
        counts += torch.bincount(mode[best <= radius], minlength=k)
    counts_list = [int(c) for c in counts.cpu()]
    if min_count is None:
        min_counts = [max(1, math.ceil(COVERAGE_FRACTION * n * float(w) * p)) for w in weights.cpu()]
    else:
        min_counts = [min_count] * k
    covered = [c >= m for c, m in zip(counts_list, min_counts)]
    return ModeStats(
        modes_covered=sum(covered),
        n_modes=k,
        hq_fraction=sum(counts_list) / n,
        counts=counts_list,
        min_counts=min_counts,
        covered=covered,
        radius=radius,
        hq_expected=p,
    )

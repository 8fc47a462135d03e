"""Kernel discrepancies: unbiased MMD² (Gaussian kernel), energy distance, and KID.

All three are the same U-statistic with different kernels k. For x (N, d), y (M, d),

    MMD²_u = 1/(N(N−1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M−1)) Σ_{i≠j} k(y_i, y_j) − 2/(NM) Σ_{i,j} k(x_i, y_j),

an unbiased estimate of E k(X, X') + E k(Y, Y') − 2 E k(X, Y) (so it can be negative; its mean
is 0 when the two distributions agree). Kernels:

* ``mmd2``: Gaussian k = exp(−‖x − y‖² / (2h²)), with the bandwidth h given or by the median
  heuristic (the lower median of the pairwise distances of the pooled sample, at most 2048
  points at evenly spaced indices of [x; y]: deterministic), as
  :func:`scoregan.objectives.kernels.median_bandwidth` computes it for the MMD-GAN kernels.
* ``energy_distance``: k = −‖x − y‖, giving 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ with
  U-statistics for the within-sample terms (unbiased; the V-statistic version, which keeps the
  zero diagonal, is biased upwards by E‖X − X'‖/N + E‖Y − Y'‖/M).
* ``kid``: the cubic polynomial kernel k = (xᵀy / d + 1)³ on feature vectors, averaged over random
  subsets (Bińkowski et al. 2018, "Demystifying MMD GANs").

All three use the estimator :func:`scoregan.objectives.kernels.mmd2`, in float64, kernel matrices
a row block of at most ``scoregan.objectives.kernels.BUDGETS.tile`` (2^22) entries at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from scoregan._checks import check_choice, check_int
from scoregan.metrics._common import Samples, SeedLike, as_pair, as_real, make_generator, randperm
from scoregan.objectives.kernels import kernel as make_kernel
from scoregan.objectives.kernels import median_bandwidth
from scoregan.objectives.kernels import mmd2 as kernel_mmd2

__all__ = ["MMD2Result", "KIDResult", "mmd2", "energy_distance", "kid", "median_heuristic", "MEDIAN_MAX_POINTS"]

#: Most points of the pooled sample that enter the median heuristic.
MEDIAN_MAX_POINTS = 2048

class MMD2Result(NamedTuple):
    """Unbiased MMD² and the Gaussian bandwidth h it used."""

    value: float
    bandwidth: float


class KIDResult(NamedTuple):
    """KID: mean and standard deviation (ddof=0, as torch-fidelity reports it) over subsets."""

    mean: float
    std: float
    subsets: int
    subset_size: int


def median_heuristic(a: Samples, b: Samples) -> float:
    """Median-heuristic bandwidth of the pooled sample [a; b]: the lower median of its pairwise
    distances (at most ``MEDIAN_MAX_POINTS`` points at evenly spaced indices; 1.0 if they all
    coincide). a: (N, d), b: (M, d)."""
    x, y = as_pair("a", a, "b", b)
    return median_bandwidth(y, x, max_points=MEDIAN_MAX_POINTS)


def _bandwidth(value: float | str, x: torch.Tensor, y: torch.Tensor) -> float:
    if isinstance(value, str):
        check_choice("bandwidth", value, ("median",))
        return median_bandwidth(y, x, max_points=MEDIAN_MAX_POINTS)
    return as_real("bandwidth", value, positive=True)


def mmd2(a: Samples, b: Samples, *, bandwidth: float | str = "median") -> MMD2Result:
    """Unbiased MMD² between a (N, d) and b (M, d) with k = exp(−‖x − y‖² / (2h²)) (module doc).

    bandwidth: h > 0, or "median" for the median heuristic on the pooled sample. Returns
    ``MMD2Result(value, bandwidth)``. Needs N, M >= 2.
    """
    x, y = as_pair("a", a, "b", b, min_rows=2)
    h = _bandwidth(bandwidth, x, y)
    k = make_kernel("gaussian", bandwidth=h)
    return MMD2Result(float(kernel_mmd2(k, x, y)), h)


def energy_distance(a: Samples, b: Samples) -> float:
    """Energy distance 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ between a (N, d) and b (M, d).

    Unbiased: the within-sample means run over distinct pairs (U-statistics), so the estimate can
    be slightly negative when the distributions agree. Needs N, M >= 2.
    """
    x, y = as_pair("a", a, "b", b, min_rows=2)
    return float(kernel_mmd2(make_kernel("energy"), x, y))


def _cubic_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(xᵀy / d + 1)³: (n, d), (m, d) → (n, m)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kid(feat_a: Samples, feat_b: Samples, *, subsets: int = 100, subset_size: int | None = None,
        generator: SeedLike = None) -> KIDResult:
    """Kernel inception distance between features feat_a (N, d) and feat_b (M, d).

    For each of ``subsets`` rounds, draws ``subset_size`` rows of each set without replacement
    (from ``generator``: a ``torch.Generator``, an int seed, or None for the fixed default seed)
    and computes MMD²_u with k = (xᵀy / d + 1)³; returns the mean and std (ddof=0) over rounds.
    subset_size: at most min(N, M); None means min(1000, N, M) (1000 is the usual choice).
    """
    x, y = as_pair("feat_a", feat_a, "feat_b", feat_b, min_rows=2)
    check_int("subsets", subsets, minimum=1)
    n_max = min(x.shape[0], y.shape[0])
    if subset_size is None:
        subset_size = min(1000, n_max)
    check_int("subset_size", subset_size, minimum=2)
    if subset_size > n_max:
        raise ValueError(f"subset_size={subset_size} exceeds the smaller feature set (feat_a has {x.shape[0]} "
                         f"rows, feat_b {y.shape[0]}); pass subset_size <= {n_max}")
    g = make_generator(generator)
    values = torch.empty(subsets, dtype=torch.float64, device=x.device)
    for r in range(subsets):
        ia = randperm(x.shape[0], g, x.device)[:subset_size]
        ib = randperm(y.shape[0], g, y.device)[:subset_size]
        values[r] = kernel_mmd2(_cubic_kernel, x[ia], y[ib])
    return KIDResult(float(values.mean()), float(values.std(correction=0)), subsets, subset_size)

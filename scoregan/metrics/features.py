"""Feature-space metrics: Fréchet distance (the FID formula) and k-NN precision / recall.

Fréchet distance between Gaussians N(μ_a, Σ_a), N(μ_b, Σ_b) fitted to two feature sets (the FID
formula, which is the *squared* 2-Wasserstein distance between the two Gaussians):

    FD = ‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a Σ_b)^{1/2}.

Σ_aΣ_b is similar to the symmetric PSD matrix M = Σ_a^{1/2} Σ_b Σ_a^{1/2} (same eigenvalues), so
tr (Σ_aΣ_b)^{1/2} = Σ_i sqrt(λ_i(M)), computed with symmetric eigendecompositions in float64: no
complex square root, hence no imaginary parts to discard; eigenvalues below 0 (rounding) count as
0. Covariances are unbiased (ddof = 1), as in the usual FID code.

Precision / recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for assessing
generative models"): each real sample r carries the ball of radius ‖r − NN_k(r)‖ (its k-th nearest
other real sample), each fake sample likewise within the fake set.
precision = share of fake samples inside at least one real ball; recall = share of real samples
inside at least one fake ball. Distances are computed a block of at most 2^22 pairs at a time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from scoregan._checks import check_int
from scoregan.metrics._common import Samples, as_pair, pairwise_distances, psd_sqrt, row_chunks

__all__ = ["frechet_distance", "gaussian_frechet_distance", "PrecisionRecall", "precision_recall"]


def _as_float64(name: str, value: Any, shape: tuple[int, ...] | None, ndim: int,
                device: torch.device | None) -> torch.Tensor:
    """``value`` as a finite real float64 tensor with ``ndim`` dims (and ``shape`` when given)."""
    t = torch.as_tensor(value)
    if t.ndim != ndim or (shape is not None and tuple(t.shape) != shape):
        want = shape if shape is not None else ("d",) * ndim
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    if t.is_complex():
        raise ValueError(f"{name} must be real, got dtype {t.dtype}")
    t = t.detach().to(device=device if device is not None else t.device, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return t


def gaussian_frechet_distance(mean_a: Any, cov_a: Any, mean_b: Any, cov_b: Any) -> float:
    """‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a Σ_b)^{1/2} (module doc), clipped at 0.

    mean_a, mean_b: (d,); cov_a, cov_b: (d, d) symmetric PSD (tensors or arrays).
    """
    mu_a = _as_float64("mean_a", mean_a, None, 1, None)
    d = mu_a.shape[0]
    dev = mu_a.device
    mu_b = _as_float64("mean_b", mean_b, (d,), 1, dev)
    s_a = _as_float64("cov_a", cov_a, (d, d), 2, dev)
    s_b = _as_float64("cov_b", cov_b, (d, d), 2, dev)
    for name, s in (("cov_a", s_a), ("cov_b", s_b)):
        if float((s - s.mT).abs().max()) > 1e-6 * max(float(s.abs().max()), 1e-300):
            raise ValueError(f"{name} must be symmetric (max |C - C^T| = {float((s - s.mT).abs().max()):.3g})")
    s_a, s_b = 0.5 * (s_a + s_a.mT), 0.5 * (s_b + s_b.mT)
    root_a = psd_sqrt(s_a)
    middle = root_a @ s_b @ root_a
    tr_sqrt = torch.linalg.eigvalsh(0.5 * (middle + middle.mT)).clamp_min(0).sqrt().sum()
    value = ((mu_a - mu_b) ** 2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2.0 * tr_sqrt
    return max(float(value), 0.0)


def frechet_distance(feat_a: Samples, feat_b: Samples) -> float:
    """Fréchet distance (FID formula) between Gaussian fits of features feat_a (N, d), feat_b (M, d).

    Means and unbiased covariances (N, M >= 2) in float64, then :func:`gaussian_frechet_distance`.
    """
    x, y = as_pair("feat_a", feat_a, "feat_b", feat_b, min_rows=2)
    stats = []
    for z in (x, y):
        mu = z.mean(dim=0)
        zc = z - mu
        stats += [mu, zc.T @ zc / (z.shape[0] - 1)]
    return gaussian_frechet_distance(*stats)


class PrecisionRecall(NamedTuple):
    """k-NN manifold precision and recall, both in [0, 1]."""

    precision: float
    recall: float


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row of x (N, d) to its k-th nearest other row: (N,)."""
    radii = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for rows in row_chunks(x.shape[0], x.shape[0]):
        # The (k+1)-th smallest distance in the row: the 0 to itself comes first.
        radii[rows] = pairwise_distances(x[rows], x).kthvalue(k + 1, dim=1).values
    return radii


def _share_inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of queries (Q, d) within radii (C,) of at least one centre (C, d)."""
    inside = 0
    for rows in row_chunks(queries.shape[0], centres.shape[0]):
        inside += int((pairwise_distances(queries[rows], centres) <= radii).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(real: Samples, fake: Samples, *, k: int = 3) -> PrecisionRecall:
    """k-NN precision and recall of fake (M, d) against real (N, d) (module doc); N, M > k."""
    check_int("k", k, minimum=1)
    x, y = as_pair("real", real, "fake", fake, min_rows=k + 1)
    precision = _share_inside(y, x, _knn_radii(x, k))
    recall = _share_inside(x, y, _knn_radii(y, k))
    return PrecisionRecall(precision, recall)

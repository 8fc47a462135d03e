"""Closed-form Gaussian mixtures: sampling, exact log-density, exact score, noise perturbation.

    p(x) = Σ_k w_k N(x; μ_k, Σ_k),      x ∈ R^d,  k = 1..K
    s(x) = ∇ₓ log p(x) = Σ_k γ_k(x) · (−Σ_k⁻¹ (x − μ_k)),   γ_k(x) = w_k N(x; μ_k, Σ_k) / p(x)

Covariances come in three kinds, each with its own fast path:

- ``"isotropic"``: Σ_k = σ_k² I   (``stds_or_covs`` a scalar or a (K,) tensor)
- ``"diagonal"``:  Σ_k = diag(σ_k1², ..., σ_kd²)   (a (K, d) tensor of stds)
- ``"full"``:      Σ_k any SPD matrix   (a (K, d, d) tensor; used through its Cholesky factor)

This is the reference density of the test suite (every identity of docs/theory.md §3–§5 is checked against
it) and the toy data's own class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from scoregan._checks import check_int, check_matrix, check_positive

__all__ = ["GaussianMixture"]

_LOG_2PI = math.log(2.0 * math.pi)


def _as_float_tensor(name: str, value: Any, *, dtype: torch.dtype | None = None,
                     device: torch.device | None = None) -> torch.Tensor:
    """A floating tensor from ``value`` in ``dtype``; without one, array-likes become float32 unless they
    are float64 numpy arrays."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if not t.is_floating_point():
            t = t.to(torch.float32)
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # pragma: no cover - numpy accepts nearly anything
            raise ValueError(f"{name} must be a tensor or array-like of numbers, got {type(value).__name__}") from exc
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must be a tensor or array-like of numbers, got {value!r}")
        given_f64 = isinstance(value, (np.ndarray, np.floating)) and arr.dtype == np.float64
        # Straight to the target dtype: a Python float for a float64 mixture is not rounded through float32.
        t = torch.as_tensor(arr, dtype=dtype if dtype is not None else torch.float64 if given_f64 else torch.float32)
    if dtype is not None or device is not None:
        t = t.to(device=device if device is not None else t.device, dtype=dtype if dtype is not None else t.dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return t


class GaussianMixture:
    """A mixture of K Gaussians in R^d with exact ``log_prob``, ``score`` and ``sample``.

    Args:
        means: (K, d) component means. Its dtype and device (float32 for array-likes unless they
            are float64) are those of every parameter and every output.
        stds_or_covs: a scalar (one isotropic std for all components), a (K,) tensor (isotropic std
            per component), a (K, d) tensor (diagonal stds) or a (K, d, d) tensor (full SPD
            covariances).
        weights: (K,) positive mixing weights, normalised here; uniform when ``None``.
    """

    def __init__(self, means: Any, stds_or_covs: Any, weights: Any | None = None) -> None:
        mu = _as_float_tensor("means", means)
        if mu.ndim != 2 or mu.shape[0] < 1 or mu.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got shape {tuple(mu.shape)}")
        K, d = mu.shape
        dtype, device = mu.dtype, mu.device
        self._means = mu

        sc = _as_float_tensor("stds_or_covs", stds_or_covs, dtype=dtype, device=device)
        self._stds: torch.Tensor | None = None
        self._chol: torch.Tensor | None = None
        if sc.ndim == 0 or sc.ndim == 1:
            if sc.ndim == 1 and sc.shape[0] != K:
                raise ValueError(f"stds_or_covs of shape {tuple(sc.shape)} must have K={K} entries (one std per component)")
            check_positive("stds_or_covs", sc)
            self._kind = "isotropic"
            self._stds = sc.expand(K).clone()
        elif sc.ndim == 2:
            if tuple(sc.shape) != (K, d):
                raise ValueError(f"stds_or_covs of shape {tuple(sc.shape)} must have shape (K, d) = {(K, d)} (diagonal stds)")
            check_positive("stds_or_covs", sc)
            self._kind = "diagonal"
            self._stds = sc.clone()
        elif sc.ndim == 3:
            if tuple(sc.shape) != (K, d, d):
                raise ValueError(f"stds_or_covs of shape {tuple(sc.shape)} must have shape (K, d, d) = {(K, d, d)} (covariances)")
            asym = (sc - sc.mT).abs().amax()
            if float(asym) > 1e-6 * max(float(sc.abs().amax()), 1e-30):
                raise ValueError(f"stds_or_covs: the covariances must be symmetric (max |C - C^T| = {float(asym):.3g})")
            sc = 0.5 * (sc + sc.mT)
            chol, info = torch.linalg.cholesky_ex(sc)
            bad = torch.nonzero(info).flatten().tolist()
            if bad:
                raise ValueError(f"stds_or_covs: covariance(s) {bad} are not positive definite (Cholesky failed)")
            self._kind = "full"
            self._covs = sc
            self._chol = chol
        else:
            raise ValueError(f"stds_or_covs must be a scalar or have shape (K,), (K, d) or (K, d, d); got shape {tuple(sc.shape)}")

        if weights is None:
            w = torch.full((K,), 1.0 / K, dtype=dtype, device=device)
        else:
            w = _as_float_tensor("weights", weights, dtype=dtype, device=device)
            if tuple(w.shape) != (K,):
                raise ValueError(f"weights must have shape (K,) = ({K},), got shape {tuple(w.shape)}")
            check_positive("weights", w)
            w = w / w.sum()
        self._weights = w
        self._cache: dict[tuple[torch.device, torch.dtype], GaussianMixture] = {}

    # ------------------------------------------------------------------ parameters
    @property
    def kind(self) -> str:
        """``"isotropic"``, ``"diagonal"`` or ``"full"``."""
        return self._kind

    @property
    def means(self) -> torch.Tensor:
        """(K, d) component means."""
        return self._means

    @property
    def weights(self) -> torch.Tensor:
        """(K,) normalised mixing weights."""
        return self._weights

    @property
    def dim(self) -> int:
        return int(self._means.shape[1])

    @property
    def n_components(self) -> int:
        return int(self._means.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self._means.dtype

    @property
    def device(self) -> torch.device:
        return self._means.device

    @property
    def covariances(self) -> torch.Tensor:
        """(K, d, d) component covariances Σ_k."""
        if self._kind == "full":
            return self._covs
        var = self._stds**2
        if self._kind == "isotropic":
            eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
            return var[:, None, None] * eye
        return torch.diag_embed(var)

    @property
    def component_stds(self) -> torch.Tensor:
        """(K,) one std per component: σ_k when isotropic; else sqrt of the largest eigenvalue of Σ_k.

        Mode statistics ("within 3 std of a mode") use it; for a non-isotropic component it is the
        std along its widest axis, so such a ball contains the whole 3-std ellipsoid.
        """
        if self._kind == "isotropic":
            return self._stds
        if self._kind == "diagonal":
            return self._stds.amax(dim=1)
        return torch.linalg.eigvalsh(self._covs)[:, -1].clamp_min(0).sqrt()

    @property
    def overall_mean(self) -> torch.Tensor:
        """(d,) mean of the mixture, Σ_k w_k μ_k."""
        return self._weights @ self._means

    @property
    def overall_covariance(self) -> torch.Tensor:
        """(d, d) covariance of the mixture, Σ_k w_k (Σ_k + μ_k μ_kᵀ) − m mᵀ."""
        m = self.overall_mean
        second = torch.einsum("k,kij->ij", self._weights, self.covariances + self._means[:, :, None] * self._means[:, None, :])
        return second - torch.outer(m, m)

    def __repr__(self) -> str:
        return (f"GaussianMixture(n_components={self.n_components}, dim={self.dim}, kind={self._kind!r}, "
                f"dtype={self.dtype}, device={self.device})")

    # ------------------------------------------------------------------ conversions
    def _stds_or_covs(self) -> torch.Tensor:
        return self._covs if self._kind == "full" else self._stds

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GaussianMixture:
        """The same mixture with its parameters on ``device`` / in ``dtype`` (self if unchanged)."""
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else dtype
        if device == self.device and dtype == self.dtype:
            return self
        conv = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return GaussianMixture(conv(self._means), conv(self._stds_or_covs()), conv(self._weights))

    def _matching(self, x: torch.Tensor) -> GaussianMixture:
        """This mixture in ``x``'s dtype and device (cached), so outputs follow the input."""
        if x.dtype == self.dtype and x.device == self.device:
            return self
        key = (x.device, x.dtype)
        if key not in self._cache:
            self._cache[key] = self.to(x.device, x.dtype)
        return self._cache[key]

    def _check_x(self, x: Any) -> torch.Tensor:
        check_matrix("x", x, dim=self.dim)
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating tensor, got dtype {x.dtype}")
        return x

    # ------------------------------------------------------------------ densities and scores
    def _joint(self, x: torch.Tensor, *, need_precision_diff: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log(w_k N(x_n; μ_k, Σ_k)) as (N, K) and, if asked, Σ_k⁻¹(x_n − μ_k) as (N, K, d)."""
        d = self.dim
        diff = x[:, None, :] - self._means[None, :, :]  # (N, K, d)
        if self._kind == "full":
            L = self._chol  # (K, d, d)
            z = torch.linalg.solve_triangular(L, diff.permute(1, 2, 0), upper=False)  # (K, d, N)
            maha = (z**2).sum(dim=1).T  # (N, K)
            half_logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (K,)
            prec = None
            if need_precision_diff:
                prec = torch.linalg.solve_triangular(L.mT, z, upper=True).permute(2, 0, 1)  # (N, K, d)
        else:
            inv_var = self._stds ** -2  # (K,) or (K, d)
            if self._kind == "isotropic":
                maha = (diff**2).sum(-1) * inv_var
                half_logdet = d * torch.log(self._stds)
                inv_var_b = inv_var[None, :, None]
            else:
                maha = (diff**2 * inv_var).sum(-1)
                half_logdet = torch.log(self._stds).sum(-1)
                inv_var_b = inv_var[None]
            prec = diff * inv_var_b if need_precision_diff else None
        log_joint = torch.log(self._weights) - 0.5 * maha - half_logdet - 0.5 * d * _LOG_2PI
        return log_joint, prec

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) as (N,) for x (N, d): logsumexp_k [log w_k + log N(x; μ_k, Σ_k)]."""
        x = self._check_x(x)
        gm = self._matching(x)
        log_joint, _ = gm._joint(x, need_precision_diff=False)
        return torch.logsumexp(log_joint, dim=1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """γ(x) as (N, K): posterior probability of each component, softmax_k of the joint log-density."""
        x = self._check_x(x)
        gm = self._matching(x)
        log_joint, _ = gm._joint(x, need_precision_diff=False)
        return torch.softmax(log_joint, dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """s(x) = ∇ₓ log p(x) as (N, d): Σ_k γ_k(x) · (−Σ_k⁻¹(x − μ_k)), exact."""
        x = self._check_x(x)
        gm = self._matching(x)
        log_joint, prec = gm._joint(x, need_precision_diff=True)
        gamma = torch.softmax(log_joint, dim=1)
        return -torch.einsum("nk,nkd->nd", gamma, prec)

    def log_ratio(self, other: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
        """log p(x) − log q(x) as (N,), with q = ``other`` (a mixture in the same dimension)."""
        if not isinstance(other, GaussianMixture):
            raise ValueError(f"other must be a GaussianMixture, got {type(other).__name__}")
        if other.dim != self.dim:
            raise ValueError(f"other has dimension {other.dim} but this mixture has dimension {self.dim}")
        return self.log_prob(x) - other.log_prob(x)

    def perturbed(self, sigma: float | torch.Tensor) -> GaussianMixture:
        """p * N(0, σ²I): the same mixture with every covariance Σ_k + σ²I (σ >= 0)."""
        check_positive("sigma", sigma, allow_zero=True)
        s2 = torch.as_tensor(sigma, dtype=self.dtype, device=self.device) ** 2
        if s2.ndim != 0:
            raise ValueError(f"sigma must be a scalar, got shape {tuple(s2.shape)}")
        if self._kind == "full":
            eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
            return GaussianMixture(self._means, self._covs + s2 * eye, self._weights)
        return GaussianMixture(self._means, torch.sqrt(self._stds**2 + s2), self._weights)

    # ------------------------------------------------------------------ sampling
    def sample_with_labels(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples (n, d) and their component labels (n,) int64; deterministic given ``generator``.

        ``generator`` must live on the mixture's device (a CUDA generator for a CUDA mixture).
        """
        check_int("n", n, minimum=1)
        labels = torch.multinomial(self._weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        if self._kind == "full":
            noise = torch.einsum("nij,nj->ni", self._chol[labels], eps)
        elif self._kind == "isotropic":
            noise = eps * self._stds[labels, None]
        else:
            noise = eps * self._stds[labels]
        return self._means[labels] + noise, labels

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples as (n, d); deterministic given ``generator``."""
        return self.sample_with_labels(n, generator)[0]

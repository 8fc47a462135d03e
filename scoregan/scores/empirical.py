"""The score of a perturbed empirical measure: a lag-free, network-free score of a sampler.

For centres y_1..y_M (M, d) drawn from p and a noise level σ_i per query point, the perturbed
empirical measure p̂^σ = (1/M) Σ_j N(y_j, σ²I) has the closed-form score (Tweedie's formula)

    ∇log p̂^σ(x_i) = (Σ_j a_ij y_j − x_i) / σ_i²,    a_ij = softmax_j(−‖x_i − y_j‖² / (2σ_i²)),

a consistent estimate of ∇log p^σ(x_i) as M → ∞ (a self-normalised importance estimate of the
posterior mean E[y | x]). The score-matching GAN uses it for the generator's score with a fresh
generated batch as centres: unlike a network fitted online, it never lags the generator.
:class:`BankScore` wraps a fixed bank as a noise-conditional score s(x, σ) with its log-density
log p̂^σ(x) = logsumexp_j(−‖x − y_j‖² / 2σ²) − log M − (d/2) log(2πσ²) (what a Metropolis step needs):
the Gaussian kernel density estimate of the bank at bandwidth σ.
"""

from __future__ import annotations

import math

import torch

from scoregan._checks import check_matrix

__all__ = ["BankScore", "empirical_log_prob", "empirical_posterior_mean", "empirical_score", "scott_bandwidth"]


def _row_sigmas(x: torch.Tensor, centres: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Check x (N, d) and centres (M, d); return σ as an (N,) tensor of positive levels."""
    check_matrix("x", x)
    check_matrix("centres", centres, dim=x.shape[1])
    sig = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    if sig.ndim == 0:
        sig = sig.expand(x.shape[0])
    if sig.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a float or have shape ({x.shape[0]},), got {tuple(sig.shape)}")
    if not bool((sig > 0).all()):
        raise ValueError(f"sigma must be > 0, got min {float(sig.min())}")
    return sig


def _centred_posterior_mean(x: torch.Tensor, centres: torch.Tensor, sig: torch.Tensor,
                            chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(E[y | x] − m, x − m, m) with m the centres' mean (N, d), (N, d), (d,).

    E[y | x] is shift-equivariant; working on shifted points matters in float32 because the logits
    below drop the per-row ‖x‖², and without the shift their rounding grows like ‖m‖² / σ²."""
    m = centres.mean(dim=0)
    x, centres = x - m, centres - m
    out = torch.empty_like(x)
    c2 = (centres * centres).sum(dim=1)
    for lo in range(0, x.shape[0], chunk):
        xb, sb = x[lo:lo + chunk], sig[lo:lo + chunk]
        # −‖x − y‖² / 2σ² up to a per-row constant: (2 x·y − ‖y‖²) / 2σ²
        logits = torch.addmm(-c2, xb, centres.T, alpha=2.0) / (2.0 * sb[:, None] ** 2)
        out[lo:lo + chunk] = torch.softmax(logits, dim=1) @ centres
    return out, x, m


def empirical_posterior_mean(x: torch.Tensor, centres: torch.Tensor, sigma: torch.Tensor | float,
                             *, chunk: int = 4096) -> torch.Tensor:
    """E[y | x] (N, d) under p̂^σ: Σ_j a_ij y_j with a_ij the softmax of −‖x_i − y_j‖² / (2σ_i²).

    x (N, d) query points, centres (M, d), sigma a float or (N,) per-row noise levels (> 0).
    Rows are processed ``chunk`` at a time (memory O(chunk · M))."""
    mean, _, m = _centred_posterior_mean(x, centres, _row_sigmas(x, centres, sigma), chunk)
    return mean + m


def empirical_score(x: torch.Tensor, centres: torch.Tensor, sigma: torch.Tensor | float,
                    *, chunk: int = 4096) -> torch.Tensor:
    """∇log p̂^σ(x) (N, d) of the perturbed empirical measure of ``centres`` (module docstring)."""
    sig = _row_sigmas(x, centres, sigma)
    mean, xc, _ = _centred_posterior_mean(x, centres, sig, chunk)
    return (mean - xc) / sig[:, None] ** 2


def empirical_log_prob(x: torch.Tensor, centres: torch.Tensor, sigma: torch.Tensor | float,
                       *, chunk: int = 4096) -> torch.Tensor:
    """log p̂^σ(x) (N,) of the perturbed empirical measure of ``centres`` (M, d) (module docstring)."""
    sig = _row_sigmas(x, centres, sigma)
    m = centres.mean(dim=0)
    xc, cc = x - m, centres - m  # the same shift as the score: distances keep their float32 precision
    out = torch.empty(x.shape[0], device=x.device, dtype=x.dtype)
    for lo in range(0, x.shape[0], chunk):
        xb, sb = xc[lo:lo + chunk], sig[lo:lo + chunk]
        sq = torch.cdist(xb, cc).pow(2)
        out[lo:lo + chunk] = torch.logsumexp(-sq / (2.0 * sb[:, None] ** 2), dim=1)
    d = x.shape[1]
    return out - math.log(centres.shape[0]) - 0.5 * d * torch.log(2.0 * math.pi * sig**2)


def scott_bandwidth(x: torch.Tensor) -> float:
    """Scott's rule for an isotropic Gaussian KDE of x (M, d): h = σ̄ · M^(−1/(d+4)), σ̄ the mean std."""
    m, d = check_matrix("x", x).shape
    return float(x.std(dim=0).mean()) * m ** (-1.0 / (d + 4))


class BankScore:
    """The noise-conditional score of a fixed sample bank (M, d): s(x, σ) = ∇log p̂^σ(x) (N, d) and
    ``log_prob(x, σ)`` (N,), p̂^σ = (1/M) Σ_j N(b_j, σ²I) (a Gaussian KDE at bandwidth σ)."""

    def __init__(self, bank: torch.Tensor):
        self.bank = check_matrix("bank", bank).detach()

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return empirical_score(x, self.bank.to(x), sigma)

    def log_prob(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return empirical_log_prob(x, self.bank.to(x), sigma)

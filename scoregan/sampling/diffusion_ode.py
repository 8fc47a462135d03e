"""The probability-flow ODE of a score model through torchdiffeq: adaptive sampling and exact likelihoods.

For the variance-exploding process x_σ = x_0 + σε with score s(x, σ) = ∇log p^σ(x), the marginals p^σ
are carried by

    dx/dσ = v(x, σ) = −σ s(x, σ)        (Song et al. 2021; Karras et al. 2022 with σ(t) = t),

the same ODE that :func:`~scoregan.sampling.sample_heun` steps on a fixed grid. Here an adaptive
solver (``dopri5`` by default; any method of :mod:`scoregan.sampling.ode`) integrates it in
u = ln σ,

    dx/du = −σ² s(x, σ) = D(x, σ) − x      (D the Tweedie denoiser: bounded, smooth in u),

from ln σ_max down to ln σ_min (σ stays positive however far a solver probes), and one Tweedie
step x ← x + σ_min² s(x, σ_min) finishes at σ = 0 as the Heun sampler's last Euler step does.

:func:`diffusion_log_likelihood` gives log p^{σ_min}(x) (N,) by the instantaneous change of
variables of that flow (:func:`scoregan.sampling.ode.log_likelihood`), with the prior
p^{σ_max} ≈ N(0, σ_max² I): exact up to that approximation, whose error in log p is about
|E x_0|/σ_max + E‖x_0‖²/(2σ_max²) for data x_0 (a few 1e-3 nats for the mixture of
tests/sampling/test_diffusion_ode.py at σ_max = 300; take σ_max well above the data's scale).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from scoregan._checks import check_positive
from scoregan.sampling.diffusion import DiffusionInfo, NoiseConditionalScore, Scale, _real, _scales
from scoregan.sampling.guidance_base import SigmaGuidance
from scoregan.sampling.langevin import _check_particles
from scoregan.sampling.ode import LikelihoodSolution, integrate, log_likelihood

__all__ = ["diffusion_log_likelihood", "probability_flow_velocity", "sample_ode"]


def _levels(sigma_min: Any, sigma_max: Any) -> tuple[float, float]:
    lo, hi = _real("sigma_min", sigma_min), _real("sigma_max", sigma_max)
    check_positive("sigma_min", lo)
    if not hi > lo:
        raise ValueError(f"sigma_max must be greater than sigma_min, got sigma_max={hi!r}, sigma_min={lo!r}")
    return lo, hi


def probability_flow_velocity(score: Any, guidance: Any = None, guidance_scale: Scale = 1.0):
    """v(x, u) = −σ² (s(x, σ) + λ(σ) ∇ψ(x, σ)) at σ = e^u: (N, d), 0-d u ↦ (N, d), the field of the module
    doc in u = ln σ (``score``, ``guidance`` and ``guidance_scale`` as in :func:`~scoregan.sampling.sample_heun`)."""
    model = NoiseConditionalScore(score)
    field = SigmaGuidance(guidance) if guidance is not None else None

    def velocity(x: Tensor, u: Tensor) -> Tensor:
        sigma = torch.exp(u)
        s = model(x, sigma)
        if field is not None:
            lam = _scales(guidance_scale, [float(sigma)])[0]
            if lam:
                s = s + lam * field(x, sigma)
        return -(sigma * sigma) * s

    return velocity


def sample_ode(score: Any, x: Tensor, sigma_max: float, sigma_min: float = 0.002, *, guidance: Any = None,
               guidance_scale: Scale = 1.0, method: str = "dopri5", atol: float = 1e-5, rtol: float = 1e-5,
               steps: int | None = None, return_info: bool = False) -> Tensor | tuple[Tensor, DiffusionInfo]:
    """Samples (N, d) of the score model from x (N, d) = σ_max·ε by the probability-flow ODE from σ_max to
    σ_min solved by torchdiffeq (``method``, ``atol``, ``rtol``; ``steps`` for the fixed-grid methods), then
    the Tweedie step to σ = 0 (module doc). With ``return_info`` also a :class:`DiffusionInfo` (``nfe``
    counts every score evaluation, the final one included; ``steps`` = 0: the grid is the solver's;
    fixed-grid methods take ``steps`` uniform steps in ln σ)."""
    _check_particles("x", x)
    lo, hi = _levels(sigma_min, sigma_max)
    if guidance is not None:
        SigmaGuidance(guidance).check(x, "x")
    t0 = time.perf_counter()
    velocity = probability_flow_velocity(score, guidance, guidance_scale)
    sol = integrate(velocity, x, t0=math.log(hi), t1=math.log(lo), method=method, atol=atol, rtol=rtol, steps=steps)
    with torch.no_grad():
        u = torch.tensor(math.log(lo), dtype=x.dtype, device=x.device)
        out = sol.x - velocity(sol.x, u)  # x + σ² s: the denoiser at σ_min
    info = DiffusionInfo(sol.nfe + 1, 0, (), time.perf_counter() - t0)
    return (out, info) if return_info else out


def diffusion_log_likelihood(score: Any, x: Tensor, sigma_max: float, sigma_min: float = 0.002, *,
                             method: str = "dopri5", atol: float = 1e-5, rtol: float = 1e-5,
                             steps: int | None = None, divergence: str = "auto", exact_max_dim: int = 8,
                             n_probes: int = 1, generator: torch.Generator | None = None) -> LikelihoodSolution:
    """log p^{σ_min}(x) (N,) of the score model at points x (N, d): the probability-flow ODE run from σ_min up
    to σ_max with the divergence of its field accumulated, and the prior N(0, σ_max² I) at the end
    (module doc; ``divergence``, ``exact_max_dim``, ``n_probes``, ``generator`` as in
    :func:`scoregan.sampling.ode.log_likelihood`). Returns its :class:`LikelihoodSolution` (``x0`` is
    the point reached at σ_max)."""
    _check_particles("x", x)
    lo, hi = _levels(sigma_min, sigma_max)
    d = x.shape[1]

    def prior(z: Tensor) -> Tensor:
        return -0.5 * (z * z).sum(1) / hi**2 - d * (math.log(hi) + 0.5 * math.log(2.0 * math.pi))

    return log_likelihood(probability_flow_velocity(score), x, prior, t0=math.log(hi), t1=math.log(lo), method=method, atol=atol,
                          rtol=rtol, steps=steps, divergence=divergence, exact_max_dim=exact_max_dim,
                          n_probes=n_probes, generator=generator)

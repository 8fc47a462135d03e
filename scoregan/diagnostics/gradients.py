"""The discriminator's spatial gradient: how the generated particles are being pushed.

For a discriminator with raw output v(x) (the logit, an estimate of log p_d/p_g, for GAN losses;
the critic value for IPM losses), a generator loss ℓ_G(v) moves each generated particle x = G(z)
along the velocity

    u(x) = −∇ₓ ℓ_G(v(x)) = −ℓ_G'(v(x)) ∇ₓ v(x),

and every generator loss in use decreases in v (non-saturating: ℓ_G = softplus(−v), −ℓ_G' = σ(−v);
saturating: −softplus(v); WGAN: −v), so −ℓ_G' > 0 and the particle moves along **+∇ₓ v**. The
direction statistics below therefore use ∇ₓ v; the magnitude statistics report ‖∇ₓ v‖ itself
(the loss-specific positive factor σ(−v) is left out so the numbers compare across losses).

* :func:`discriminator_gradient`: ∇ₓ v(x), (N, d) → (N, d), one batched backward pass (the discriminator must
  act row-wise, as an MLP does; modules are evaluated in eval mode and left unchanged).
* :func:`mode_alignment`: for a mixture target with means μ_1..μ_K, the cosine between a velocity
  u_i and the direction μ_{c(i)} − x_i to the nearest mean c(i) = argmin_c ‖x_i − μ_c‖: +1 when the
  particle is pushed straight at its nearest mode, −1 straight away from it.
* :func:`discriminator_gradient_stats`: norm statistics on real and generated points and, for
  mixtures, the alignment statistics of the generated points; a flat dict for logging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from scoregan._autograd import input_gradient
from scoregan._checks import check_matrix
from scoregan.diagnostics.steepness import batch_stats, eval_mode

__all__ = ["cosine_alignment", "discriminator_gradient", "discriminator_gradient_stats", "mode_alignment",
           "nearest_mode_direction"]


def discriminator_gradient(discriminator: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """∇ₓ v(x_i) for every row of ``x`` (N, d): a tensor (N, d) on x's device and dtype.

    ``discriminator`` maps (N, d) to raw outputs (N,) (or (N, 1)); one backward pass for the batch
    (:func:`scoregan._autograd.input_gradient`), exact for a row-wise discriminator, in eval mode.
    """
    with eval_mode(discriminator):
        return input_gradient(discriminator, x, name="discriminator")


def cosine_alignment(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine ⟨a_i, b_i⟩ / (‖a_i‖ ‖b_i‖) for (N, d) tensors: (N,). A row where either vector
    is zero has no direction and gets cosine 0 (never NaN)."""
    check_matrix("a", a)
    check_matrix("b", b, dim=a.shape[1])
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same number of rows, got {a.shape[0]} and {b.shape[0]}")
    na, nb = a.norm(dim=1), b.norm(dim=1)
    denom = na * nb
    safe = denom > 0
    return torch.where(safe, (a * b).sum(1) / torch.where(safe, denom, torch.ones_like(denom)), torch.zeros_like(denom))


def nearest_mode_direction(x: torch.Tensor, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For x (N, d) and means (K, d): (μ_{c(i)} − x_i (N, d), c (N,)) with c(i) the nearest mean
    in Euclidean distance (the natural assignment for equal isotropic components)."""
    check_matrix("x", x)
    check_matrix("means", means, dim=x.shape[1])
    mu = means.to(device=x.device, dtype=x.dtype)
    idx = torch.cdist(x, mu).argmin(dim=1)
    return mu[idx] - x, idx


def mode_alignment(velocity: torch.Tensor, x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """cos(velocity_i, μ_{c(i)} − x_i): (N,), how straight each particle heads for its nearest mode."""
    check_matrix("x", x)
    check_matrix("velocity", velocity, dim=x.shape[1])
    direction, _ = nearest_mode_direction(x, means)
    return cosine_alignment(velocity, direction)


def discriminator_gradient_stats(discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                                 fake: torch.Tensor, *, means: torch.Tensor | None = None,
                                 quantiles: Sequence[float] = (0.1, 0.9)) -> dict[str, float]:
    """Statistics of ‖∇ₓ v‖ on ``real`` (N, d) and ``fake`` (M, d) points, and, with ``means``
    (K, d) of a mixture target, of the alignment of the generated particles' velocity +∇ₓ v with the
    direction to their nearest mode.

    Keys: ``dgrad_real_{mean,median,max,min,std,q10,q90}``, ``dgrad_fake_...`` likewise, and with
    ``means``: ``align_fake_{mean,median,...}`` and ``align_fake_pos`` (fraction with cosine > 0).
    """
    check_matrix("real", real)
    check_matrix("fake", fake, dim=real.shape[1])
    g_real = discriminator_gradient(discriminator, real)
    g_fake = discriminator_gradient(discriminator, fake)
    out = {**batch_stats(g_real.norm(dim=1), "dgrad_real_", quantiles=quantiles),
           **batch_stats(g_fake.norm(dim=1), "dgrad_fake_", quantiles=quantiles)}
    if means is not None:
        cos = mode_alignment(g_fake, fake, means)
        out.update(batch_stats(cos, "align_fake_", quantiles=quantiles))
        out["align_fake_pos"] = float((cos > 0).to(torch.float64).mean())
    return out

"""One diagnostic measurement of a generator and its discriminator (docs/theory.md §8).

On latents z (B, k), real points (B', d) and optionally held-out points (B'', d),
:func:`compute_diagnostics` returns the statistics

* ``steepness_*``: statistics of σ₁(z_i) = ‖J_G(z_i)‖₂ (:mod:`scoregan.diagnostics.steepness`);
* ``dgrad_real_*``, ``dgrad_fake_*``: statistics of ‖∇ₓ v‖ on the real points and on G(z);
* ``align_fake_*``: for mixture targets, cos(∇ₓ v, nearest mode − x) on G(z);
* with held-out points (``data.holdout`` > 0, a finite data set): the median critic values
  ``critic_real``, ``critic_heldout``, ``critic_fake``, the gradient statistics ``dgrad_heldout_*``
  and ``overfit`` = (m_train − m_held out) / (m_train − m_generated) of those medians
  (:func:`overfitting_stats`);
* ``combined_*``: statistics of the per-latent product c_i = σ₁(z_i) · ‖∇ₓ v(G(z_i))‖, a bound on
  the sensitivity of the discriminator's verdict to the latent: ‖∇_z v(G(z_i))‖ = ‖J_iᵀ ∇ₓ v‖ ≤ c_i;
* its own cost: ``time_diag_s``, the median training-step time since the last measurement
  ``time_step_s``, ``diag_cost_steps`` = their ratio, and ``diag_overhead`` = that ratio / every,
  the fraction of training time the diagnostics add.

(the timing keys are the loop callback's, ``scoregan.experiment.monitor``). The networks are
evaluated in eval mode and their parameters and buffers are left untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from scoregan.diagnostics.gradients import discriminator_gradient, mode_alignment
from scoregan.diagnostics.steepness import batch_stats, eval_mode, spectral_norm_batch

__all__ = ["compute_diagnostics", "overfitting_stats"]


def compute_diagnostics(generator: Callable[[torch.Tensor], torch.Tensor],
                        discriminator: Callable[[torch.Tensor], torch.Tensor] | None, z: torch.Tensor,
                        real: torch.Tensor | None = None, *, means: torch.Tensor | None = None,
                        heldout: torch.Tensor | None = None, iters: int = 64, tol: float = 1e-3,
                        method: str = "lanczos", rng: torch.Generator | int | None = None) -> dict[str, float]:
    """One measurement on latents z (B, k) and real points (B', d): the ``steepness_*``, and with a
    discriminator the ``dgrad_*``, ``combined_*`` (with mixture ``means`` the ``align_fake_*``; with
    ``real`` and held-out points (B'', d) the ``critic_*``, ``dgrad_heldout_*`` and ``overfit``)
    statistics of the module docstring, plus ``steepness_iters``."""
    res = spectral_norm_batch(generator, z, iters=iters, tol=tol, method=method, rng=rng)
    row = {**batch_stats(res.sigma, "steepness_"), "steepness_iters": float(res.iters),
           "steepness_residual_max": float(res.residual.max())}
    if discriminator is None:
        return row
    with eval_mode(generator), torch.no_grad():  # eval mode: no spectral-norm or BatchNorm buffer updates
        fake = generator(z)
    g_fake = discriminator_gradient(discriminator, fake)
    n_fake = g_fake.norm(dim=1)
    row.update(batch_stats(n_fake, "dgrad_fake_"))
    if real is not None:
        row.update(batch_stats(discriminator_gradient(discriminator, real).norm(dim=1), "dgrad_real_"))
        row["dgrad_ratio"] = row["dgrad_real_median"] / max(row["dgrad_fake_median"], 1e-300)
    row.update(batch_stats(res.sigma * n_fake, "combined_"))
    if real is not None and heldout is not None:
        row.update(overfitting_stats(discriminator, real, heldout, fake))
    if means is not None:
        cos = mode_alignment(g_fake, fake, means)
        row.update(batch_stats(cos, "align_fake_"))
        row["align_fake_pos"] = float((cos > 0).to(torch.float64).mean())
    return row


def overfitting_stats(discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                      heldout: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """The discriminator on training points (B, d), held-out points (B', d) and generated ones:
    the median critic values ``critic_real``, ``critic_heldout``, ``critic_fake`` (m_·), the
    gradient-norm statistics ``dgrad_heldout_*``, and the overfitting ratio

        overfit = (m_train − m_held out) / (m_train − m_generated),

    0 while the critic treats unseen real points like the training points, 1 once it treats them
    like generated ones. It is invariant to shifts and positive scalings of v, so it reads the same
    for logits, f-GAN critics and IPM witnesses. Medians rather than means: a memorising
    discriminator puts a few training points far out, and the median ignores them."""
    with eval_mode(discriminator), torch.no_grad():  # eval mode: no spectral-norm buffer updates
        m_real, m_held, m_fake = (discriminator(x).reshape(-1).to(torch.float64).median().item()
                                  for x in (real, heldout, fake))
    gap = m_real - m_fake
    row = {"critic_real": m_real, "critic_heldout": m_held, "critic_fake": m_fake,
           "overfit": (m_real - m_held) / gap if gap != 0 else math.nan}
    row.update(batch_stats(discriminator_gradient(discriminator, heldout).norm(dim=1), "dgrad_heldout_"))
    return row

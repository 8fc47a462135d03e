"""Diagnostics of GAN training from the particle-flow view (docs/theory.md §8).

* :mod:`~scoregan.diagnostics.steepness`: the generator's steepness ‖J_G(z)‖₂ per latent,
  matrix-free (Lanczos / power iteration with Jacobian-vector products).
* :mod:`~scoregan.diagnostics.gradients`: the discriminator's spatial gradient ∇ₓv on real and
  generated points (how particles move) and its alignment with the nearest mixture mode.
* :mod:`~scoregan.diagnostics.measure`: one measurement of both on a fixed batch, and the
  discriminator's overfitting ratio (the loop's callbacks, diagnostics every k steps and early
  stopping, live in the experiment layer: ``scoregan.experiment.monitor`` and ``.early_stopping``).
* :mod:`~scoregan.diagnostics.ntk`: the discriminator's neural tangent kernel, empirical and
  infinite-width (also ``scoregan.objectives.kernel("ntk", ...)``);
  :mod:`~scoregan.diagnostics.ntk_flows`: function-space discriminator training and particle flows.
"""

from __future__ import annotations

from scoregan.diagnostics.gradients import (
    cosine_alignment,
    discriminator_gradient,
    discriminator_gradient_stats,
    mode_alignment,
    nearest_mode_direction,
)
from scoregan.diagnostics.ntk import ACTIVATIONS as NTK_ACTIVATIONS
from scoregan.diagnostics.ntk import NTKMLP, NTKKernel, activation_pair, dual_activation, empirical_ntk, infinite_ntk
from scoregan.diagnostics.ntk_flows import (
    FlowResult,
    KernelDiscriminator,
    generator_velocity,
    particle_flow,
    train_discriminator,
)
from scoregan.diagnostics.measure import compute_diagnostics, overfitting_stats
from scoregan.diagnostics.steepness import SteepnessResult, batch_stats, spectral_norm_batch, steepness

__all__ = [
    "FlowResult",
    "KernelDiscriminator",
    "NTKKernel",
    "NTKMLP",
    "NTK_ACTIVATIONS",
    "activation_pair",
    "dual_activation",
    "empirical_ntk",
    "generator_velocity",
    "infinite_ntk",
    "particle_flow",
    "train_discriminator",
    "SteepnessResult",
    "batch_stats",
    "compute_diagnostics",
    "cosine_alignment",
    "discriminator_gradient",
    "discriminator_gradient_stats",
    "mode_alignment",
    "nearest_mode_direction",
    "overfitting_stats",
    "spectral_norm_batch",
    "steepness",
]

"""Diagnostics of GAN training from the particle-flow view (DESIGN.md §5).

* :mod:`~scoregan.diagnostics.steepness`: the generator's steepness ‖J_G(z)‖₂ per latent,
  matrix-free (Lanczos / power iteration with Jacobian-vector products).
* :mod:`~scoregan.diagnostics.gradients`: the discriminator's spatial gradient ∇ₓv on real and
  generated points (how particles move) and its alignment with the nearest mixture mode.
* :mod:`~scoregan.diagnostics.callbacks`: a loop callback that logs both every k steps, and an
  early-stopping callback that detects the turn from refining to collapsing.
* :mod:`~scoregan.diagnostics.ntk`: the discriminator's neural tangent kernel, empirical and
  infinite-width (also ``scoregan.objectives.kernel("ntk", ...)``);
  :mod:`~scoregan.diagnostics.ntk_flows`: function-space discriminator training and particle flows.
"""

from __future__ import annotations

from scoregan.diagnostics.callbacks import (
    DiagnosticsCallback,
    DiagnosticsConfig,
    EarlyStopping,
    EarlyStoppingConfig,
    callbacks_from_config,
)
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
    "DiagnosticsCallback",
    "DiagnosticsConfig",
    "EarlyStopping",
    "EarlyStoppingConfig",
    "SteepnessResult",
    "batch_stats",
    "callbacks_from_config",
    "cosine_alignment",
    "discriminator_gradient",
    "discriminator_gradient_stats",
    "mode_alignment",
    "nearest_mode_direction",
    "spectral_norm_batch",
    "steepness",
]

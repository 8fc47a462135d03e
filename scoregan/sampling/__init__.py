"""Sampling: discriminator- and kernel-guided Langevin dynamics in data and latent space, and diffusion
samplers (probability-flow ODE by Heun steps or adaptively through torchdiffeq, with exact likelihoods;
reverse SDE; predictor–corrector) with σ-aware guidance (docs/theory.md §10).

The fused Triton witness gradient lives with the kernels: ``scoregan.objectives.kernels.fused``.
"""

from __future__ import annotations

from scoregan.sampling.diffusion import DiffusionInfo, edm_sigmas, sample_heun, sample_pc, sample_sde
from scoregan.sampling.diffusion_ode import diffusion_log_likelihood, sample_ode
from scoregan.sampling.guidance import (
    DiscriminatorGuidance,
    Guidance,
    KernelGuidance,
    LatentGuidance,
    PullbackGuidance,
    SigmaGuidance,
)
from scoregan.sampling.langevin import LangevinInfo, LangevinStep, langevin, latent_langevin, step_sizes
from scoregan.sampling.plots import plot_before_after, plot_guidance_field
from scoregan.sampling.steps import denoise_step, mala_step, unadjusted_step

__all__ = [
    "langevin",
    "latent_langevin",
    "step_sizes",
    "LangevinInfo",
    "LangevinStep",
    "unadjusted_step",
    "mala_step",
    "denoise_step",
    "Guidance",
    "KernelGuidance",
    "DiscriminatorGuidance",
    "LatentGuidance",
    "PullbackGuidance",
    "SigmaGuidance",
    "plot_guidance_field",
    "plot_before_after",
    "edm_sigmas",
    "sample_heun",
    "sample_sde",
    "sample_pc",
    "sample_ode",
    "diffusion_log_likelihood",
    "DiffusionInfo",
]

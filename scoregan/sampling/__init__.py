"""Sampling: discriminator- and kernel-guided Langevin dynamics in data and latent space (DESIGN.md §4).

``fused_witness_grad`` (the fused Triton kernel for the witness gradient) is imported lazily, so
importing this package never imports Triton.
"""

from __future__ import annotations

from typing import Any

from scoregan.sampling.guidance import DiscriminatorGuidance, Guidance, KernelGuidance, LatentGuidance
from scoregan.sampling.langevin import LangevinInfo, langevin, latent_langevin, step_sizes
from scoregan.sampling.plots import plot_before_after, plot_guidance_field

__all__ = [
    "langevin",
    "latent_langevin",
    "step_sizes",
    "LangevinInfo",
    "Guidance",
    "KernelGuidance",
    "DiscriminatorGuidance",
    "LatentGuidance",
    "plot_guidance_field",
    "plot_before_after",
    "langevin_from_run",
    "fused_witness_grad",
]


def __getattr__(name: str) -> Any:
    if name == "fused_witness_grad":
        from scoregan.sampling.fused_witness import fused_witness_grad

        return fused_witness_grad
    if name == "langevin_from_run":
        from scoregan.sampling.from_run import langevin_from_run

        return langevin_from_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Objectives: f-divergences, generator losses and IPM kernels (DESIGN.md §1).

``divergence(name)``, ``generator_loss(name)`` and ``kernel(name, **params)`` are the public
factories; the classes behind them are exported for type hints and subclassing.
"""

from scoregan.objectives.divergences import DIVERGENCES, Divergence, as_divergence, divergence
from scoregan.objectives.generator_losses import GENERATOR_LOSSES, GeneratorLoss, as_generator_loss, generator_loss
from scoregan.objectives.kernels import KERNELS, FusedSpec, Kernel, RadialKernel, kernel

__all__ = [
    "DIVERGENCES",
    "Divergence",
    "as_divergence",
    "as_generator_loss",
    "FusedSpec",
    "divergence",
    "GENERATOR_LOSSES",
    "GeneratorLoss",
    "generator_loss",
    "KERNELS",
    "Kernel",
    "RadialKernel",
    "kernel",
]

"""Objectives: f-divergences, generator losses and IPM kernels (docs/theory.md §2–§5).

``divergence(name)``, ``generator_loss(name)`` and ``kernel(name, **params)`` are the public
factories; the classes behind them are exported for type hints and subclassing. ``kernel_witness``
and ``mmd2`` are the two-sample estimators of :mod:`scoregan.objectives.kernels`.
"""

from scoregan.objectives.divergences import DIVERGENCES, Divergence, as_divergence, divergence
from scoregan.objectives.generator_losses import GENERATOR_LOSSES, GeneratorLoss, as_generator_loss, generator_loss
from scoregan.objectives.kernels import KERNELS, FusedSpec, Kernel, RadialKernel, Witness, kernel, kernel_witness, mmd2

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
    "kernel_witness",
    "mmd2",
    "Witness",
]

"""IPM kernels: values, analytic gradients, the tiled witness and its gradient, and the estimators
built on them (docs/theory.md §5; numerics §7; the fused Triton kernel §10).

For queries x (N, d), centres y (M, d) and signed weights a (M,), the witness and its gradient are

    D̂(x_i) = Σ_j a_j k(x_i, y_j)  (N,),      ∇D̂(x_i) = Σ_j a_j ∇ₓk(x_i, y_j)  (N, d).

Modules, imports pointing down only: ``profiles`` (φ, φ' of the radial kernels: ``FusedSpec``) and
``tiling`` (validation, budgets, tiles) ← ``fused`` (launch of the Triton kernels of
``triton_kernels``; triton is optional) ← ``base`` (``Kernel``, ``RadialKernel``) ← ``radial``,
``ntk_duals`` → ``ntk`` (the infinite-width NTK), ``estimators`` (``kernel_witness``, ``mmd2``).

``kernel(name, **params)`` is the factory over :data:`KERNELS`.
"""

from __future__ import annotations

from typing import Any

from scoregan._checks import check_choice, closest
from scoregan.objectives.kernels.base import MEDIAN_POINTS, Kernel, RadialKernel, median_bandwidth, resolve_kernel
from scoregan.objectives.kernels.estimators import Witness, kernel_witness, mmd2
from scoregan.objectives.kernels.ntk import NTKKernel, infinite_ntk
from scoregan.objectives.kernels.profiles import (
    FusedSpec,
    cancellation_tol,
    spec_cpd_order,
    spec_profile,
    spec_profile_grad,
)
from scoregan.objectives.kernels.radial import (
    RADIAL_KERNELS,
    CoulombKernel,
    EnergyKernel,
    GaussianKernel,
    IMQKernel,
    LaplaceKernel,
    PolyharmonicKernel,
)
from scoregan.objectives.kernels.tiling import BACKENDS, BUDGETS, EXACT_MAX_D, PRECISIONS, Budgets, real_number

__all__ = [
    "BACKENDS",
    "BUDGETS",
    "Budgets",
    "EXACT_MAX_D",
    "KERNELS",
    "MEDIAN_POINTS",
    "PRECISIONS",
    "CoulombKernel",
    "EnergyKernel",
    "FusedSpec",
    "GaussianKernel",
    "IMQKernel",
    "Kernel",
    "LaplaceKernel",
    "NTKKernel",
    "PolyharmonicKernel",
    "RadialKernel",
    "Witness",
    "cancellation_tol",
    "infinite_ntk",
    "kernel",
    "kernel_witness",
    "median_bandwidth",
    "mmd2",
    "real_number",
    "resolve_kernel",
    "spec_cpd_order",
    "spec_profile",
    "spec_profile_grad",
]

KERNELS: tuple[str, ...] = (*RADIAL_KERNELS, "ntk")

_KERNEL_PARAMS: dict[str, tuple[str, ...]] = {
    "gaussian": ("bandwidth", "scale_weights"),
    "imq": ("c", "beta"),
    "laplace": ("bandwidth",),
    "energy": (),
    "polyharmonic": ("order", "dim", "eps"),
    "coulomb": ("dim", "eps"),
    "ntk": ("depth", "activation", "weight_std", "bias_std", "negative_slope", "kind", "method", "compile"),
}


def kernel(name: str, **params: Any) -> Kernel:
    """The kernel called ``name`` (one of :data:`KERNELS`) with keyword parameters.

    gaussian(bandwidth=1.0 | "median" | [h_1, ...], scale_weights=None), imq(c=1.0, beta=-0.5),
    laplace(bandwidth=1.0), energy(), polyharmonic(order=1, dim=None, eps=0.0),
    coulomb(dim=None, eps). dim=None means the data dimension at call time.
    ntk(depth=3, activation="relu", weight_std=1.0, bias_std=0.0, kind="ntk" | "nngp"): the
    infinite-width neural tangent kernel of a fully connected network (:class:`NTKKernel`).
    """
    check_choice("name", name, KERNELS)
    allowed = _KERNEL_PARAMS[name]
    for key in params:
        if key not in allowed:
            shown = ", ".join(allowed) if allowed else "none"
            raise ValueError(
                f"{key}={params[key]!r} is not a parameter of kernel {name!r}; allowed: {shown}" + closest(key, allowed)
            )
    if name == "ntk":
        return NTKKernel(**params)
    return RADIAL_KERNELS[name](**params)

"""The radial kernels k(x, y) = φ(s), s = ‖x − y‖² (profiles: ``kernels.profiles``; docs/theory.md §5).

    gaussian       exp(−s / (2h²)), or Σ_l w_l exp(−s / (2h_l²)); h a number, "median" or (h_1..h_L)
    imq            (c² + s)^beta, c > 0, beta < 0
    laplace        exp(−√s / h)
    energy         −√s                                    (CPD of order 1)
    polyharmonic   order m in dimension n (default d), p = 2m − n:
                   p < 0: (s + ε²)^(p/2); p > 0 odd: (−1)^⌈p/2⌉ (s + ε²)^(p/2);
                   p ≥ 0 even: (−1)^(p/2+1) ½ (s + ε²)^(p/2) log(s + ε²)
    coulomb        the order-1 polyharmonic kernel with Plummer softening ε > 0

With ε = 0 and n = d the polyharmonic kernels are, up to a positive factor, the fundamental
solutions of (−Δ)^m (the Green's functions of Poly-WGAN's order-m gradient penalty; m = 1 is
Coulomb). For n ≫ 2m, (s + ε²)^(p/2) under/overflows float32 (d = 784, m = 1: exponent −391):
pass a smaller ``dim`` there. Shapes as in ``kernels.base``: x (N, d), y (M, d) → (N, M).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from scoregan._checks import check_choice, check_int, check_positive
from scoregan.objectives.kernels.base import RadialKernel, median_bandwidth
from scoregan.objectives.kernels.profiles import FusedSpec
from scoregan.objectives.kernels.tiling import real_number

__all__ = ["RADIAL_KERNELS", "CoulombKernel", "EnergyKernel", "GaussianKernel", "IMQKernel", "LaplaceKernel",
           "PolyharmonicKernel"]


class GaussianKernel(RadialKernel):
    """k = exp(−‖x − y‖² / (2h²)); or the multi-scale mixture Σ_l w_l exp(−‖x − y‖² / (2h_l²)).

    bandwidth: h > 0; "median" (median heuristic, :func:`median_bandwidth`, resolved per call);
    or a sequence (h_1..h_L) for the mixture, with ``scale_weights`` w_l > 0 (default 1/L, so φ(0)
    = 1). Positive definite.
    """

    name = "gaussian"

    def __init__(self, bandwidth: float | str | Sequence[float] = 1.0, scale_weights: Sequence[float] | None = None):
        if isinstance(bandwidth, str):
            check_choice("bandwidth", bandwidth, ("median",))
        elif isinstance(bandwidth, (list, tuple)):
            if len(bandwidth) == 0:
                raise ValueError("bandwidth must be a non-empty sequence of positive numbers, got []")
            bandwidth = tuple(check_positive("bandwidth", real_number("bandwidth", h)) for h in bandwidth)
        else:
            bandwidth = check_positive("bandwidth", real_number("bandwidth", bandwidth))
        if scale_weights is not None:
            if not isinstance(bandwidth, tuple):
                raise ValueError("scale_weights needs a sequence of bandwidths, got bandwidth=" f"{bandwidth!r}")
            if not isinstance(scale_weights, (list, tuple)) or len(scale_weights) != len(bandwidth):
                raise ValueError(
                    f"scale_weights must be a sequence of {len(bandwidth)} positive numbers (one per bandwidth), "
                    f"got {scale_weights!r}"
                )
            scale_weights = tuple(check_positive("scale_weights", real_number("scale_weights", w)) for w in scale_weights)
        elif isinstance(bandwidth, tuple):
            scale_weights = tuple(1.0 / len(bandwidth) for _ in bandwidth)
        self.bandwidth = bandwidth
        self.scale_weights = scale_weights

    def _params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bandwidth": self.bandwidth}
        if self.scale_weights is not None:
            out["scale_weights"] = self.scale_weights
        return out

    def resolve(self, x: Tensor, centres: Tensor) -> GaussianKernel:
        if self.bandwidth == "median":
            return GaussianKernel(median_bandwidth(x, centres))
        return self

    def _static_spec(self) -> FusedSpec | None:
        if isinstance(self.bandwidth, str):
            return None
        if isinstance(self.bandwidth, tuple):
            return FusedSpec("gaussian_mix", self.bandwidth + self.scale_weights)
        return FusedSpec("gaussian", (self.bandwidth,))


class IMQKernel(RadialKernel):
    """Inverse multiquadric k = (c² + ‖x − y‖²)^beta, c > 0, beta < 0. Positive definite."""

    name = "imq"

    def __init__(self, c: float = 1.0, beta: float = -0.5):
        self.c = check_positive("c", real_number("c", c))
        self.beta = real_number("beta", beta)
        if self.beta >= 0:
            raise ValueError(f"beta must be negative for the inverse multiquadric kernel, got {beta!r}")

    def _params(self) -> dict[str, Any]:
        return {"c": self.c, "beta": self.beta}

    def _static_spec(self) -> FusedSpec:
        return FusedSpec("imq", (self.c, self.beta))


class LaplaceKernel(RadialKernel):
    """k = exp(−‖x − y‖ / h), h > 0. Positive definite; φ' singular at 0 (φ'(0) := 0)."""

    name = "laplace"

    def __init__(self, bandwidth: float = 1.0):
        self.bandwidth = check_positive("bandwidth", real_number("bandwidth", bandwidth))

    def _params(self) -> dict[str, Any]:
        return {"bandwidth": self.bandwidth}

    def _static_spec(self) -> FusedSpec:
        return FusedSpec("laplace", (self.bandwidth,))


class EnergyKernel(RadialKernel):
    """Energy-distance kernel k = −‖x − y‖: CPD of order 1; φ' singular at 0 (φ'(0) := 0)."""

    name = "energy"

    def _static_spec(self) -> FusedSpec:
        return FusedSpec("energy", ())


def _polyharmonic_spec(order: int, dim: int, eps: float) -> FusedSpec:
    """The spec of the order-m polyharmonic kernel in dimension n, p = 2m − n (``kernels.profiles``)."""
    p = 2 * order - dim
    if p <= 0 and eps == 0:
        raise ValueError(
            f"eps must be > 0 for the polyharmonic kernel with order={order}, dim={dim}: p = 2·order − dim = {p} ≤ 0 "
            "makes it singular at x = y"
        )
    eps2 = eps * eps
    if p < 0:
        return FusedSpec("poly_power", (float(p), 1.0, eps2))
    if p % 2 == 1:
        return FusedSpec("poly_power", (float(p), float((-1) ** ((p + 1) // 2)), eps2))
    return FusedSpec("poly_log", (float(p), float((-1) ** (p // 2 + 1)), eps2))


class PolyharmonicKernel(RadialKernel):
    """Polyharmonic kernel of order m ≥ 1 in dimension n (default: the data dimension), p = 2m − n.

    p < 0: (s + ε²)^(p/2) (needs ε > 0); p > 0 odd: (−1)^⌈p/2⌉ (s + ε²)^(p/2); p ≥ 0 even:
    (−1)^(p/2+1) ½ (s + ε²)^(p/2) log(s + ε²) (= ∓ r^p log r; needs ε > 0 when p = 0). Signs make
    it CPD of order max(0, ⌈p/2⌉) (p odd or negative) or p/2 + 1 (p even); see ``kernels.profiles``.
    """

    name = "polyharmonic"

    def __init__(self, order: int = 1, dim: int | None = None, eps: float = 0.0):
        self.order = check_int("order", order, minimum=1)
        self.dim = None if dim is None else check_int("dim", dim, minimum=1)
        self.eps = check_positive("eps", real_number("eps", eps), allow_zero=True)
        if self.dim is not None:
            _polyharmonic_spec(self.order, self.dim, self.eps)

    def _params(self) -> dict[str, Any]:
        return {"order": self.order, "dim": self.dim, "eps": self.eps}

    def resolve(self, x: Tensor, centres: Tensor) -> PolyharmonicKernel:
        if self.dim is None:
            return type(self)(**{**self._params(), "dim": x.shape[1]})
        return self

    def _static_spec(self) -> FusedSpec | None:
        return None if self.dim is None else _polyharmonic_spec(self.order, self.dim, self.eps)


class CoulombKernel(PolyharmonicKernel):
    """Plummer-softened Coulomb kernel, the order-1 polyharmonic kernel in dimension n (default d).

    n ≥ 3: (s + ε²)^(−(n−2)/2) (positive definite); n = 2: −½ log(s + ε²) (CPD of order 1);
    n = 1: −√(s + ε²) (CPD of order 1). eps > 0 is required.
    """

    name = "coulomb"

    def __init__(self, dim: int | None = None, eps: float | None = None):
        if eps is None:
            raise ValueError("eps is required for the coulomb kernel (the Plummer softening, eps > 0)")
        check_positive("eps", real_number("eps", eps))
        super().__init__(order=1, dim=dim, eps=eps)

    def _params(self) -> dict[str, Any]:
        return {"dim": self.dim, "eps": self.eps}


#: The radial kernels by name.
RADIAL_KERNELS: dict[str, type[RadialKernel]] = {
    "gaussian": GaussianKernel,
    "imq": IMQKernel,
    "laplace": LaplaceKernel,
    "energy": EnergyKernel,
    "polyharmonic": PolyharmonicKernel,
    "coulomb": CoulombKernel,
}

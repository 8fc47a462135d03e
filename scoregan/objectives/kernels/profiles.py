"""Radial profiles of the fused specs: φ(s) and φ'(s) = dφ/ds of k(x, y) = φ(s), s = ‖x − y‖² ≥ 0.

A resolved radial kernel is a ``FusedSpec(kind, params)`` (every data-dependent choice already a
number); this table is the single source of truth of every radial kernel's ``profile`` and
``profile_grad``, of the float64 reference and of the fused Triton kernel (docs/theory.md §5, §10):

    "gaussian"      (h,)                   φ = exp(−s / (2h²))            φ' = −φ / (2h²)
    "gaussian_mix"  (h_1..h_L, w_1..w_L)   φ = Σ_l w_l exp(−s / (2h_l²))  φ' = −Σ_l w_l exp(−s/(2h_l²)) / (2h_l²)
    "imq"           (c, beta)              φ = (c² + s)^beta              φ' = beta (c² + s)^(beta − 1)
    "laplace"       (h,)                   φ = exp(−√s / h)               φ' = −exp(−√s / h) / (2h√s)
    "energy"        ()                     φ = −√s                        φ' = −1 / (2√s)
    "poly_power"    (p, sign, eps2)        φ = sign (s + eps2)^(p/2)      φ' = sign (p/2) (s + eps2)^(p/2 − 1)
    "poly_log"      (p, sign, eps2)        u = s + eps2, φ = sign ½ u^(p/2) log u (0 at u = 0),
                                           φ' = sign ½ u^(p/2 − 1) ((p/2) log u + 1)

Where φ' is singular at 0 (laplace, energy, poly_power with eps2 = 0 and p < 2, poly_log at
u = 0) φ'(0) := 0: a coincident pair contributes nothing (the minimal-norm subgradient).

Conditional positive definiteness (Micchelli 1986; Wendland 2005, ch. 8): k = ψ(‖x − y‖²) is CPD
of order q in every dimension when (−1)^q ψ^(q) is completely monotone on (0, ∞). gaussian, imq
(beta < 0), laplace: q = 0; energy: q = 1; poly_power: q = 0 for p < 0, ⌈p/2⌉ for p > 0 odd;
poly_log: q = p/2 + 1. For q ≥ 2 the kernel energy of p_d − p_g is a distance only between
distributions with equal moments of degree < q.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FusedSpec", "SPEC_KINDS", "cancellation_tol", "spec_cpd_order", "spec_profile", "spec_profile_grad"]


@dataclass(frozen=True)
class FusedSpec:
    """A resolved radial kernel: ``kind`` and numeric ``params`` (table in the module doc)."""

    kind: str
    params: tuple[float, ...]


def _safe(mask: Tensor, s: Tensor, fill: float = 1.0) -> Tensor:
    """``s`` where ``mask`` else ``fill``: keeps singular formulas (and their autograd) finite."""
    return torch.where(mask, s, torch.full_like(s, fill))


def _gaussian_terms(params: tuple[float, ...], s: Tensor) -> Iterator[tuple[float, float, Tensor]]:
    """(weight, 1/(2h²), exp(−s/(2h²))) for each scale of a "gaussian" or "gaussian_mix" spec."""
    if len(params) == 1:
        scales, weights = params, (1.0,)
    else:
        half = len(params) // 2
        scales, weights = params[:half], params[half:]
    for h, w in zip(scales, weights):
        rate = 1.0 / (2.0 * h * h)
        yield w, rate, torch.exp(-rate * s)


def _phi_gaussian(params, s):
    return sum(w * e for w, _, e in _gaussian_terms(params, s))


def _dphi_gaussian(params, s):
    return sum(-w * rate * e for w, rate, e in _gaussian_terms(params, s))


def _phi_imq(params, s):
    c, beta = params
    return (c * c + s) ** beta


def _dphi_imq(params, s):
    c, beta = params
    return beta * (c * c + s) ** (beta - 1.0)


def _sqrt0(s: Tensor) -> Tensor:
    """√s with a finite autograd gradient (0) at s = 0."""
    pos = s > 0
    return torch.where(pos, torch.sqrt(_safe(pos, s)), torch.zeros_like(s))


def _phi_laplace(params, s):
    (h,) = params
    return torch.exp(-_sqrt0(s) / h)


def _dphi_laplace(params, s):
    (h,) = params
    pos = s > 0
    r = torch.sqrt(_safe(pos, s))
    return torch.where(pos, -torch.exp(-r / h) / (2.0 * h * r), torch.zeros_like(s))


def _phi_energy(params, s):
    return -_sqrt0(s)


def _dphi_energy(params, s):
    pos = s > 0
    return torch.where(pos, -0.5 / torch.sqrt(_safe(pos, s)), torch.zeros_like(s))


def _phi_poly_power(params, s):
    p, sign, eps2 = params
    return sign * (s + eps2) ** (p / 2.0)


def _dphi_poly_power(params, s):
    p, sign, eps2 = params
    u = s + eps2
    if eps2 > 0 or p >= 2:
        return sign * (p / 2.0) * u ** (p / 2.0 - 1.0)
    pos = u > 0
    return torch.where(pos, sign * (p / 2.0) * _safe(pos, u) ** (p / 2.0 - 1.0), torch.zeros_like(s))


def _phi_poly_log(params, s):
    p, sign, eps2 = params
    u = s + eps2
    pos = u > 0
    us = _safe(pos, u)
    return torch.where(pos, sign * 0.5 * us ** (p / 2.0) * torch.log(us), torch.zeros_like(s))


def _dphi_poly_log(params, s):
    p, sign, eps2 = params
    u = s + eps2
    pos = u > 0
    us = _safe(pos, u)
    val = sign * 0.5 * us ** (p / 2.0 - 1.0) * ((p / 2.0) * torch.log(us) + 1.0)
    return torch.where(pos, val, torch.zeros_like(s))


_Profile = Callable[[tuple[float, ...], Tensor], Tensor]
_SPEC_PROFILES: dict[str, tuple[_Profile, _Profile]] = {
    "gaussian": (_phi_gaussian, _dphi_gaussian),
    "gaussian_mix": (_phi_gaussian, _dphi_gaussian),
    "imq": (_phi_imq, _dphi_imq),
    "laplace": (_phi_laplace, _dphi_laplace),
    "energy": (_phi_energy, _dphi_energy),
    "poly_power": (_phi_poly_power, _dphi_poly_power),
    "poly_log": (_phi_poly_log, _dphi_poly_log),
}
#: The spec kinds of the table (module doc).
SPEC_KINDS: tuple[str, ...] = tuple(_SPEC_PROFILES)


def spec_profile(spec: FusedSpec, sq: Tensor) -> Tensor:
    """φ(s) of a fused spec, elementwise on squared distances ``sq`` ≥ 0 (any shape)."""
    return _SPEC_PROFILES[spec.kind][0](spec.params, sq)


def spec_profile_grad(spec: FusedSpec, sq: Tensor) -> Tensor:
    """φ'(s) = dφ/ds of a fused spec, elementwise, finite at s = 0 (φ'(0) := 0 where singular)."""
    return _SPEC_PROFILES[spec.kind][1](spec.params, sq)


def spec_cpd_order(spec: FusedSpec) -> int:
    """The order q of conditional positive definiteness of a resolved radial kernel (module doc)."""
    if spec.kind in ("gaussian", "gaussian_mix", "imq", "laplace"):
        return 0
    if spec.kind == "energy":
        return 1
    p = spec.params[0]
    if spec.kind == "poly_log":
        return int(p) // 2 + 1
    return 0 if p < 0 else math.ceil(p / 2)


def cancellation_tol(dtype: torch.dtype, d: int, precision: str = "ieee") -> float:
    """Relative threshold below which a squared distance from the expansion counts as 0.

    For coincident points S = ‖x‖² + ‖y‖² − 2 x·y is pure rounding, up to ≈ max(√d, 2) u (‖x‖² + ‖y‖²)
    with u the unit roundoff of ``dtype`` (of TF32, 2⁻¹¹, for "tf32" and float32); tol = 6u max(√d, 2)
    keeps a margin of about 5. Pairs with S ≤ tol (‖x‖² + ‖y‖²) are coincident (docs/theory.md §7).
    """
    u = torch.finfo(dtype).eps / 2.0
    if precision == "tf32" and dtype == torch.float32:
        u = 2.0**-11
    return 6.0 * u * max(math.sqrt(d), 2.0)

"""Gaussian duals of activations: the expectations behind the infinite-width NTK (``kernels.ntk``).

For (u, v) ~ N(0, [[a, c], [c, b]]), ρ = c / √(ab) = cos θ, elementwise in broadcast (a, b, c):

* ReLU-like φ(z) = s₊ max(z, 0) + s₋ min(z, 0) (arc-cosine kernels, Cho & Saul 2009):
      E[φφ]   = (s₊ − s₋)² √(ab) J(ρ) + s₊ s₋ c,    J(ρ) = (sin θ + (π − θ) ρ) / (2π),
      E[φ'φ'] = (s₊² + s₋²)/2 − (s₊ − s₋)² θ / (2π);
* erf (Williams 1997): E[φφ] = (2/π) arcsin(2c / √((1 + 2a)(1 + 2b))),
      E[φ'φ'] = (4/π) / √((1 + 2a)(1 + 2b) − 4c²);
* any listed activation by a kink-aware polar quadrature: z ~ N(0, I₂) = r(cos ψ, sin ψ),
      E[h(u, v)] = 1/(2π) ∫_{−π/2}^{π/2} dψ ∫_0^∞ r e^{−r²/2} [h(u, v) + h(−u, −v)] dr,
  u = r√a cos ψ, v = r√b cos(ψ − θ), with ψ cut at v = 0 into two sectors (smooth even for ReLU),
  graded Gauss–Legendre panels in ψ and r ∈ [0, 9]: 3456 nodes per pair, ~1e-8 (closed forms) to
  ~1e-7 (smooth activations) relative for variances up to ~200.

Subgradient at θ = 0 (x = y; docs/theory.md §8): dθ/dρ := 0 at |ρ| = 1, the minimal-norm
subgradient (and Neural Tangents' value); ρ within 16 ulp of ±1 is snapped to ±1, so every
x-gradient is finite.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from scoregan._checks import check_choice, check_int, check_positive
from scoregan.objectives.kernels.tiling import BUDGETS, real_number

__all__ = ["ACTIVATIONS", "CLOSED_FORM_ACTIVATIONS", "NTK_METHODS", "QUADRATURE_NODES", "NTKArch", "activation_pair",
           "arch_dual", "dual_activation", "ntk_arch",
           "snap_correlation", "snap_tolerance"]

ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "erf", "sigmoid", "tanh", "softplus", "gelu")
CLOSED_FORM_ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "erf")
NTK_METHODS: tuple[str, ...] = ("auto", "closed_form", "quadrature")

# |ρ| ≥ 1 − _SNAP_ULPS·eps counts as |ρ| = 1 (θ = 0 or π).
_SNAP_ULPS = 16.0
# Quadrature: panels (fractions of a sector) for ψ, panel ends for r, Gauss–Legendre nodes per panel.
_ANGLE_PANELS = (0.0, 0.05, 0.2, 0.5, 0.8, 0.95, 1.0)
_RADIUS_PANELS = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.5, 6.5, 9.0)
_ANGLE_NODES, _RADIUS_NODES = 6, 6
#: Quadrature nodes per pair and layer (both sectors).
QUADRATURE_NODES = 2 * (len(_ANGLE_PANELS) - 1) * _ANGLE_NODES * (len(_RADIUS_PANELS) - 1) * _RADIUS_NODES

# --------------------------------------------------------------------------------------------
# Activations φ and their derivatives φ'.
# --------------------------------------------------------------------------------------------

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


_PhiPair = Callable[[Tensor], tuple[Tensor, Tensor]]


def _leaky(slope: float) -> _PhiPair:
    def f(z: Tensor) -> tuple[Tensor, Tensor]:
        pos = z > 0
        return torch.where(pos, z, slope * z), torch.where(pos, torch.ones_like(z), torch.full_like(z, slope))

    return f


def _erf_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    return torch.erf(z), (2.0 / math.sqrt(math.pi)) * torch.exp(-z * z)


def _sigmoid_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(z)
    return s, s * torch.sigmoid(-z)


def _tanh_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    t = torch.tanh(z)
    return t, 1.0 - t * t


def _softplus_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    return nn.functional.softplus(z), torch.sigmoid(z)


def _gelu_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    cdf = 0.5 * (1.0 + torch.erf(z / _SQRT_2))
    return z * cdf, cdf + z * _INV_SQRT_2PI * torch.exp(-0.5 * z * z)


def activation_pair(activation: str, negative_slope: float = 0.01) -> _PhiPair:
    """z ↦ (φ(z), φ'(z)) for an activation in :data:`ACTIVATIONS`, elementwise.

    relu max(z, 0); leaky_relu max(z, 0) + negative_slope·min(z, 0); erf; sigmoid; tanh;
    softplus log(1 + eᶻ); gelu z Φ(z) (the exact, erf-based GELU). φ' at a kink is the right
    derivative (a null set for every Gaussian expectation).
    """
    check_choice("activation", activation, ACTIVATIONS)
    table: dict[str, _PhiPair] = {
        "relu": _leaky(0.0),
        "leaky_relu": _leaky(float(negative_slope)),
        "erf": _erf_pair,
        "sigmoid": _sigmoid_pair,
        "tanh": _tanh_pair,
        "softplus": _softplus_pair,
        "gelu": _gelu_pair,
    }
    return table[activation]


# --------------------------------------------------------------------------------------------
# θ = arccos ρ and J(ρ) with the subgradient convention of the module doc.
# --------------------------------------------------------------------------------------------


def snap_tolerance(dtype: torch.dtype) -> float:
    """|ρ| ≥ 1 − tol counts as |ρ| = 1: tol = 16 ulp of 1 in ``dtype``."""
    return _SNAP_ULPS * torch.finfo(dtype).eps


def snap_correlation(rho: Tensor) -> Tensor:
    """ρ clamped to [−1, 1], within 16 ulp of ±1 snapped to ±1 (the θ = 0, π convention above)."""
    tol = snap_tolerance(rho.dtype)
    r = rho.clamp(-1.0, 1.0)
    r.masked_fill_(r >= 1.0 - tol, 1.0)
    return r.masked_fill_(r <= -1.0 + tol, -1.0)


def _snap(rho: Tensor) -> tuple[Tensor, Tensor]:
    """(:func:`snap_correlation` of ρ, mask of |ρ| < 1 after snapping)."""
    r = snap_correlation(rho)
    return r, r.abs() < 1.0


def _sin_from_cos(r: Tensor, inside: Tensor) -> Tensor:
    """√(1 − r²) where inside, else 0, with finite autograd everywhere."""
    q = torch.where(inside, 1.0 - r * r, torch.ones_like(r))
    return torch.where(inside, torch.sqrt(q), torch.zeros_like(r))


class _Arccos(torch.autograd.Function):
    """θ = arccos ρ on [−1, 1]; dθ/dρ = −1/sin θ for |ρ| < 1 and := 0 at |ρ| = 1 (module doc)."""

    @staticmethod
    def forward(ctx, rho: Tensor) -> Tensor:
        r, _ = _snap(rho)
        ctx.save_for_backward(rho)
        return torch.arccos(r)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (rho,) = ctx.saved_tensors
        r, inside = _snap(rho)
        s = _sin_from_cos(r, inside)
        return grad * torch.where(inside, -1.0 / torch.where(inside, s, torch.ones_like(s)), torch.zeros_like(s))


class _ArccosJ(torch.autograd.Function):
    """J(ρ) = (sin θ + (π − θ) ρ) / (2π), with its exact derivative J'(ρ) = (π − θ) / (2π)."""

    @staticmethod
    def forward(ctx, rho: Tensor) -> Tensor:
        r, inside = _snap(rho)
        ctx.save_for_backward(rho)
        theta = torch.arccos(r)
        return (_sin_from_cos(r, inside) + (math.pi - theta) * r) / (2.0 * math.pi)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (rho,) = ctx.saved_tensors
        return grad * (math.pi - _Arccos.apply(rho)) / (2.0 * math.pi)


def _safe_sqrt(q: Tensor) -> Tensor:
    """√max(q, 0), with gradient 0 (not ∞) where q ≤ 0."""
    pos = q > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, q, torch.ones_like(q))), torch.zeros_like(q))


def _correlation(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(√(ab), ρ = c/√(ab)), with ρ := 0 where a or b is 0 (a constant pre-activation)."""
    prod = _safe_sqrt(a * b)
    pos = prod > 0
    rho = torch.where(pos, c / torch.where(pos, prod, torch.ones_like(prod)), torch.zeros_like(prod))
    return prod, rho


# --------------------------------------------------------------------------------------------
# Duals: (E[φ(u)φ(v)], E[φ'(u)φ'(v)]) for (u, v) ~ N(0, [[a, c], [c, b]]), elementwise.
# --------------------------------------------------------------------------------------------


def _relu_like_dual(a: Tensor, b: Tensor, c: Tensor, pos: float, neg: float) -> tuple[Tensor, Tensor]:
    prod, rho = _correlation(a, b, c)
    jump = (pos - neg) ** 2
    nngp = jump * prod * _ArccosJ.apply(rho) + pos * neg * c
    dot = (pos * pos + neg * neg) / 2.0 - jump * _Arccos.apply(rho) / (2.0 * math.pi)
    return nngp, dot


def _erf_dual(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    da, db = 1.0 + 2.0 * a, 1.0 + 2.0 * b
    nngp = (2.0 / math.pi) * torch.asin((2.0 * c / torch.sqrt(da * db)).clamp(-1.0, 1.0))
    dot = (4.0 / math.pi) / torch.sqrt(da * db - 4.0 * c * c)
    return nngp, dot


@dataclass(frozen=True)
class _Nodes:
    """Quadrature nodes: sector fractions t (A,), their weights (A,), radii r (R,), weights (R,)."""

    t: Tensor
    wt: Tensor
    r: Tensor
    wr: Tensor


def _panel_nodes(ends: tuple[float, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre nodes and weights on the panels [ends[i], ends[i+1]]."""
    z, w = np.polynomial.legendre.leggauss(n)
    nodes, weights = [], []
    for lo, hi in itertools.pairwise(ends):
        nodes.append(lo + (hi - lo) * (z + 1.0) / 2.0)
        weights.append((hi - lo) * w / 2.0)
    return np.concatenate(nodes), np.concatenate(weights)


@functools.lru_cache(maxsize=16)
def _quadrature_nodes(dtype: torch.dtype, device: torch.device) -> _Nodes:
    t, wt = _panel_nodes(_ANGLE_PANELS, _ANGLE_NODES)
    r, wr = _panel_nodes(_RADIUS_PANELS, _RADIUS_NODES)
    wr = wr * r * np.exp(-0.5 * r * r)  # the radial density r e^{−r²/2} (integrates to 1)

    def as_t(v: np.ndarray) -> Tensor:
        return torch.as_tensor(v, dtype=dtype, device=device)

    return _Nodes(as_t(t), as_t(wt), as_t(r), as_t(wr))


def _quadrature_dual(a: Tensor, b: Tensor, c: Tensor, pair: _PhiPair, nodes: _Nodes) -> tuple[Tensor, Tensor]:
    """Both expectations by the kink-aware polar quadrature of the module doc, chunked over pairs."""
    a, b, c = torch.broadcast_tensors(a, b, c)
    shape = a.shape
    a, b, c = a.reshape(-1), b.reshape(-1), c.reshape(-1)
    if a.numel() == 0:
        return a.new_zeros(shape), a.new_zeros(shape)
    step = max(1, BUDGETS.ntk_quadrature // (2 * nodes.t.numel() * nodes.r.numel()))
    outs = [_quadrature_block(a[i : i + step], b[i : i + step], c[i : i + step], pair, nodes)
            for i in range(0, a.numel(), step)]
    return torch.cat([o[0] for o in outs]).reshape(shape), torch.cat([o[1] for o in outs]).reshape(shape)


def _quadrature_block(a: Tensor, b: Tensor, c: Tensor, pair: _PhiPair, nodes: _Nodes) -> tuple[Tensor, Tensor]:
    sa, sb = _safe_sqrt(a), _safe_sqrt(b)
    _, rho = _correlation(a, b, c)
    theta = _Arccos.apply(rho)[:, None]  # (P, 1)
    half = math.pi / 2.0
    # Sector 1: ψ ∈ [−π/2, θ − π/2] (v ≤ 0); sector 2: ψ ∈ [θ − π/2, π/2] (v ≥ 0); u ≥ 0 on both.
    psi = torch.cat([-half + theta * nodes.t, theta - half + (math.pi - theta) * nodes.t], dim=1)  # (P, 2A)
    w_psi = torch.cat([theta * nodes.wt, (math.pi - theta) * nodes.wt], dim=1)
    u = (sa[:, None] * torch.cos(psi))[..., None] * nodes.r  # (P, 2A, R)
    v = (sb[:, None] * torch.cos(psi - theta))[..., None] * nodes.r
    weight = w_psi[..., None] * nodes.wr / (2.0 * math.pi)
    (fu, du), (fv, dv) = pair(u), pair(v)
    (fmu, dmu), (fmv, dmv) = pair(-u), pair(-v)
    nngp = ((fu * fv + fmu * fmv) * weight).sum(dim=(1, 2))
    dot = ((du * dv + dmu * dmv) * weight).sum(dim=(1, 2))
    return nngp, dot


@dataclass(frozen=True)
class NTKArch:
    """A validated fully connected architecture: the parameters of the NTK recursion (``kernels.ntk``)."""

    depth: int
    activation: str
    weight_std: float
    bias_std: float
    negative_slope: float
    method: str

    @property
    def closed_form(self) -> bool:
        return self.method == "closed_form" or (self.method == "auto" and self.activation in CLOSED_FORM_ACTIVATIONS)


def ntk_arch(depth, activation, weight_std, bias_std, negative_slope=0.01, method="auto") -> NTKArch:
    """A validated :class:`NTKArch` (ValueError naming the bad argument)."""
    check_int("depth", depth, minimum=1)
    check_choice("activation", activation, ACTIVATIONS)
    weight_std = check_positive("weight_std", real_number("weight_std", weight_std))
    bias_std = check_positive("bias_std", real_number("bias_std", bias_std), allow_zero=True)
    negative_slope = real_number("negative_slope", negative_slope)
    check_choice("method", method, NTK_METHODS)
    if method == "closed_form" and activation not in CLOSED_FORM_ACTIVATIONS:
        raise ValueError(
            f"method='closed_form' is not available for activation={activation!r}; closed forms exist for "
            f"{', '.join(map(repr, CLOSED_FORM_ACTIVATIONS))} (use method='quadrature' or 'auto')"
        )
    return NTKArch(depth, activation, weight_std, bias_std, negative_slope, method)


def dual_activation(
    a: Tensor, b: Tensor, c: Tensor, *, activation: str, negative_slope: float = 0.01, method: str = "auto"
) -> tuple[Tensor, Tensor]:
    """(E[φ(u)φ(v)], E[φ'(u)φ'(v)]) for (u, v) ~ N(0, [[a, c], [c, b]]), elementwise (broadcast).

    method: "closed_form" (relu, leaky_relu, erf), "quadrature" (every activation), "auto"
    (closed form where it exists). Requires a, b ≥ 0 and c² ≤ ab.
    """
    arch = ntk_arch(1, activation, 1.0, 0.0, negative_slope, method)
    return arch_dual(arch, a, b, c)


def arch_dual(arch: NTKArch, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(E[φ(u)φ(v)], E[φ'(u)φ'(v)]) of ``arch``'s activation, elementwise (closed form or quadrature)."""
    if arch.closed_form:
        if arch.activation == "erf":
            return _erf_dual(a, b, c)
        neg = 0.0 if arch.activation == "relu" else arch.negative_slope
        return _relu_like_dual(a, b, c, 1.0, neg)
    pair = activation_pair(arch.activation, arch.negative_slope)
    return _quadrature_dual(a, b, c, pair, _quadrature_nodes(c.dtype, c.device))

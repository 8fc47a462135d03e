"""Autograd-free x-gradient of the closed-form infinite-width NTK / NNGP (``kernels.ntk``).

Σ¹ enters k(x_i, y_j) only through a = Σ¹(x_i, x_i) and c = Σ¹(x_i, y_j) (b = Σ¹(y_j, y_j) is
constant in x). One forward pass over the layers carries, next to (c_l, Θ_l) per pair, their
derivatives with respect to (a₁, c₁) (forward mode), from the analytic partials of the duals:

* ReLU-like, ρ = c/√(ab), J' = (π − θ)/(2π), θ' = −1/sin θ (:= 0 at |ρ| = 1, as ``ntk_duals``):
      ∂E[φφ]/∂a = (s₊ − s₋)² √(ab)/(2a) (J − ρJ'),   ∂E[φφ]/∂c = (s₊ − s₋)² J' + s₊s₋,
      ∂E[φ'φ']/∂a = −(s₊ − s₋)²/(2π) θ' · (−ρ/(2a)),  ∂E[φ'φ']/∂c = −(s₊ − s₋)²/(2π) θ' / √(ab);
* erf, P = (1 + 2a)(1 + 2b), D = P − 4c², E[φ'φ'] = (4/π)/√D:
      ∂E[φφ]/∂c = E[φ'φ'],  ∂E[φφ]/∂a = −E[φ'φ'] c/(1 + 2a),
      ∂E[φ'φ']/∂c = E[φ'φ'] 4c/D,  ∂E[φ'φ']/∂a = −E[φ'φ'] (1 + 2b)/D.

The variance chain a_l(a₁) of x is differentiated per point (slopes s_l = da_l/da₁). The pair
quantities ρ, θ, sin θ are computed with the very operations of ``ntk_duals`` (so the kink
snapping, and the subgradient at x = y, are the same); J − ρJ' = sin θ/(2π) in ∂E[φφ]/∂a.
``dual_values``: the duals alone, with the operations of ``ntk_duals`` but no autograd Functions
(the kernel's values off the graph). Shapes: a-like (N, 1), b-like (1, M), pair tensors (N, M);
everything follows the inputs' dtype and device. Tiles: ``FAST_ENTRIES_PER_PAIR`` (cache-sized).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoregan.objectives.kernels.ntk_duals import (
    CLOSED_FORM_ACTIVATIONS,
    NTKArch,
    arch_dual,
    snap_correlation,
    snap_tolerance,
)

__all__ = ["FAST_ENTRIES_PER_PAIR", "dual_values", "fast_path_available", "pair_partials", "variance_chain"]

#: Scalars budgeted per pair of a tile: ~16 live (N, M) temporaries, times 4 to keep tiles cache-sized.
FAST_ENTRIES_PER_PAIR = 64

_Duals = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def fast_path_available(arch: NTKArch) -> bool:
    """Whether ``arch`` has a closed-form dual (relu, leaky_relu, erf evaluated in closed form)."""
    return arch.closed_form and arch.activation in CLOSED_FORM_ACTIVATIONS


def _relu_like_grads(a: Tensor, b: Tensor, c: Tensor, s: Tensor, pos: float, neg: float) -> _Duals:
    """(E[φφ], E[φ'φ'], s ∂E[φφ]/∂a, ∂E[φφ]/∂c, s ∂E[φ'φ']/∂a, ∂E[φ'φ']/∂c), elementwise (broadcast).

    E[φφ] with the operations of ``ntk_duals`` (bitwise equal); ∂_a uses J − ρJ' = sin θ/(2π)
    (exact but at snapped pairs, where it differs by O(ulp)). s: a per-point factor (a's shape).
    """
    jump, pn, two_pi = (pos - neg) ** 2, pos * neg, 2.0 * math.pi
    zero_a, zero_b = a == 0, b == 0
    degenerate = bool(zero_a.any()) or bool(zero_b.any())
    if degenerate:  # a constant pre-activation: ρ := 0, no gradient through √(ab) (as ``ntk_duals``)
        a, b = a.masked_fill(zero_a, 1.0), b.masked_fill(zero_b, 1.0)
        mask = zero_a | zero_b
        prod = (a * b).sqrt_().masked_fill_(mask, 0.0)
        rho = (c / prod.masked_fill(mask, 1.0)).masked_fill_(mask, 0.0)
    else:
        prod = (a * b).sqrt_()
        rho = c / prod
    vec = s / a * (jump / (2.0 * two_pi))  # s · jump / (4π a), per point
    lo, hi = torch.aminmax(rho)
    tol = snap_tolerance(rho.dtype)
    r = rho if bool(hi < 1.0 - tol) and bool(lo > tol - 1.0) else snap_correlation(rho)
    theta = torch.arccos(r)
    sin = torch.rsub(r * r, 1.0).sqrt_()  # √(1 − r²), exactly 0 at |r| = 1
    pi_minus = torch.rsub(theta, math.pi)
    j = (pi_minus * r).add_(sin).div_(two_pi)
    nngp = prod * j if (jump, pn) == (1.0, 0.0) else jump * prod * j + pos * neg * c
    dot = theta.mul_(-jump / two_pi).add_((pos * pos + neg * neg) / 2.0)
    inv_sin = sin.reciprocal().nan_to_num_(posinf=0.0)  # −θ'; θ' := 0 at |ρ| = 1
    n_a = sin.mul_(prod).mul_(vec)
    n_c = pi_minus.mul_(jump / two_pi)
    if pn != 0.0:
        n_c.add_(pn)
    d_c = (inv_sin / prod).mul_(jump / two_pi)
    d_a = inv_sin.mul_(rho).mul_(vec).neg_()
    if degenerate:
        n_c.masked_fill_(mask, pn)
        d_c.masked_fill_(mask, 0.0)
    return nngp, dot, n_a, n_c, d_a, d_c


def dual_values(arch: NTKArch, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``arch_dual`` without autograd Functions, the same operations (bitwise equal values); no graph."""
    if arch.activation == "erf" or not arch.closed_form:
        return arch_dual(arch, a, b, c)
    pos, neg = 1.0, 0.0 if arch.activation == "relu" else arch.negative_slope
    jump, two_pi = (pos - neg) ** 2, 2.0 * math.pi
    zero_a, zero_b = a == 0, b == 0
    if bool(zero_a.any()) or bool(zero_b.any()):
        mask = zero_a | zero_b
        prod = (a.masked_fill(zero_a, 1.0) * b.masked_fill(zero_b, 1.0)).sqrt_().masked_fill_(mask, 0.0)
        rho = (c / prod.masked_fill(mask, 1.0)).masked_fill_(mask, 0.0)
    else:
        prod = (a * b).sqrt_()
        rho = c / prod
    r = snap_correlation(rho)
    theta = torch.arccos(r)
    j = (torch.rsub(theta, math.pi) * r).add_(torch.rsub(r * r, 1.0).sqrt_()).div_(two_pi)
    nngp = prod * j if (jump, pos * neg) == (1.0, 0.0) else jump * prod * j + pos * neg * c
    return nngp, torch.rsub(jump * theta / two_pi if jump != 1.0 else theta / two_pi, (pos * pos + neg * neg) / 2.0)


def _erf_grads(a: Tensor, b: Tensor, c: Tensor, s: Tensor) -> _Duals:
    """The erf dual and its partials (module doc; ∂_a terms times s), elementwise (broadcast)."""
    da, db = 1.0 + 2.0 * a, 1.0 + 2.0 * b
    p = da * db
    nngp = (2.0 / math.pi) * torch.asin((2.0 * c / torch.sqrt(p)).clamp(-1.0, 1.0))
    det = torch.addcmul(p, c, c, value=-4.0)
    dot = torch.rsqrt(det).mul_(4.0 / math.pi)
    dot_det = dot / det
    return nngp, dot, dot * c * (-s / da), dot.clone(), dot_det * (-s * db), (dot_det * c).mul_(4.0)


def _dual_grads(arch: NTKArch, a: Tensor, b: Tensor, c: Tensor, s: Tensor) -> _Duals:
    if arch.activation == "erf":
        return _erf_grads(a, b, c, s)
    return _relu_like_grads(a, b, c, s, 1.0, 0.0 if arch.activation == "relu" else arch.negative_slope)


def variance_chain(arch: NTKArch, a: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """([Σ^{(l)}(x, x)]_{l=1..depth}, [dΣ^{(l)}(x, x)/dΣ^{(1)}(x, x)]_l), each of a's shape.

    Values by the same ``arch_dual`` calls as ``kernels.ntk``; slopes by the chain rule
    s_{l+1} = σ_w² (2 ∂E[φφ]/∂a + ∂E[φφ]/∂c)(a_l, a_l, a_l) s_l (the dual is symmetric in a, b).
    """
    w2, b2 = arch.weight_std**2, arch.bias_std**2
    chain, slopes = [a], [torch.ones_like(a)]
    for _ in range(arch.depth - 1):
        _, _, n_a, n_c, _, _ = _dual_grads(arch, a, a, a, slopes[-1])
        slopes.append(w2 * (2.0 * n_a + n_c * slopes[-1]))
        a = w2 * arch_dual(arch, a, a, a)[0] + b2
        chain.append(a)
    return chain, slopes


def _affine_(t: Tensor, scale: float, shift: float) -> Tensor:
    """t ← scale · t + shift in place, skipping the no-op steps."""
    if scale != 1.0:
        t.mul_(scale)
    return t.add_(shift) if shift != 0.0 else t


def pair_partials(
    arch: NTKArch, ntk: bool, a_chain: list[Tensor], slopes: list[Tensor], b_chain: list[Tensor], c: Tensor
) -> tuple[Tensor, Tensor]:
    """(∂k/∂a₁, ∂k/∂c₁), each (N, M), k = Θ (ntk) or Σ (nngp) of the read-out, by forward mode.

    a_chain, slopes: (N, 1) per layer (:func:`variance_chain`); b_chain: (1, M); c = Σ¹ (N, M).
    Per layer, with (C, Θ) the pair quantities, D = (∂/∂a₁, ∂/∂c₁) and E, E' the two duals:
    C ← σ_w² E + σ_b²,  DC ← σ_w² (∂_a E s_l, 0) + σ_w² ∂_c E DC,
    Θ ← C + σ_w² E' Θ,  DΘ ← DC + σ_w² ((∂_a E' s_l, 0) + ∂_c E' DC) Θ + σ_w² E' DΘ.
    """
    w2, b2 = arch.weight_std**2, arch.bias_std**2
    theta, first = c, True
    c_a = c_c = t_a = t_c = None  # None at layer 1: DC = DΘ = (0, 1)
    for a, s, b in zip(a_chain, slopes, b_chain):
        nngp, dot, n_a, n_c, d_a, d_c = _dual_grads(arch, a, b, c, s)
        if ntk:  # DΘ before DC, C and Θ are overwritten
            if c_a is None:
                t_a = d_a.mul_(theta)
                t_c = d_c.mul_(theta).add_(dot)
            else:
                t_a = d_a.addcmul_(d_c, c_a).mul_(theta).addcmul_(dot, t_a)
                t_c = d_c.mul_(c_c).mul_(theta).addcmul_(dot, t_c)
        if c_a is None:
            c_a, c_c = n_a, n_c
        else:
            c_a, c_c = n_a.addcmul_(n_c, c_a), n_c.mul_(c_c)
        if w2 != 1.0:
            c_a.mul_(w2)
            c_c.mul_(w2)
        c = _affine_(nngp, w2, b2)  # σ_w² E + σ_b², the operations of ``kernels.ntk``
        if ntk:
            t_a, t_c = _affine_(t_a, w2, 0.0).add_(c_a), _affine_(t_c, w2, 0.0).add_(c_c)
            # Θ¹ is the caller's c: not overwritten
            theta = torch.addcmul(c, dot, theta, value=w2) if first else _affine_(theta.mul_(dot), w2, 0.0).add_(c)
        first = False
    if ntk:
        return t_a, t_c
    return c_a, c_c

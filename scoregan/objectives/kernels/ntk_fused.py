"""One branch-free tile of the ReLU-like NTK / NNGP witness gradient, for ``torch.compile`` to fuse.

:func:`relu_tile_grad` is the forward-mode recursion of ``kernels.ntk_fast`` (the same formulas:
ρ = c/√(ab) snapped to ±1 within 16 ulp, θ = arccos ρ, J, θ' = −1/sin θ := 0 at |ρ| = 1, the
partials ∂k/∂a₁, ∂k/∂c₁ carried through the layers) with every data-dependent branch written as a
``where``, then contracted against the weights:

    G_i = (2σ_w²/d) x_i Σ_j a_j ∂k_ij/∂a₁ + (σ_w²/d) Σ_j a_j ∂k_ij/∂c₁ y_j      (bn, d).

Compiled (:func:`compiled_tile_grad`, inductor on CPU, Triton on CUDA), the ~40 elementwise passes
per layer become one loop over the pairs of the tile: about 6× faster than the eager recursion on one
CPU thread (docs/benchmarks.md, "NTK witness gradient"). Pairs with |ρ₁| > 1 − ``near_tau`` are left
out (their partials zeroed) and returned as a mask, for the caller to add them in float64
(``NTKKernel._fast_witness_grad``). Requires a, b > 0 (biases, or no zero input): the caller checks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["compiled_tile_grad", "relu_tile_grad"]


def relu_tile_grad(xq: Tensor, yc: Tensor, wc: Tensor, wyc: Tensor, a_chain: list[Tensor], slopes: list[Tensor],
                   b_chain: list[Tensor], scale: float, b2: float, w2: float, tol: float, pos: float, neg: float,
                   ntk: bool, near_tau: float) -> tuple[Tensor, Tensor]:
    """(G (bn, d), near (bn, bm) bool) for queries xq (bn, d), centres yc (bm, d), weights wc (bm,), wyc = wc·yc;
    a_chain, slopes: (bn, 1) per layer; b_chain: (1, bm) per layer (module doc)."""
    two_pi = 2.0 * math.pi
    jump, pn, sq = (pos - neg) ** 2, pos * neg, (pos * pos + neg * neg) / 2.0
    c = scale * (xq @ yc.T) + b2
    near = (c / torch.sqrt(a_chain[0] * b_chain[0])).abs() > 1.0 - near_tau
    theta_k = c
    c_a = c_c = t_a = t_c = c
    for layer, (a, s, b) in enumerate(zip(a_chain, slopes, b_chain)):
        prod = torch.sqrt(a * b)
        rho = c / prod
        r = rho.clamp(-1.0, 1.0)
        r = torch.where(r >= 1.0 - tol, 1.0, torch.where(r <= -1.0 + tol, -1.0, r))
        th = torch.arccos(r)
        sin = torch.sqrt(1.0 - r * r)
        pim = math.pi - th
        nngp = jump * prod * ((pim * r + sin) / two_pi) + pn * c
        dot = sq - (jump / two_pi) * th
        inv_sin = torch.where(sin > 0, 1.0 / torch.where(sin > 0, sin, 1.0), 0.0)
        vec = s / a * (jump / (2.0 * two_pi))
        n_a = sin * prod * vec
        n_c = (jump / two_pi) * pim + pn
        d_c = inv_sin / prod * (jump / two_pi)
        d_a = -(inv_sin * rho * vec)
        if ntk:  # DΘ before DC, C and Θ are updated (as ``ntk_fast.pair_partials``)
            if layer == 0:
                t_a, t_c = d_a * theta_k, d_c * theta_k + dot
            else:
                t_a = (d_a + d_c * c_a) * theta_k + dot * t_a
                t_c = d_c * c_c * theta_k + dot * t_c
        c_a, c_c = (n_a, n_c) if layer == 0 else (n_a + n_c * c_a, n_c * c_c)
        c_a, c_c = w2 * c_a, w2 * c_c
        c = w2 * nngp + b2
        if ntk:
            t_a, t_c = w2 * t_a + c_a, w2 * t_c + c_c
            theta_k = c + w2 * dot * theta_k
    g_a, g_c = (t_a, t_c) if ntk else (c_a, c_c)
    g_a, g_c = torch.where(near, 0.0, g_a), torch.where(near, 0.0, g_c)
    return xq * ((2.0 * scale) * (g_a @ wc))[:, None] + scale * (g_c @ wyc), near


@functools.cache
def compiled_tile_grad() -> Callable[..., tuple[Tensor, Tensor]]:
    """:func:`relu_tile_grad` through ``torch.compile`` (compiled on first call per shape and constants)."""
    return torch.compile(relu_tile_grad, dynamic=False)

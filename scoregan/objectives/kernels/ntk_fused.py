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
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["compiled_tile_grad", "fused_available", "relu_tile_grad"]


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
    """:func:`relu_tile_grad` through ``torch.compile``, specialised per tile shape and constants (static
    shapes vectorise best; a call has at most four tile shapes, so dynamo's recompile limit is raised to 64)."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(64, getattr(dynamo_config, name)))
    return torch.compile(relu_tile_grad, dynamic=False)


@functools.cache
def _probe(device_type: str, dtype: torch.dtype) -> str | None:
    """None when a tiny :func:`compiled_tile_grad` call compiles and runs on this device and dtype, else why not."""
    try:
        x = torch.ones(2, 2, device=device_type, dtype=dtype)
        one = torch.ones(2, 1, device=device_type, dtype=dtype)
        compiled_tile_grad()(x, x, x[:, 0], x, [one], [one], [one.T], 0.5, 1.0, 1.0, 1e-6, 1.0, 0.0, True, -1.0)
    except Exception as exc:  # no C++ compiler, no Python headers, an unsupported backend, ...
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def fused_available(like: Tensor) -> bool:
    """Whether the compiled tile works for tensors like ``like``; if not, one warning saying why (the caller
    then takes the eager fast path, with the same values)."""
    why = _probe(like.device.type, like.dtype)
    if why is not None:
        warnings.warn(f"NTKKernel(compile=True): torch.compile is not usable here ({why[:200]}); "
                      "using the eager fast path", RuntimeWarning, stacklevel=3)
    return why is None

"""The input gradient of a row-wise scalar field, written once for flows, guidance, diagnostics,
NTK particle flows and gradient penalties.

For f: (N, d) -> (N,) (or (N, 1)) acting row by row, ∇ₓ Σ_i f(x)_i = [∇f(x_i)]_i is the (N, d)
matrix of per-row gradients: one backward pass for the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from scoregan._checks import check_matrix


def input_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *,
                   create_graph: bool = False, name: str = "the field") -> torch.Tensor:
    """∇f(x_i) for every row of x (N, d): a tensor (N, d) in x's dtype and device.

    Gradients flow to x only (parameters accumulate nothing). Without ``create_graph`` no graph is
    kept; with it the result is differentiable (a gradient penalty), through x's own graph when x
    requires grad. ``f`` must return one value per row, (N,) or (N, 1): a ValueError names it (``name``)
    and the shapes.
    """
    check_matrix("x", x)
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    with torch.enable_grad():
        xg = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        out = f(xg)
        if out.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ValueError(f"{name} must map (N, d) to (N,) or (N, 1); got {tuple(x.shape)} -> {tuple(out.shape)}")
        (grad,) = torch.autograd.grad(out.sum(), xg, create_graph=create_graph)
    return grad

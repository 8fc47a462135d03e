"""Shared numerics of the chunked torch paths: validation, memory budgets, tiles, squared distances.

Queries x (N, d), centres y (M, d), weights a (M,). A witness never holds more than one tile of
the N × M matrix: ``tiles`` picks (N_b, M_b) with N_b·M_b·(entries per pair) ≤ ``BUDGETS.tile``,
``blockwise`` sums the tiles over centre blocks and concatenates the query blocks.

Squared distances of a tile (docs/theory.md §7). Both sets are first shifted by the mean of the
centres (``centred``; exact, radial kernels are translation invariant). For d ≤ ``EXACT_MAX_D``
they come from the exact differences t_ij = x_i − y_j, S = ‖t‖² (no cancellation); above, from
the expansion S = ‖x‖² + ‖y‖² − 2 x yᵀ (one ``addmm``), clamped at 0, and every pair with
S ≤ tol (‖x‖² + ‖y‖²), tol = ``cancellation_tol(dtype, d, precision)``, counts as coincident
(S := 0). ``matmul_precision`` sets TF32 ("tf32") or full fp32 ("ieee") CUDA matmuls for a call
and restores the global flag after (not thread-safe); elsewhere both are full precision.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scoregan._checks import check_matrix

__all__ = [
    "BACKENDS",
    "BUDGETS",
    "EXACT_MAX_D",
    "PRECISIONS",
    "Budgets",
    "blockwise",
    "centred",
    "check_inputs",
    "matmul_precision",
    "real_number",
    "sq_norms",
    "sqdist_tile",
    "tiles",
]

BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
PRECISIONS: tuple[str, ...] = ("ieee", "tf32")

#: Dimensions up to which squared distances come from exact differences x_i − y_j (no expansion,
#: no threshold): the torch path and the fused kernel's "direct" path.
EXACT_MAX_D = 4


@dataclass
class Budgets:
    """Most scalar entries one chunk holds (set a field to tune; read at call time).

    tile: an N_b × M_b (× per-pair) tile of witness, witness_grad and mmd2; ntk_quadrature:
    (pairs × nodes) of one NTK quadrature chunk; ntk_grad: the autograd graph of one chunk of
    pairs in ``NTKKernel`` gradients.
    """

    tile: int = 2**22
    ntk_quadrature: int = 2**21
    ntk_grad: int = 2**23


#: The budgets every chunked loop of the kernels package reads.
BUDGETS = Budgets()


def real_number(name: str, value: Any) -> float:
    """A finite real number as float (bools and non-numbers rejected), else ValueError naming it."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def check_inputs(
    x: Any, centres: Any, weights: Any, *, x_name: str = "x", centres_name: str = "centres"
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate queries (N, d), centres (M, d) and weights (M,); return weights (default 1/M)."""
    check_matrix(x_name, x)
    check_matrix(centres_name, centres, dim=x.shape[1])
    if not x.dtype.is_floating_point:
        raise ValueError(f"{x_name} must be a floating-point tensor, got dtype {x.dtype}")
    if centres.dtype != x.dtype:
        raise ValueError(f"{centres_name} has dtype {centres.dtype} but {x_name} has {x.dtype}; they must match")
    if centres.device != x.device:
        raise ValueError(f"{centres_name} is on {centres.device} but {x_name} is on {x.device}; they must match")
    m = centres.shape[0]
    if weights is None:
        return x, centres, torch.full((m,), 1.0 / max(m, 1), dtype=x.dtype, device=x.device)
    if not isinstance(weights, Tensor):
        raise ValueError(f"weights must be a torch.Tensor of shape ({m},), got {type(weights).__name__}")
    if weights.shape != (m,):
        raise ValueError(f"weights must have shape ({m},) (one per centre), got {tuple(weights.shape)}")
    if weights.device != x.device:
        raise ValueError(f"weights is on {weights.device} but {x_name} is on {x.device}; they must match")
    return x, centres, weights.to(x.dtype)


def tiles(n: int, m: int, chunk_size: int | None, per_entry: int = 1) -> tuple[int, int]:
    """(query rows, centre rows) per tile, at most ``BUDGETS.tile`` scalars (``per_entry`` per pair).

    ``chunk_size`` fixes the centre rows; by default as many centres as fit next to all queries
    (but at least 256, then the queries are chunked).
    """
    budget = max(1, BUDGETS.tile // per_entry)
    if chunk_size is not None:
        bm = chunk_size
    else:
        bm = max(budget // max(n, 1), min(256, budget))
    bm = max(1, min(bm, m))
    bn = max(1, min(n, budget // bm))
    return bn, bm


def blockwise(n: int, m: int, bn: int, bm: int, fn: Callable[[slice, slice], Tensor]) -> Tensor:
    """Σ over centre blocks of ``fn(query block, centre block)``, concatenated over query blocks."""
    blocks = []
    for i in range(0, n, bn):
        acc = None
        for j in range(0, m, bm):
            term = fn(slice(i, i + bn), slice(j, j + bm))
            acc = term if acc is None else acc + term
        blocks.append(acc)
    return torch.cat(blocks)


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str) -> Iterator[None]:
    """Locally allow ("tf32") or forbid ("ieee") TF32 in CUDA float32 matmuls; no-op elsewhere."""
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    # torch >= 2.9 has fp32_precision (mixing it with the legacy allow_tf32 flag is an error).
    attr, value = ("fp32_precision", precision) if hasattr(matmul, "fp32_precision") else (
        "allow_tf32", precision == "tf32")
    before = getattr(matmul, attr)
    setattr(matmul, attr, value)
    try:
        yield
    finally:
        setattr(matmul, attr, before)


def sq_norms(z: Tensor) -> Tensor:
    """‖z_i‖²: (K, d) → (K,)."""
    return (z * z).sum(dim=1)


def sqdist_tile(xb: Tensor, nxb: Tensor, yb: Tensor, nyb: Tensor, tol: float) -> Tensor:
    """Squared distances (bn, bm) by the expansion, clamped ≥ 0, coincident pairs set to 0."""
    scale = nxb[:, None] + nyb[None, :]
    s = torch.addmm(scale, xb, yb.T, alpha=-2.0).clamp_min(0.0)
    return torch.where(s <= tol * scale, torch.zeros_like(s), s)


def centred(x: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """Shift both point sets by the (detached) mean of the centres: distances are unchanged."""
    if centres.shape[0] == 0:
        return x, centres
    shift = centres.detach().mean(dim=0, keepdim=True)
    return x - shift, centres - shift

"""Estimators built from two samples: the kernel witness and MMD² (docs/theory.md §5).

From a positive sample p (M_p, d) with weights α (M_p,) ≥ 0 and a negative sample q (M_n, d) with
weights β (M_n,) ≥ 0 (uniform 1/M by default), the witness is

    D̂(x) = Σ_j α_j k(x, p_j) − Σ_j β_j k(x, q_j) = Σ_j a_j k(x, y_j),   y = [p; q] (M_p + M_n, d),
    a = [α; −β],   D̂: (N, d) → (N,),   ∇D̂: (N, d) → (N, d),

with the kernel resolved once from the two samples (a median bandwidth from the pooled [p; q],
never from the query points), so that D̂ is one function wherever it is queried. MMD² of x (N, d)
and y (M, d) with one kernel resolved on [y; x] for the three terms:

    MMD²_u = Σ_{i≠i'} k(x_i, x_i')/(N(N−1)) + Σ_{j≠j'} k(y_j, y_j')/(M(M−1)) − 2 Σ_{i,j} k(x_i, y_j)/(NM),

or with ``unbiased=False`` the V-statistic (diagonals kept, means over N² and M²). Kernel
matrices are formed a row block at a time (at most ``BUDGETS.tile`` entries); every estimate is
differentiable in the samples (and in the weights) on the torch path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from scoregan._checks import check_matrix, check_positive
from scoregan.objectives.kernels.base import resolve_kernel
from scoregan.objectives.kernels.tiling import BUDGETS

__all__ = ["Witness", "kernel_witness", "mmd2"]


class Witness:
    """D̂(x) = Σ_j a_j k(x, y_j) for a resolved kernel, centres y (M, d) and signed weights a (M,)."""

    def __init__(self, kernel: Any, centres: Tensor, weights: Tensor):
        self.kernel, self.centres, self.weights = kernel, centres, weights
        self.dim = int(centres.shape[1])

    def value(self, x: Tensor, **witness_kwargs: Any) -> Tensor:
        """D̂(x): (N, d) → (N,) by ``kernel.witness`` (e.g. ``chunk_size``); differentiable on the torch path."""
        return self.kernel.witness(x, self.centres, self.weights, **witness_kwargs)

    __call__ = value

    def grad(self, x: Tensor, **witness_grad_kwargs: Any) -> Tensor:
        """∇ₓD̂(x): (N, d) → (N, d) by ``kernel.witness_grad`` (``backend``, ``precision``, ``chunk_size``)."""
        return self.kernel.witness_grad(x, self.centres, self.weights, **witness_grad_kwargs)

    def like(self, x: Tensor) -> Witness:
        """This witness with centres and weights in x's dtype and device (itself when they already are)."""
        if self.centres.dtype == x.dtype and self.centres.device == x.device and self.weights.dtype == x.dtype:
            return self
        return Witness(self.kernel, self.centres.to(x), self.weights.to(x))

    def __repr__(self) -> str:
        return f"Witness({self.kernel!r}, centres={tuple(self.centres.shape)})"


def _sample_weights(name: str, w: Tensor | None, pts: Tensor) -> Tensor:
    """Weights (M,) of a sample: 1/M by default, else a non-negative 1-D tensor of length M."""
    m = pts.shape[0]
    if w is None:
        return torch.full((m,), 1.0 / m, dtype=pts.dtype, device=pts.device)
    if not isinstance(w, Tensor) or w.ndim != 1:
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"{name} must be a 1-D tensor of shape ({m},), got {shape}")
    if w.shape[0] != m:
        raise ValueError(f"{name} has {w.shape[0]} entries but {m} were expected")
    check_positive(name, w, allow_zero=True)
    return w.to(dtype=pts.dtype)


def kernel_witness(
    kernel: Any,
    positive: Tensor,
    negative: Tensor,
    positive_weights: Tensor | None = None,
    negative_weights: Tensor | None = None,
    *,
    negative_centres: bool = True,
    names: tuple[str, str] = ("positive", "negative"),
) -> Witness:
    """The witness of the module doc for positive (M_p, d) and negative (M_n, d) samples.

    The kernel is resolved once, ``resolve_kernel(kernel, negative, positive)`` (pooled [p; q]);
    centres [p; q], weights [α; −β] (α, β: the given non-negative weights, else 1/M_p, 1/M_n).
    ``negative_centres=False`` keeps only the positive terms (centres p, weights α), the kernel
    still resolved from both samples. ``names`` name the two samples in error messages (the
    weights as ``<name>_weights``). Gradients flow to the samples and weights (torch path).
    """
    check_matrix(names[0], positive)
    check_matrix(names[1], negative, dim=positive.shape[1])
    a_p = _sample_weights(f"{names[0]}_weights", positive_weights, positive)
    a_n = _sample_weights(f"{names[1]}_weights", negative_weights, negative)
    resolved = resolve_kernel(kernel, negative, positive)
    if not negative_centres:
        return Witness(resolved, positive, a_p)
    return Witness(resolved, torch.cat([positive, negative]), torch.cat([a_p, -a_n]))


def _block_rows(n: int, m: int) -> int:
    return max(1, BUDGETS.tile // max(m, 1))


def _within_mean(k: Any, x: Tensor, unbiased: bool) -> Tensor:
    """Σ_{i≠i'} k(x_i, x_i')/(N(N−1)) (unbiased) or Σ_{i,i'} k(x_i, x_i')/N², by row blocks."""
    n = x.shape[0]
    step = _block_rows(n, n)
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for i in range(0, n, step):
        rows = slice(i, min(i + step, n))
        kb = k(x[rows], x)
        total = total + kb.sum()
        if unbiased:
            total = total - kb[:, rows].diagonal().sum()
    return total / (n * (n - 1)) if unbiased else total / (n * n)


def _cross_mean(k: Any, x: Tensor, y: Tensor) -> Tensor:
    """Σ_{i,j} k(x_i, y_j)/(NM), by row blocks."""
    n, m = x.shape[0], y.shape[0]
    step = _block_rows(n, m)
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for i in range(0, n, step):
        total = total + k(x[i : i + step], y).sum()
    return total / (n * m)


def mmd2(kernel: Any, x: Tensor, y: Tensor, unbiased: bool = True) -> Tensor:
    """MMD² of x (N, d) and y (M, d) as a 0-d tensor (module doc), differentiable in both.

    ``kernel``: a :class:`Kernel` (resolved once, ``kernel.resolve(x, y)``: a median bandwidth from
    the pooled [y; x]) or any callable (n, d), (m, d) → (n, m). The U-statistic needs N, M ≥ 2.
    """
    check_matrix("x", x)
    check_matrix("y", y, dim=x.shape[1])
    if x.shape[0] < (2 if unbiased else 1) or y.shape[0] < (2 if unbiased else 1):
        need = "2 (the U-statistic)" if unbiased else "1"
        raise ValueError(f"mmd2 needs at least {need} points per sample, got {x.shape[0]} and {y.shape[0]}")
    k = resolve_kernel(kernel, x, y)
    return _within_mean(k, x, unbiased) + _within_mean(k, y, unbiased) - 2.0 * _cross_mean(k, x, y)

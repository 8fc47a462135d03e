"""Neural tangent kernels of fully connected discriminators: the finite network and the empirical NTK.

:class:`NTKMLP` is the network of the infinite-width kernel, in the NTK parametrisation
(every entry of W^l, b^l ~ N(0, 1)):

    h¹(x) = σ_w/√d · W¹ x + σ_b b¹,   h^{l+1}(x) = σ_w/√n_l · W^{l+1} φ(h^l(x)) + σ_b b^{l+1},
    f(x)  = h^{depth+1}(x) ∈ R,       x (N, d) ↦ f(x) (N,).

:func:`empirical_ntk` is its kernel at finite width, k(x, y) = ⟨∂_θ f(x), ∂_θ f(y)⟩: (N, d), (M, d)
→ (N, M). As every width → ∞ it tends to :func:`infinite_ntk` (the closed form, a kernel of
:mod:`scoregan.objectives.kernels`, re-exported here with :class:`NTKKernel`, :func:`dual_activation`
and :func:`activation_pair`). docs/theory.md §8.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from scoregan._checks import check_int, check_matrix
from scoregan.objectives.kernels.ntk import NTK_KINDS, NTKKernel, infinite_ntk
from scoregan.objectives.kernels.ntk_duals import (
    ACTIVATIONS,
    CLOSED_FORM_ACTIVATIONS,
    NTK_METHODS,
    activation_pair,
    dual_activation,
    ntk_arch,
)
from scoregan.objectives.kernels.tiling import check_inputs

__all__ = [
    "ACTIVATIONS",
    "CLOSED_FORM_ACTIVATIONS",
    "NTK_METHODS",
    "NTKMLP",
    "NTK_KINDS",
    "NTKKernel",
    "activation_pair",
    "dual_activation",
    "empirical_ntk",
    "infinite_ntk",
]

#: Largest number of Jacobian entries (rows × parameters) the empirical NTK holds per block.
JAC_ELEMENTS = 2**24


class NTKMLP(nn.Module):
    """The finite-width network of :func:`infinite_ntk`: x (N, in_dim) ↦ f(x) (N,).

    Weights and biases are N(0, 1) parameters; layers compute σ_w/√fan_in · W h + σ_b b
    (``depth`` hidden layers of ``width`` units, then a linear read-out). Bias parameters exist
    only when bias_std > 0. ``generator`` makes the initialisation deterministic.
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        depth: int,
        activation: str = "relu",
        *,
        weight_std: float = 1.0,
        bias_std: float = 0.0,
        negative_slope: float = 0.01,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        check_int("in_dim", in_dim, minimum=1)
        check_int("width", width, minimum=1)
        self.arch = ntk_arch(depth, activation, weight_std, bias_std, negative_slope)
        self._pair = activation_pair(activation, self.arch.negative_slope)
        dims = [in_dim] + [width] * depth + [1]
        opts = {"dtype": dtype or torch.get_default_dtype()}

        def normal(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=generator, **opts).to(device))

        self.weights = nn.ParameterList([normal(o, i) for i, o in itertools.pairwise(dims)])
        self.biases = nn.ParameterList([normal(o) for o in dims[1:]]) if self.arch.bias_std > 0 else None
        self.in_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        check_matrix("x", x, dim=self.in_dim)
        h = x
        last = len(self.weights) - 1
        for i, w in enumerate(self.weights):
            h = (self.arch.weight_std / math.sqrt(w.shape[1])) * (h @ w.T)
            if self.biases is not None:
                h = h + self.arch.bias_std * self.biases[i]
            if i < last:
                h = self._pair(h)[0]
        return h[:, 0]


def _flat_jacobian(model: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
    """∂f(x_i)/∂φ for each row: (B, d) → (B, P), with torch.func (vmap of jacrev)."""

    def f(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(model, (p, buffers), (xi[None],)).reshape(())

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    return torch.cat([j.reshape(x.shape[0], -1) for j in jac.values()], dim=1)


def empirical_ntk(model: nn.Module, x: Tensor, y: Tensor | None = None, *, chunk_size: int | None = None) -> Tensor:
    """k(x_i, y_j) = ⟨∂_φ f(x_i), ∂_φ f(y_j)⟩ over the trainable parameters φ: (N, d), (M, d) → (N, M).

    ``model`` maps (B, d) to (B,) or (B, 1) (one scalar per row; it must treat rows
    independently, e.g. no batch norm in training mode). Jacobians by ``torch.func`` (vmap of
    jacrev), held ``chunk_size`` rows at a time (default: as many as fit in 2²⁴ entries), so memory
    is bounded by one block of each side's Jacobian. y=None means y = x.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    same = y is None
    x, y, _ = check_inputs(x, x if same else y, None, centres_name="y")
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters: its NTK is identically 0")
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        probe = model(x[:1])
    if probe.numel() != 1:
        raise ValueError(f"model must return one scalar per row, got output shape {tuple(probe.shape)} for 1 row")
    n_params = sum(p.numel() for p in params.values())
    rows = chunk_size or max(1, JAC_ELEMENTS // n_params)
    n, m = x.shape[0], y.shape[0]
    if n == 0 or m == 0:
        return x.new_zeros(n, m)
    jac = lambda z: _flat_jacobian(model, params, buffers, z)
    if n <= rows and m <= rows:
        jx = jac(x)
        return jx @ (jx if same else jac(y)).T
    out = x.new_empty(n, m)
    for i in range(0, n, rows):
        jx = jac(x[i : i + rows])
        for j in range(0, m, rows):
            out[i : i + rows, j : j + rows] = jx @ jac(y[j : j + rows]).T
    return out

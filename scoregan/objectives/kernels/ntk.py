"""The infinite-width neural tangent kernel of a fully connected network, as a :class:`Kernel`.

``depth`` hidden layers in the NTK parametrisation (Jacot et al. 2018; Neural Tangents'
``stax.Dense(W_std, b_std, parameterization='ntk')``), every entry of W^l, b^l ~ N(0, 1):

    h¹(x) = σ_w/√d · W¹ x + σ_b b¹,   h^{l+1}(x) = σ_w/√n_l · W^{l+1} φ(h^l(x)) + σ_b b^{l+1},
    f(x)  = h^{depth+1}(x) ∈ R.

As every width n_l → ∞, f has the NNGP Σ = Σ^{(depth+1)} and the NTK Θ = Θ^{(depth+1)} of

    Σ^{(1)}(x, y)   = σ_w² xᵀy / d + σ_b²,                      Θ^{(1)} = Σ^{(1)},
    Σ^{(l+1)}(x, y) = σ_w² E[φ(u) φ(v)] + σ_b²,
    Θ^{(l+1)}(x, y) = Σ^{(l+1)}(x, y) + σ_w² E[φ'(u) φ'(v)] Θ^{(l)}(x, y),
    (u, v) ~ N(0, [[Σ^{(l)}(x, x), Σ^{(l)}(x, y)], [Σ^{(l)}(x, y), Σ^{(l)}(y, y)]]),

with the expectations (duals) of ``kernels.ntk_duals``. Shapes: x (N, d), y (M, d) → (N, M);
everything follows the inputs' dtype and device (docs/theory.md §8). The finite network and the
empirical NTK live in :mod:`scoregan.diagnostics.ntk`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from scoregan._checks import check_choice
from scoregan.objectives.kernels.base import Kernel
from scoregan.objectives.kernels.ntk_duals import (
    QUADRATURE_NODES,
    NTKArch,
    arch_dual,
    ntk_arch,
    snap_tolerance,
)
from scoregan.objectives.kernels.ntk_fast import (
    FAST_ENTRIES_PER_PAIR,
    dual_values,
    fast_path_available,
    pair_partials,
    variance_chain,
)
from scoregan.objectives.kernels.ntk_fused import compiled_tile_grad, fused_available
from scoregan.objectives.kernels.tiling import BUDGETS, blockwise, check_inputs, tiles

__all__ = ["NEAR_PAIR_TAU", "NTK_KINDS", "NTKKernel", "infinite_ntk"]

#: Below float64, ``NTKKernel.witness_grad`` recomputes in float64 the pairs with |ρ₁| > 1 − NEAR_PAIR_TAU.
NEAR_PAIR_TAU = 1e-3

DualFn = Callable[[NTKArch, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]

NTK_KINDS: tuple[str, ...] = ("ntk", "nngp")


def _diagonal_chain(arch: NTKArch, a: Tensor) -> list[Tensor]:
    """[Σ^{(1)}(x, x), ..., Σ^{(depth)}(x, x)]: the variances entering each activation (shape of a)."""
    chain = [a]
    for _ in range(arch.depth - 1):
        a = arch.weight_std**2 * arch_dual(arch, a, a, a)[0] + arch.bias_std**2
        chain.append(a)
    return chain


def _pair_recursion(
    arch: NTKArch, a_chain: list[Tensor], b_chain: list[Tensor], c: Tensor, dual: DualFn = arch_dual
) -> tuple[Tensor, Tensor]:
    """(Θ, Σ) of the read-out from Σ¹(x, y) = c and the variance chains of x and y.

    Elementwise in broadcast (a, b, c): entry (i, j) depends on (a_l, b_l, c)[i, j] only.
    dual: ``arch_dual`` (differentiable) or ``ntk_fast.dual_values`` (the same values, no graph).
    """
    w2, b2 = arch.weight_std**2, arch.bias_std**2
    ntk = c
    for a, b in zip(a_chain, b_chain):
        nngp, dot = dual(arch, a, b, c)
        c = w2 * nngp + b2
        ntk = c + w2 * dot * ntk
    return ntk, c


def _first_layer(arch: NTKArch, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Σ¹: a (N,), b (M,), c (N, M) = σ_w² ⟨·,·⟩ / d + σ_b²."""
    scale = arch.weight_std**2 / x.shape[1]
    b2 = arch.bias_std**2
    return scale * (x * x).sum(1) + b2, scale * (y * y).sum(1) + b2, scale * (x @ y.T) + b2


def infinite_ntk(
    x: Tensor,
    y: Tensor,
    *,
    depth: int,
    activation: str,
    weight_std: float = 1.0,
    bias_std: float = 0.0,
    negative_slope: float = 0.01,
    method: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Infinite-width (NTK, NNGP) of a fully connected network: x (N, d), y (M, d) → two (N, M).

    ``depth`` hidden layers of ``activation`` followed by a linear read-out, in the NTK
    parametrisation of Jacot et al. with Neural Tangents' conventions: the kernel of
    ``stax.serial(*[stax.Dense(w, W_std, b_std, parameterization='ntk'), act] * depth,
    stax.Dense(1, W_std, b_std, parameterization='ntk'))`` (recursion: module doc; duals:
    ``kernels.ntk_duals``). weight_std σ_w > 0, bias_std σ_b ≥ 0 (0: no biases), negative_slope for leaky_relu.
    method: "closed_form" (relu, leaky_relu, erf), "quadrature" (any activation), "auto".
    Differentiable in x and y, with a finite subgradient at x = y (``kernels.ntk_duals``).
    """
    arch = ntk_arch(depth, activation, weight_std, bias_std, negative_slope, method)
    x, y, _ = check_inputs(x, y, None, centres_name="y")
    a, b, c = _first_layer(arch, x, y)
    return _pair_recursion(arch, _diagonal_chain(arch, a[:, None]), _diagonal_chain(arch, b[None, :]), c)


class NTKKernel(Kernel):
    """k(x, y) = Θ(x, y) (kind "ntk") or Σ(x, y) (kind "nngp") of :func:`infinite_ntk`.

    The x-gradient is exact through the recursion: Σ¹ enters k(x_i, y_j) only through
    a_i = σ_w²‖x_i‖²/d + σ_b² and c_ij = σ_w² x_i·y_j/d + σ_b², so

        ∇ₓk(x_i, y_j) = (2σ_w²/d) ∂k/∂a · x_i + (σ_w²/d) ∂k/∂c · y_j,

    with the two scalars per pair from the analytic forward recursion of ``kernels.ntk_fast``
    (closed forms) or one backward pass through the elementwise recursion (the rest).
    ``witness_grad`` sums them against the weights tile by tile, never forming the N × M × d
    tensor: ∇D(x_i) = (2σ_w²/d) x_i Σ_j a_j ∂k_ij/∂a + (σ_w²/d) Σ_j a_j ∂k_ij/∂c y_j. Finite at
    x = y (``kernels.ntk_duals``). Not translation invariant; positive semi-definite; no fused Triton spec.

    Closed-form activations (relu, leaky_relu, erf) take ``kernels.ntk_fast`` (∂k/∂a, ∂k/∂c by a
    forward recursion, no autograd graph) unless x or y requires grad or ``fast_path`` is False
    (an instance switch, for checks and benchmarks); the rest take autograd through the recursion.
    ``compile=True`` (relu, leaky_relu; every input of positive variance) runs each tile of the fast
    ``witness_grad`` as one ``torch.compile``d loop (``kernels.ntk_fused``): ~6× faster on a CPU thread
    once compiled (a one-off ~10–40 s per shape), the same values to float rounding.
    In float32, ρ = c/√(ab) of a pair within ~1e-2 of a centre rounds into the snap tolerance of 1,
    which zeroes the arccos term, and a particle flow stops ~1e-2 short of its target
    (docs/results/ntk_gan/gantk2.md). So the fast ``witness`` computes float32 inputs in float64, and
    the fast ``witness_grad`` recomputes only the near pairs (ρ₁ > 1 − ``NEAR_PAIR_TAU``) in float64.
    """

    name = "ntk"
    fast_path: bool = True

    def __init__(
        self,
        depth: int = 3,
        activation: str = "relu",
        weight_std: float = 1.0,
        bias_std: float = 0.0,
        negative_slope: float = 0.01,
        kind: str = "ntk",
        method: str = "auto",
        compile: bool = False,
    ):
        self.arch = ntk_arch(depth, activation, weight_std, bias_std, negative_slope, method)
        self.kind = check_choice("kind", kind, NTK_KINDS)
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be True or False, got {compile!r}")
        self.compile = compile

    def _params(self) -> dict[str, Any]:
        a = self.arch
        out: dict[str, Any] = {"depth": a.depth, "activation": a.activation, "weight_std": a.weight_std,
                               "bias_std": a.bias_std}
        if a.activation == "leaky_relu":
            out["negative_slope"] = a.negative_slope
        return {**out, "kind": self.kind, "method": a.method, **({"compile": True} if self.compile else {})}

    def _pick(self, ntk_nngp: tuple[Tensor, Tensor]) -> Tensor:
        return ntk_nngp[0] if self.kind == "ntk" else ntk_nngp[1]

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """k(x_i, y_j): (N, d), (M, d) → (N, M)."""
        x, y, _ = check_inputs(x, y, None, centres_name="y")
        a, b, c = _first_layer(self.arch, x, y)
        chains = _diagonal_chain(self.arch, a[:, None]), _diagonal_chain(self.arch, b[None, :])
        if self._use_fast(x, y):
            with torch.no_grad():
                return self._pick(_pair_recursion(self.arch, *chains, c, dual_values))
        return self._pick(_pair_recursion(self.arch, *chains, c))

    def _pair_coefficients(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(α, β), each (N, M), with ∇ₓk(x_i, y_j) = α_ij x_i + β_ij y_j.

        α = (2σ_w²/d) ∂k/∂a, β = (σ_w²/d) ∂k/∂c. Closed forms without a graph to keep: the
        forward recursion of ``kernels.ntk_fast``. Otherwise, without a graph, the chain rule is
        split: the variance chain a_l(a) of x is differentiated once per point (N,), the pair
        recursion once per pair, in chunks of pairs (bounded memory even for quadrature). When
        x or y requires grad, one differentiable backward pass keeps the result differentiable.
        """
        scale = self.arch.weight_std**2 / x.shape[1]
        if self._use_fast(x, y):
            with torch.no_grad():
                a, b, c = _first_layer(self.arch, x, y)
                a_chain, slopes = variance_chain(self.arch, a[:, None])
                b_chain = _diagonal_chain(self.arch, b[None, :])
                g_a, g_c = pair_partials(self.arch, self.kind == "ntk", a_chain, slopes, b_chain, c)
            return 2.0 * scale * g_a, scale * g_c
        if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
            a, b, c = _first_layer(self.arch, x, y)
            a_pairs, c = a[:, None].expand_as(c) * 1.0, c * 1.0
            chains = _diagonal_chain(self.arch, a_pairs), _diagonal_chain(self.arch, b[None, :])
            k = self._pick(_pair_recursion(self.arch, *chains, c))
            g_a, g_c = torch.autograd.grad(k.sum(), (a_pairs, c), create_graph=True)
            return 2.0 * scale * g_a, scale * g_c
        with torch.no_grad():
            a, b, c = _first_layer(self.arch, x, y)
            b_chain = [t.reshape(-1) for t in _diagonal_chain(self.arch, b)]
        with torch.enable_grad():
            a_leaf = a.detach().requires_grad_(True)
            a_chain = _diagonal_chain(self.arch, a_leaf)
            # d a_l / d a_1 per point (the chain is elementwise, so the gradient of the sum is it).
            slopes = [torch.ones_like(a)] + [
                torch.autograd.grad(t.sum(), a_leaf, retain_graph=l < len(a_chain) - 1)[0]
                for l, t in enumerate(a_chain[1:], start=1)
            ]
        a_chain = [t.detach() for t in a_chain]
        n, m = c.shape
        g_a, g_c = c.new_empty(n * m), c.new_empty(n * m)
        rows = torch.arange(n, device=c.device).repeat_interleave(m)
        cols = torch.arange(m, device=c.device).repeat(n)
        flat_c = c.reshape(-1)
        step = max(1, BUDGETS.ntk_grad // self._cost_per_pair())
        for p in range(0, n * m, step):
            i, j = rows[p : p + step], cols[p : p + step]
            with torch.enable_grad():
                a_leaves = [t[i].requires_grad_(True) for t in a_chain]
                c_leaf = flat_c[p : p + step].clone().requires_grad_(True)
                k = self._pick(_pair_recursion(self.arch, a_leaves, [t[j] for t in b_chain], c_leaf))
                grads = torch.autograd.grad(k.sum(), [*a_leaves, c_leaf])
            g_a[p : p + step] = sum(g * s[i] for g, s in zip(grads[:-1], slopes))
            g_c[p : p + step] = grads[-1]
        return 2.0 * scale * g_a.reshape(n, m), scale * g_c.reshape(n, m)

    def _use_fast(self, x: Tensor, y: Tensor, weights: Tensor | None = None) -> bool:
        """The autograd-free path applies: closed form, switch on, no graph through x, y (or weights) wanted."""
        wants_graph = torch.is_grad_enabled() and (
            x.requires_grad or y.requires_grad or (isinstance(weights, Tensor) and weights.requires_grad))
        return self.fast_path and fast_path_available(self.arch) and not wants_graph

    def _cost_per_pair(self) -> int:
        """Rough number of scalars the pair recursion's autograd graph holds per pair."""
        per_layer = 32
        if not self.arch.closed_form:
            per_layer *= QUADRATURE_NODES
        return per_layer * self.arch.depth

    def grad_x(self, x: Tensor, y: Tensor) -> Tensor:
        """∂k(x_i, y_j)/∂x_i = α_ij x_i + β_ij y_j: (N, d), (M, d) → (N, M, d)."""
        x, y, _ = check_inputs(x, y, None, centres_name="y")
        alpha, beta = self._pair_coefficients(x, y)
        return alpha[..., None] * x[:, None, :] + beta[..., None] * y[None, :, :]

    def witness(
        self, x: Tensor, centres: Tensor, weights: Tensor | None = None, *, chunk_size: int | None = None
    ) -> Tensor:
        """D(x_i) = Σ_j a_j k(x_i, y_j): (N, d), (M, d), (M,) → (N,); a defaults to 1/M.

        Without a graph to keep (closed forms): variance chains once, cache-sized tiles, no autograd
        Functions (``ntk_fast.dual_values``; the same values). Otherwise ``Kernel.witness``.
        """
        if not (isinstance(x, Tensor) and isinstance(centres, Tensor) and self._use_fast(x, centres, weights)):
            return super().witness(x, centres, weights, chunk_size=chunk_size)
        x, centres, weights = self._check_witness_args(x, centres, weights, chunk_size)
        if x.dtype != torch.float64:  # float32 ρ loses the ReLU cusp (class docstring)
            return self.witness(x.double(), centres.double(), weights.double(), chunk_size=chunk_size).to(x.dtype)
        arch, (n, d), m = self.arch, x.shape, centres.shape[0]
        if n == 0 or m == 0:
            return x.new_zeros(n)
        scale, b2 = arch.weight_std**2 / d, arch.bias_std**2
        with torch.no_grad():
            a_chain = _diagonal_chain(arch, (scale * (x * x).sum(1) + b2)[:, None])
            b_chain = _diagonal_chain(arch, (scale * (centres * centres).sum(1) + b2)[None, :])

            def tile(qi: slice, cj: slice) -> Tensor:
                c = scale * (x[qi] @ centres[cj].T) + b2
                k = _pair_recursion(arch, [t[qi] for t in a_chain], [t[:, cj] for t in b_chain], c, dual_values)
                return self._pick(k) @ weights[cj]

            return blockwise(n, m, *tiles(n, m, chunk_size, FAST_ENTRIES_PER_PAIR), tile)

    def witness_grad(
        self,
        x: Tensor,
        centres: Tensor,
        weights: Tensor | None = None,
        *,
        backend: str = "auto",
        precision: str = "ieee",
        chunk_size: int | None = None,
    ) -> Tensor:
        """∇D(x_i) = Σ_j a_j ∇ₓk(x_i, y_j) without the N × M × d tensor: (N, d), (M, d), (M,) → (N, d).

        backend "auto" / "torch" (no fused Triton kernel exists for this kernel; "triton" is a
        ValueError); precision is accepted for interface compatibility (no TF32 here).
        """
        x, centres, weights = self._check_grad_args(x, centres, weights, backend, precision, chunk_size)
        if backend == "triton":
            raise ValueError(f"backend='triton' is not available for kernel {self.name!r}: it has no fused spec")
        n, m, d = x.shape[0], centres.shape[0], x.shape[1]
        if n == 0 or m == 0:
            return x.new_zeros(n, d)
        if self._use_fast(x, centres, weights):
            return self._fast_witness_grad(x, centres, weights, chunk_size)
        bn, bm = tiles(n, m, chunk_size)

        def tile(qi: slice, cj: slice) -> Tensor:
            alpha, beta = self._pair_coefficients(x[qi], centres[cj])
            w = weights[cj]
            return x[qi] * (alpha @ w)[:, None] + (beta * w) @ centres[cj]

        return blockwise(n, m, bn, bm, tile)

    @torch.no_grad()
    def _fast_witness_grad(self, x: Tensor, y: Tensor, w: Tensor, chunk_size: int | None) -> Tensor:
        """witness_grad by ``kernels.ntk_fast``: variance chains once, then per tile c = Σ¹ (bn, bm),
        (∂k/∂a, ∂k/∂c) and ∇D = (2σ_w²/d) x ⊙ (∂k/∂a) w + (σ_w²/d) (∂k/∂c)(w ⊙ y).

        Below float64, the pairs whose first-layer correlation ρ₁ = c/√(ab) has |ρ₁| > 1 − ``NEAR_PAIR_TAU``
        (within ~0.2 of each other at |x| ≈ 5, σ_b = 1; a few per particle in a converged flow) are
        recomputed in float64, the rest stays in the input dtype: float32 ρ there has too few bits
        (class docstring); elsewhere its relative error in 1 − ρ is below ~1e-3. With ``compile`` (relu-like,
        every a₁, b₁ > 0) each tile is the fused loop of ``kernels.ntk_fused`` (larger tiles: it keeps
        no per-layer temporaries), the near pairs added the same way.
        """
        arch, (n, d), m = self.arch, x.shape, y.shape[0]
        scale, b2 = arch.weight_std**2 / d, arch.bias_std**2
        a1, b1 = scale * (x * x).sum(1) + b2, scale * (y * y).sum(1) + b2
        a_chain, slopes = variance_chain(arch, a1[:, None])
        b_chain = _diagonal_chain(arch, b1[None, :])
        wy = w[:, None] * y
        ntk = self.kind == "ntk"
        mixed = x.dtype != torch.float64 and self.arch.activation != "erf"  # erf: smooth at ρ = ±1
        fused = (self.compile and self.arch.activation != "erf" and bool(a1.min() > 0) and bool(b1.min() > 0))
        if fused and not fused_available(x):
            self.compile = fused = False
        if mixed:  # the float64 side of the near pairs: chains per point, once
            x64, y64, w64 = x.double(), y.double(), w.double()
            a64 = scale * (x64 * x64).sum(1) + b2
            a64_chain, slopes64 = variance_chain(arch, a64)
            b64_chain = _diagonal_chain(arch, scale * (y64 * y64).sum(1) + b2)
            out64 = x64.new_zeros(n, d)

        def add_near(near: Tensor, qi: slice, cj: slice) -> None:
            """The near pairs' terms of the tile (qi, cj), in float64, into out64."""
            i, j = near.nonzero(as_tuple=True)
            i, j = i + qi.start, j + cj.start
            c64 = scale * (x64[i] * y64[j]).sum(1) + b2
            p_a, p_c = pair_partials(arch, ntk, [t[i] for t in a64_chain], [t[i] for t in slopes64],
                                     [t[j] for t in b64_chain], c64)
            contrib = x64[i] * ((2.0 * scale) * p_a * w64[j])[:, None] + (scale * p_c * w64[j])[:, None] * y64[j]
            out64.index_add_(0, i, contrib)

        def eager_tile(qi: slice, cj: slice) -> Tensor:
            c = scale * (x[qi] @ y[cj].T) + b2
            near = None
            if mixed:
                near = (c * a1[qi, None].rsqrt() * b1[None, cj].rsqrt()).abs_() > 1.0 - NEAR_PAIR_TAU  # ρ = ±1 cusps
                if not bool(near.any()):
                    near = None
            g_a, g_c = pair_partials(arch, ntk, [t[qi] for t in a_chain], [t[qi] for t in slopes],
                                     [t[:, cj] for t in b_chain], c)
            if near is not None:
                g_a.masked_fill_(near, 0.0)
                g_c.masked_fill_(near, 0.0)
                add_near(near, qi, cj)
            return x[qi] * ((2.0 * scale) * (g_a @ w[cj]))[:, None] + scale * (g_c @ wy[cj])

        consts = (scale, b2, arch.weight_std**2, snap_tolerance(x.dtype), 1.0,
                  0.0 if arch.activation == "relu" else arch.negative_slope, ntk, NEAR_PAIR_TAU if mixed else -1.0)

        def fused_tile(qi: slice, cj: slice) -> Tensor:
            g, near = compiled_tile_grad()(x[qi], y[cj], w[cj], wy[cj], [t[qi] for t in a_chain],
                                           [t[qi] for t in slopes], [t[:, cj] for t in b_chain], *consts)
            if mixed and bool(near.any()):
                add_near(near, qi, cj)
            return g

        tile = fused_tile if fused else eager_tile
        out = blockwise(n, m, *tiles(n, m, chunk_size, FAST_ENTRIES_PER_PAIR // (8 if fused else 1)), tile)
        return (out.double() + out64).to(x.dtype) if mixed else out

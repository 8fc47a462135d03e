"""The kernel interface: values, x-gradients, and the tiled witness and witness gradient.

An IPM-GAN with kernel k has the optimal discriminator (the witness, docs/theory.md §5)

    D̂(x_i) = Σ_j a_j k(x_i, y_j),      ∇D̂(x_i) = Σ_j a_j ∇ₓk(x_i, y_j),

with centres y_j (data and generated points) and signed weights a_j (+1/M_d on data, −1/M_g on
generated points). A radial kernel k(x, y) = φ(s), s = ‖x − y‖², has ∇ₓk = 2 φ'(s)(x − y), so

    ∇D̂(x_i) = 2 Σ_j c_ij (x_i − y_j) = 2 (x_i Σ_j c_ij − Σ_j c_ij y_j),   c_ij = a_j φ'(s_ij).

Shapes: queries x (N, d), centres y (M, d), weights a (M,); ``k(x, y)`` is (N, M), ``grad_x``
(N, M, d), ``witness`` (N,), ``witness_grad`` (N, d). The torch path holds one tile of the N × M
matrix at a time (``kernels.tiling``: exact differences for d ≤ 4, the expansion of S with the
coincidence threshold above); backend "triton" runs the fused kernel (``kernels.fused``), with the
same conventions. A data-dependent parameter (median bandwidth, default dimension) is fixed by
``resolve(x, centres)`` from the pooled points [centres; x].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from scoregan._checks import check_choice, check_int
from scoregan.objectives.kernels.fused import fused_available, fused_witness_grad
from scoregan.objectives.kernels.profiles import (
    FusedSpec,
    cancellation_tol,
    spec_cpd_order,
    spec_profile,
    spec_profile_grad,
)
from scoregan.objectives.kernels.tiling import (
    BACKENDS,
    EXACT_MAX_D,
    PRECISIONS,
    blockwise,
    centred,
    check_inputs,
    matmul_precision,
    sq_norms,
    sqdist_tile,
    tiles,
)

__all__ = ["MEDIAN_POINTS", "Kernel", "RadialKernel", "median_bandwidth", "resolve_kernel"]

#: Points pooled for the median heuristic are strided down to at most this many.
MEDIAN_POINTS = 1024


def _check_range(kernel: RadialKernel, spec: FusedSpec, dtype: torch.dtype) -> None:
    """ValueError when φ(0) or φ'(0) overflows ``dtype`` (steep softened kernels in float32)."""
    zero = torch.zeros(1, dtype=torch.float64)
    big = max(abs(spec_profile(spec, zero).item()), abs(spec_profile_grad(spec, zero).item()))
    if not big <= torch.finfo(dtype).max:
        raise ValueError(
            f"{kernel!r} with spec {spec} overflows {dtype} at x = y (|φ(0)| or |φ'(0)| = {big:.3g}); "
            "use float64 inputs, a larger eps (or c), or a smaller dim"
        )


class Kernel(ABC):
    """A kernel k: R^d × R^d → R with analytic gradient and chunked witness (shapes: module doc).

    Subclasses implement ``__call__`` and ``grad_x``; the generic ``witness`` and
    ``witness_grad`` here tile them (a tile of ``grad_x`` holds N_b × M_b × d entries).
    :class:`RadialKernel` overrides both with the expansion of the squared distance.
    """

    name: str = "kernel"

    @abstractmethod
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Pairwise values k(x_i, y_j): (N, d), (M, d) → (N, M)."""

    @abstractmethod
    def grad_x(self, x: Tensor, y: Tensor) -> Tensor:
        """∂k(x_i, y_j)/∂x_i: (N, d), (M, d) → (N, M, d); finite at x_i == y_j."""

    def resolve(self, x: Tensor, centres: Tensor) -> Kernel:
        """The concrete kernel (every parameter a number) for queries ``x`` (N, d) and ``centres`` (M, d):
        a data-dependent parameter (a median bandwidth) is fixed from the pooled points [centres; x].

        Callers whose estimate combines several kernel evaluations (an MMD², a witness queried at other
        points than its samples) resolve once on the two samples and use the result for every term, so
        that all terms share one kernel."""
        return self

    def fused_spec(self, x: Tensor, centres: Tensor) -> FusedSpec | None:
        """The fused Triton description of this kernel for these inputs, or None if it has none."""
        return None

    def witness(
        self, x: Tensor, centres: Tensor, weights: Tensor | None = None, *, chunk_size: int | None = None
    ) -> Tensor:
        """D(x_i) = Σ_j a_j k(x_i, y_j): (N, d), (M, d), (M,) → (N,); a defaults to 1/M."""
        x, centres, weights = self._check_witness_args(x, centres, weights, chunk_size)
        n, m = x.shape[0], centres.shape[0]
        if n == 0 or m == 0:
            return x.new_zeros(n)
        bn, bm = tiles(n, m, chunk_size)
        return blockwise(n, m, bn, bm, lambda qi, cj: self(x[qi], centres[cj]) @ weights[cj])

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
        """∇D(x_i) = Σ_j a_j ∇ₓk(x_i, y_j): (N, d), (M, d), (M,) → (N, d); a defaults to 1/M.

        Only backend "torch" ("auto" selects it) exists for a kernel without a fused spec.
        """
        x, centres, weights = self._check_grad_args(x, centres, weights, backend, precision, chunk_size)
        if backend == "triton":
            raise ValueError(f"backend='triton' is not available for kernel {self.name!r}: it has no fused spec")
        n, m, d = x.shape[0], centres.shape[0], x.shape[1]
        if n == 0 or m == 0:
            return x.new_zeros(n, d)
        bn, bm = tiles(n, m, chunk_size, per_entry=d)
        with matmul_precision(x.device, precision):
            return blockwise(
                n, m, bn, bm, lambda qi, cj: torch.einsum("nmd,m->nd", self.grad_x(x[qi], centres[cj]), weights[cj])
            )

    @staticmethod
    def _check_witness_args(x, centres, weights, chunk_size):
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, minimum=1)
        return check_inputs(x, centres, weights)

    @staticmethod
    def _check_grad_args(x, centres, weights, backend, precision, chunk_size):
        check_choice("backend", backend, BACKENDS)
        check_choice("precision", precision, PRECISIONS)
        return Kernel._check_witness_args(x, centres, weights, chunk_size)

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


class RadialKernel(Kernel):
    """k(x, y) = φ(‖x − y‖²), with φ and φ' given by a :class:`FusedSpec` (table: ``kernels.profiles``).

    A kernel with a data-dependent parameter (median bandwidth, default dimension) is
    *unresolved*: ``resolve(x, centres)`` returns the concrete kernel for those inputs, and every
    pairwise method resolves on its own inputs (gradients do not flow through the resolved
    numbers). ``profile``/``profile_grad``/``spec`` need a resolved kernel.
    """

    @abstractmethod
    def _static_spec(self) -> FusedSpec | None:
        """The spec when no parameter depends on the data, else None."""

    @property
    def spec(self) -> FusedSpec:
        """The fused spec of a resolved kernel (ValueError if a parameter is data-dependent)."""
        spec = self._static_spec()
        if spec is None:
            raise ValueError(
                f"{self!r} has a data-dependent parameter; call .resolve(x, centres) first "
                "(__call__, grad_x, witness and witness_grad resolve on their own inputs)"
            )
        return spec

    def fused_spec(self, x: Tensor, centres: Tensor) -> FusedSpec:
        """The resolved spec for these inputs (kinds and params: ``kernels.profiles``).

        Raises ValueError if φ(0) or φ'(0) is not representable in x's dtype.
        """
        spec = self.resolve(x, centres).spec
        _check_range(self, spec, x.dtype)
        return spec

    def cpd_order(self, x: Tensor | None = None, centres: Tensor | None = None) -> int:
        """Order q of conditional positive definiteness (0: positive definite); see ``kernels.profiles``."""
        k = self if x is None else self.resolve(x, x if centres is None else centres)
        return spec_cpd_order(k.spec)

    def profile(self, sq: Tensor) -> Tensor:
        """φ(s), elementwise on squared distances s ≥ 0 (any shape)."""
        return spec_profile(self.spec, sq)

    def profile_grad(self, sq: Tensor) -> Tensor:
        """φ'(s) = dφ/ds, elementwise, finite at s = 0 (φ'(0) := 0 where φ' is singular)."""
        return spec_profile_grad(self.spec, sq)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """k(x_i, y_j) = φ(‖x_i − y_j‖²): (N, d), (M, d) → (N, M)."""
        x, y, _ = check_inputs(x, y, None, centres_name="y")
        spec = self.fused_spec(x, y)
        xs, ys = centred(x, y)
        if x.shape[1] <= EXACT_MAX_D:
            t = xs[:, None, :] - ys[None, :, :]
            return spec_profile(spec, (t * t).sum(dim=-1))
        tol = cancellation_tol(x.dtype, x.shape[1])
        with matmul_precision(x.device, "ieee"):
            s = sqdist_tile(xs, sq_norms(xs), ys, sq_norms(ys), tol)
        return spec_profile(spec, s)

    def grad_x(self, x: Tensor, y: Tensor) -> Tensor:
        """2 φ'(s_ij)(x_i − y_j) from exact differences: (N, d), (M, d) → (N, M, d)."""
        x, y, _ = check_inputs(x, y, None, centres_name="y")
        spec = self.fused_spec(x, y)
        diff = x[:, None, :] - y[None, :, :]
        s = (diff * diff).sum(dim=-1)
        return 2.0 * spec_profile_grad(spec, s)[..., None] * diff

    def witness(
        self, x: Tensor, centres: Tensor, weights: Tensor | None = None, *, chunk_size: int | None = None
    ) -> Tensor:
        """D(x_i) = Σ_j a_j φ(s_ij), tile by tile: (N, d), (M, d), (M,) → (N,)."""
        x, centres, weights = self._check_witness_args(x, centres, weights, chunk_size)
        if x.shape[0] == 0 or centres.shape[0] == 0:
            return x.new_zeros(x.shape[0])
        spec = self.fused_spec(x, centres)
        return self._tiled(x, centres, chunk_size, "ieee",
                           lambda s, xb, yb, t, cj: spec_profile(spec, s) @ weights[cj])

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
        """∇D(x_i) = 2 Σ_j a_j φ'(s_ij)(x_i − y_j): (N, d), (M, d), (M,) → (N, d).

        backend: "torch" (tiled, differentiable), "triton" (the fused kernel of
        ``scoregan.objectives.kernels.fused``), "auto" (triton for CUDA inputs when it imports and
        no input requires grad, else torch). precision: "ieee" (full fp32 matmuls) or "tf32"
        (TF32 tensor cores for CUDA float32 inputs, with a coarser cancellation threshold).
        """
        x, centres, weights = self._check_grad_args(x, centres, weights, backend, precision, chunk_size)
        n, d = x.shape
        if n == 0 or centres.shape[0] == 0:
            return x.new_zeros(n, d)
        spec = self.fused_spec(x, centres)
        if backend == "auto":
            needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, centres, weights))
            backend = "triton" if x.is_cuda and not needs_grad and fused_available() else "torch"
        if backend == "triton":
            xs, cs = centred(x, centres)
            return fused_witness_grad(xs, cs, weights, spec, precision)

        def tile(s: Tensor, xb: Tensor, yb: Tensor, t: Tensor | None, cj: slice) -> Tensor:
            c = spec_profile_grad(spec, s) * weights[cj]
            if t is not None:  # exact differences (d ≤ EXACT_MAX_D)
                return 2.0 * torch.einsum("nm,nmd->nd", c, t)
            return 2.0 * (xb * c.sum(dim=1, keepdim=True) - c @ yb)

        return self._tiled(x, centres, chunk_size, precision, tile)

    @staticmethod
    def _tiled(
        x: Tensor, centres: Tensor, chunk_size: int | None, precision: str, tile: Callable[..., Tensor]
    ) -> Tensor:
        """Σ_tiles ``tile(S, x_b, y_b, T, centre slice)`` over the shifted inputs, per query block; T the
        exact differences (n_b, m_b, d) for d ≤ EXACT_MAX_D, else None (S from the expansion)."""
        xs, cs = centred(x, centres)
        d = x.shape[1]
        if d <= EXACT_MAX_D:
            bn, bm = tiles(x.shape[0], centres.shape[0], chunk_size, per_entry=d)

            def exact(qi: slice, cj: slice) -> Tensor:
                t = xs[qi, None, :] - cs[None, cj, :]
                return tile((t * t).sum(dim=-1), xs[qi], cs[cj], t, cj)

            return blockwise(x.shape[0], centres.shape[0], bn, bm, exact)
        nx, nc = sq_norms(xs), sq_norms(cs)
        tol = cancellation_tol(x.dtype, d, precision if x.is_cuda else "ieee")  # no TF32 off CUDA
        bn, bm = tiles(x.shape[0], centres.shape[0], chunk_size)

        def block(qi: slice, cj: slice) -> Tensor:
            s = sqdist_tile(xs[qi], nx[qi], cs[cj], nc[cj], tol)
            return tile(s, xs[qi], cs[cj], None, cj)

        with matmul_precision(x.device, precision):
            return blockwise(x.shape[0], centres.shape[0], bn, bm, block)


def resolve_kernel(kernel: Any, x: Tensor, centres: Tensor) -> Any:
    """``kernel.resolve(x, centres)`` for a kernel that has it (every :class:`Kernel`), else the kernel
    itself (a duck-typed object with ``witness`` / ``witness_grad`` only)."""
    resolve = getattr(kernel, "resolve", None)
    return resolve(x, centres) if callable(resolve) else kernel


def median_bandwidth(x: Tensor, centres: Tensor, max_points: int = MEDIAN_POINTS) -> float:
    """Median pairwise distance of the pooled points [centres; x] (median heuristic).

    At most ``max_points`` points enter, taken at evenly spaced indices of the pooled set (so the
    result is deterministic); returns 1.0 if fewer than two points or all of them coincide.
    """
    pooled = torch.cat([centres.detach(), x.detach()])
    n = pooled.shape[0]
    if n > max_points:
        idx = torch.linspace(0, n - 1, max_points, device=pooled.device).round().long()
        pooled = pooled[idx]
    if pooled.shape[0] < 2:
        return 1.0
    h = torch.median(torch.pdist(pooled)).item()
    return h if h > 0 and math.isfinite(h) else 1.0

"""IPM kernels: values, analytic gradients, and the chunked witness and witness gradient.

An IPM-GAN with kernel κ has the optimal discriminator (the *witness*)

    D(x) = (κ * p_d)(x) − (κ * p_g)(x),   estimated as   D̂(x_i) = Σ_j a_j k(x_i, y_j),

with centres y_j (data and generated points) and signed weights a_j (+1/M_d on data, −1/M_g on
generated points), and the generator moves its samples along ∇D̂ (DESIGN.md §1). Every kernel here
is radial, k(x, y) = φ(s) with s = ‖x − y‖², so

    ∇ₓ k(x, y) = 2 φ'(s) (x − y),
    ∇D̂(x_i)   = 2 Σ_j c_ij (x_i − y_j) = 2 (x_i Σ_j c_ij − Σ_j c_ij y_j),   c_ij = a_j φ'(s_ij).

Shapes: queries x (N, d), centres y (M, d), weights a (M,); ``k(x, y)`` is (N, M), ``grad_x`` is
(N, M, d), ``witness`` is (N,), ``witness_grad`` is (N, d).

Precision. ``precision="tf32"`` lets CUDA float32 matmuls use TF32 tensor cores ("ieee" forbids
it) by setting torch's global matmul flag for the duration of the call and restoring it after
(not thread-safe across concurrent calls); on the CPU both are full precision.

Chunking. ``witness`` and ``witness_grad`` (backend "torch") never hold more than one tile of the
N × M matrix: tiles of ``chunk_size`` centres (default: as many as fit in 2^22 elements) times as
many queries as fit in the same budget. For d > ``EXACT_MAX_D`` (= 4), per tile,
S = ‖x‖² + ‖y‖² − 2 x yᵀ by one ``addmm``, clamped at 0; then C = a · φ'(S) and the tile adds
x · rowsum(C) − C @ Y to the result. For d ≤ ``EXACT_MAX_D`` the tile holds the exact differences
t_ij = x_i − y_j instead (d numbers a pair, as cheap as the expansion at such d): S = ‖t‖² and the
tile adds 2 Σ_j C_ij t_ij, with no cancellation anywhere (the fused kernel's "direct" path).

Cancellation convention (shared with the fused Triton kernel). The expansion of S loses
relative accuracy when x ≈ y. Both operands are first shifted by the mean of the centres (exact,
since the kernels are translation invariant), and on the expansion paths (d > 4) every pair with

    S ≤ tol · (‖x‖² + ‖y‖²),   tol = cancellation_tol(dtype, d, precision)

(norms after the shift) is treated as coincident: S := 0; with exact differences (d ≤ 4) only
S = 0 is. Kernels whose φ' is finite at 0 then use φ'(0); kernels whose φ' is singular at 0
(laplace, energy, polyharmonic with ε = 0 and p ∈ {1, 2}) define φ'(0) := 0, i.e. a coincident
pair contributes nothing — the minimal-norm subgradient at x = y (for the energy kernel −‖x − y‖
the subdifferential at 0 is the unit ball; for r² log r the gradient tends to 0).
``profile_grad(0)`` and ``grad_x`` at x == y follow the same convention, so they are finite
everywhere. In float32 the threshold is a distance of about 1.2e-3 ‖x‖ at d = 5 and 3e-3 ‖x‖ at
d = 64 (norm after the shift): a singular kernel then drops distinct pairs that close (a laplace
kernel of bandwidth h loses about a_j / h per pair); use float64 if they must interact exactly.
``precision="tf32"`` raises the rounding of S (and the threshold) to TF32's: fine for smooth
kernels whose bandwidth is well above ≈ 0.05 ‖x‖, too coarse for steep or singular ones.

Fused specs (the contract with ``scoregan.sampling.fused_witness``). ``fused_spec(x, centres)``
returns ``FusedSpec(kind, params)`` with every data-dependent choice (median bandwidth, default
dimension) already resolved to numbers; ``x`` and ``centres`` handed to the fused kernel are
already shifted by the centres' mean. φ and φ' by kind (s ≥ 0 is the squared distance):

    "gaussian"      (h,)                   φ = exp(−s / (2h²))           φ' = −φ / (2h²)
    "gaussian_mix"  (h_1..h_L, w_1..w_L)   φ = Σ_l w_l exp(−s / (2h_l²))  φ' = −Σ_l w_l exp(−s/(2h_l²)) / (2h_l²)
                    (L = len(params) // 2)
    "imq"           (c, beta)              φ = (c² + s)^beta             φ' = beta (c² + s)^(beta − 1)
    "laplace"       (h,)                   φ = exp(−√s / h)              φ' = −exp(−√s / h) / (2h√s);   φ'(0) := 0
    "energy"        ()                     φ = −√s                       φ' = −1 / (2√s);                φ'(0) := 0
    "poly_power"    (p, sign, eps2)        φ = sign (s + eps2)^(p/2)     φ' = sign (p/2) (s + eps2)^(p/2 − 1);
                                           φ'(0) := 0 when eps2 == 0 and p < 2
    "poly_log"      (p, sign, eps2)        u = s + eps2,  φ = sign ½ u^(p/2) log u   (φ = 0 at u = 0)
                                           φ' = sign ½ u^(p/2 − 1) ((p/2) log u + 1);  φ'(0) := 0 when u == 0

``spec_profile(spec, s)`` and ``spec_profile_grad(spec, s)`` are the float reference of this table
(every kernel's ``profile`` and ``profile_grad`` is computed by them, so the table is the single
source of truth).

Positive definiteness (why ascent of D̂ moves p_g toward p_d). With Δ = p_d − p_g, the particle
flow ẋ = ∇D(x) decreases E = ½ ∫∫ k(x, y) dΔ(x) dΔ(y) at rate ∫ p_g ‖∇D‖², and E is a squared
distance when k is positive definite, or conditionally positive definite (CPD) of order q and
Δ has vanishing moments of degree < q. By Micchelli's theorem (Micchelli 1986, Constr. Approx.
2:11–22; Wendland 2005, *Scattered Data Approximation*, ch. 8), k(x, y) = ψ(‖x − y‖²) with ψ
continuous on [0, ∞) is CPD of order q in every dimension when (−1)^q ψ^(q) is completely monotone
(and not constant) on (0, ∞); the shift s ↦ s + ε² keeps that property.
That fixes every sign below:

* gaussian, imq (beta < 0), laplace: positive definite (q = 0).
* energy −√s: CPD of order 1 (ψ' = −1/(2√s), −ψ' completely monotone).
* polyharmonic, p = 2m − n: p < 0: (s + ε²)^(p/2), completely monotone, q = 0. p > 0 odd:
  (−1)^⌈p/2⌉ (s + ε²)^(p/2), q = ⌈p/2⌉ (the ⌈p/2⌉-th derivative has the sign (−1)^⌈p/2⌉ times a
  completely monotone function). p ≥ 0 even: (−1)^(p/2+1) ½ (s + ε²)^(p/2) log(s + ε²),
  q = p/2 + 1 (the (p/2+1)-th derivative of u^(p/2) log u is (p/2)! / u). With ε = 0 and n = d
  these are, up to a positive factor, the fundamental solutions of (−Δ)^m in R^n (generalised
  Fourier transform ∝ ‖ω‖^(−2m) > 0), the Green's functions of the order-m gradient penalty of
  Poly-WGAN; m = 1 is the Coulomb kernel. For n ≫ 2m, (s + ε²)^(p/2) under/overflows in float32
  (e.g. d = 784, m = 1: exponent −391): pass a smaller ``dim`` there.

For q ≥ 2 (polyharmonic with p ≥ 2) E is a distance only between distributions with equal
moments of degree < q: the flow still decreases E, but between distributions with different means
E can be negative and the flow need not attract (two Dirac masses under r³ repel). ``cpd_order``
reports q.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scoregan._checks import check_choice, check_int, check_matrix, check_positive, closest

__all__ = [
    "KERNELS",
    "BACKENDS",
    "PRECISIONS",
    "FusedSpec",
    "Kernel",
    "RadialKernel",
    "GaussianKernel",
    "IMQKernel",
    "LaplaceKernel",
    "EnergyKernel",
    "PolyharmonicKernel",
    "CoulombKernel",
    "kernel",
    "spec_profile",
    "spec_profile_grad",
    "spec_cpd_order",
    "cancellation_tol",
    "EXACT_MAX_D",
    "median_bandwidth",
    "resolve_kernel",
]

BACKENDS: tuple[str, ...] = ("auto", "torch", "triton")
PRECISIONS: tuple[str, ...] = ("ieee", "tf32")

# Largest number of scalar entries of a tile (N-chunk × M-chunk) that the torch path materialises.
_CHUNK_ELEMENTS = 2**22
# Points pooled for the median heuristic are strided down to at most this many.
_MEDIAN_POINTS = 1024


# --------------------------------------------------------------------------------------------
# Fused specs: the numeric description of a resolved radial kernel, and its reference profile.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FusedSpec:
    """A resolved radial kernel as the fused Triton kernel consumes it (table in module doc)."""

    kind: str
    params: tuple[float, ...]


def _safe(mask: Tensor, s: Tensor, fill: float = 1.0) -> Tensor:
    """``s`` where ``mask`` else ``fill``: keeps singular formulas (and their autograd) finite."""
    return torch.where(mask, s, torch.full_like(s, fill))


def _gaussian_terms(params: tuple[float, ...], s: Tensor) -> Iterator[tuple[float, float, Tensor]]:
    """(weight, 1/(2h²), exp(−s/(2h²))) for each scale of a "gaussian" or "gaussian_mix" spec."""
    if len(params) == 1:
        scales, weights = params, (1.0,)
    else:
        half = len(params) // 2
        scales, weights = params[:half], params[half:]
    for h, w in zip(scales, weights):
        rate = 1.0 / (2.0 * h * h)
        yield w, rate, torch.exp(-rate * s)


def _phi_gaussian(params, s):
    return sum(w * e for w, _, e in _gaussian_terms(params, s))


def _dphi_gaussian(params, s):
    return sum(-w * rate * e for w, rate, e in _gaussian_terms(params, s))


def _phi_imq(params, s):
    c, beta = params
    return (c * c + s) ** beta


def _dphi_imq(params, s):
    c, beta = params
    return beta * (c * c + s) ** (beta - 1.0)


def _sqrt0(s: Tensor) -> Tensor:
    """√s with a finite autograd gradient (0) at s = 0."""
    pos = s > 0
    return torch.where(pos, torch.sqrt(_safe(pos, s)), torch.zeros_like(s))


def _phi_laplace(params, s):
    (h,) = params
    return torch.exp(-_sqrt0(s) / h)


def _dphi_laplace(params, s):
    (h,) = params
    pos = s > 0
    r = torch.sqrt(_safe(pos, s))
    return torch.where(pos, -torch.exp(-r / h) / (2.0 * h * r), torch.zeros_like(s))


def _phi_energy(params, s):
    return -_sqrt0(s)


def _dphi_energy(params, s):
    pos = s > 0
    return torch.where(pos, -0.5 / torch.sqrt(_safe(pos, s)), torch.zeros_like(s))


def _phi_poly_power(params, s):
    p, sign, eps2 = params
    return sign * (s + eps2) ** (p / 2.0)


def _dphi_poly_power(params, s):
    p, sign, eps2 = params
    u = s + eps2
    if eps2 > 0 or p >= 2:
        return sign * (p / 2.0) * u ** (p / 2.0 - 1.0)
    pos = u > 0
    return torch.where(pos, sign * (p / 2.0) * _safe(pos, u) ** (p / 2.0 - 1.0), torch.zeros_like(s))


def _phi_poly_log(params, s):
    p, sign, eps2 = params
    u = s + eps2
    pos = u > 0
    us = _safe(pos, u)
    return torch.where(pos, sign * 0.5 * us ** (p / 2.0) * torch.log(us), torch.zeros_like(s))


def _dphi_poly_log(params, s):
    p, sign, eps2 = params
    u = s + eps2
    pos = u > 0
    us = _safe(pos, u)
    val = sign * 0.5 * us ** (p / 2.0 - 1.0) * ((p / 2.0) * torch.log(us) + 1.0)
    return torch.where(pos, val, torch.zeros_like(s))


_Profile = Callable[[tuple[float, ...], Tensor], Tensor]
_SPEC_PROFILES: dict[str, tuple[_Profile, _Profile]] = {
    "gaussian": (_phi_gaussian, _dphi_gaussian),
    "gaussian_mix": (_phi_gaussian, _dphi_gaussian),
    "imq": (_phi_imq, _dphi_imq),
    "laplace": (_phi_laplace, _dphi_laplace),
    "energy": (_phi_energy, _dphi_energy),
    "poly_power": (_phi_poly_power, _dphi_poly_power),
    "poly_log": (_phi_poly_log, _dphi_poly_log),
}


def spec_profile(spec: FusedSpec, sq: Tensor) -> Tensor:
    """φ(s) of a fused spec, elementwise on squared distances ``sq`` ≥ 0 (any shape)."""
    return _SPEC_PROFILES[spec.kind][0](spec.params, sq)


def spec_profile_grad(spec: FusedSpec, sq: Tensor) -> Tensor:
    """φ'(s) = dφ/ds of a fused spec, elementwise, finite at s = 0 (convention in module doc)."""
    return _SPEC_PROFILES[spec.kind][1](spec.params, sq)


def spec_cpd_order(spec: FusedSpec) -> int:
    """The order q of conditional positive definiteness of a resolved radial kernel."""
    if spec.kind in ("gaussian", "gaussian_mix", "imq", "laplace"):
        return 0
    if spec.kind == "energy":
        return 1
    p = spec.params[0]
    if spec.kind == "poly_log":
        return int(p) // 2 + 1
    return 0 if p < 0 else math.ceil(p / 2)


# --------------------------------------------------------------------------------------------
# Shared numerics: validation, tiling, squared distances, precision.
# --------------------------------------------------------------------------------------------


def cancellation_tol(dtype: torch.dtype, d: int, precision: str = "ieee") -> float:
    """Relative threshold below which a squared distance from the expansion counts as 0.

    For coincident points the S = ‖x‖² + ‖y‖² − 2 x·y of a tile is pure rounding error, measured
    at up to ≈ max(√d, 2) units of roundoff u times (‖x‖² + ‖y‖²) (2u at d = 2, 9u at d = 64 in
    float32); tol = 6u · max(√d, 2) keeps a margin of about 5. Pairs with S ≤ tol (‖x‖² + ‖y‖²)
    are coincident. u is that of ``dtype``, or of TF32 (2⁻¹¹) when ``precision == "tf32"`` and the
    dtype is float32. A path that computes S from exact differences needs no threshold (only S = 0
    is coincident there).
    """
    u = torch.finfo(dtype).eps / 2.0
    if precision == "tf32" and dtype == torch.float32:
        u = 2.0**-11
    return 6.0 * u * max(math.sqrt(d), 2.0)


def _check_inputs(
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


def _tiles(n: int, m: int, chunk_size: int | None, per_entry: int = 1) -> tuple[int, int]:
    """(query rows, centre rows) per tile so that a tile has at most ``_CHUNK_ELEMENTS`` entries.

    ``chunk_size`` fixes the centre rows; by default as many centres as fit next to all queries
    (but at least 256, then the queries are chunked). ``per_entry`` scalars are held per pair.
    """
    budget = max(1, _CHUNK_ELEMENTS // per_entry)
    if chunk_size is not None:
        bm = chunk_size
    else:
        bm = max(budget // max(n, 1), min(256, budget))
    bm = max(1, min(bm, m))
    bn = max(1, min(n, budget // bm))
    return bn, bm


@contextlib.contextmanager
def _matmul_precision(device: torch.device, precision: str) -> Iterator[None]:
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


#: Dimensions up to which squared distances come from exact differences x_i − y_j (no expansion,
#: no threshold): the torch path here and the fused kernel's "direct" path.
EXACT_MAX_D = 4


def _sq_norms(z: Tensor) -> Tensor:
    return (z * z).sum(dim=1)


def _sqdist_tile(xb: Tensor, nxb: Tensor, yb: Tensor, nyb: Tensor, tol: float) -> Tensor:
    """Squared distances (bn, bm) by the expansion, clamped ≥ 0, coincident pairs set to 0."""
    scale = nxb[:, None] + nyb[None, :]
    s = torch.addmm(scale, xb, yb.T, alpha=-2.0).clamp_min(0.0)
    return torch.where(s <= tol * scale, torch.zeros_like(s), s)


def _centred(x: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """Shift both point sets by the (detached) mean of the centres: distances are unchanged."""
    if centres.shape[0] == 0:
        return x, centres
    shift = centres.detach().mean(dim=0, keepdim=True)
    return x - shift, centres - shift


def _check_range(kernel: RadialKernel, spec: FusedSpec, dtype: torch.dtype) -> None:
    """ValueError when φ(0) or φ'(0) overflows ``dtype`` (steep softened kernels in float32)."""
    zero = torch.zeros(1, dtype=torch.float64)
    big = max(abs(spec_profile(spec, zero).item()), abs(spec_profile_grad(spec, zero).item()))
    if not big <= torch.finfo(dtype).max:
        raise ValueError(
            f"{kernel!r} with spec {spec} overflows {dtype} at x = y (|φ(0)| or |φ'(0)| = {big:.3g}); "
            "use float64 inputs, a larger eps (or c), or a smaller dim"
        )


def _import_fused() -> Callable[..., Tensor]:
    """The fused Triton witness gradient, or a ValueError saying why it is unavailable."""
    try:
        import triton  # noqa: F401

        from scoregan.sampling.fused_witness import fused_witness_grad
    except Exception as err:  # ImportError, or triton failing to initialise
        raise ValueError(
            "backend='triton' needs triton and scoregan.sampling.fused_witness "
            f"({type(err).__name__}: {err}); use backend='torch'"
        ) from err
    return fused_witness_grad


def _fused_available() -> bool:
    try:
        _import_fused()
    except ValueError:
        return False
    return True


def _blockwise(n: int, m: int, bn: int, bm: int, fn: Callable[[slice, slice], Tensor]) -> Tensor:
    """Σ over centre blocks of ``fn(query block, centre block)``, concatenated over query blocks."""
    blocks = []
    for i in range(0, n, bn):
        acc = None
        for j in range(0, m, bm):
            term = fn(slice(i, i + bn), slice(j, j + bm))
            acc = term if acc is None else acc + term
        blocks.append(acc)
    return torch.cat(blocks)


# --------------------------------------------------------------------------------------------
# Kernels.
# --------------------------------------------------------------------------------------------


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
        bn, bm = _tiles(n, m, chunk_size)
        return _blockwise(n, m, bn, bm, lambda qi, cj: self(x[qi], centres[cj]) @ weights[cj])

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
        bn, bm = _tiles(n, m, chunk_size, per_entry=d)
        with _matmul_precision(x.device, precision):
            return _blockwise(
                n, m, bn, bm, lambda qi, cj: torch.einsum("nmd,m->nd", self.grad_x(x[qi], centres[cj]), weights[cj])
            )

    @staticmethod
    def _check_witness_args(x, centres, weights, chunk_size):
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, minimum=1)
        return _check_inputs(x, centres, weights)

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
    """k(x, y) = φ(‖x − y‖²), with φ and φ' given by a :class:`FusedSpec` (table in module doc).

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
        """The resolved spec for these inputs (kinds and params: module doc).

        Raises ValueError if φ(0) or φ'(0) is not representable in x's dtype.
        """
        spec = self.resolve(x, centres).spec
        _check_range(self, spec, x.dtype)
        return spec

    def cpd_order(self, x: Tensor | None = None, centres: Tensor | None = None) -> int:
        """Order q of conditional positive definiteness (0: positive definite); see module doc."""
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
        x, y, _ = _check_inputs(x, y, None, centres_name="y")
        spec = self.fused_spec(x, y)
        xs, ys = _centred(x, y)
        if x.shape[1] <= EXACT_MAX_D:
            t = xs[:, None, :] - ys[None, :, :]
            return spec_profile(spec, (t * t).sum(dim=-1))
        tol = cancellation_tol(x.dtype, x.shape[1])
        with _matmul_precision(x.device, "ieee"):
            s = _sqdist_tile(xs, _sq_norms(xs), ys, _sq_norms(ys), tol)
        return spec_profile(spec, s)

    def grad_x(self, x: Tensor, y: Tensor) -> Tensor:
        """2 φ'(s_ij)(x_i − y_j) from exact differences: (N, d), (M, d) → (N, M, d)."""
        x, y, _ = _check_inputs(x, y, None, centres_name="y")
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
        ``scoregan.sampling.fused_witness``), "auto" (triton for CUDA inputs when it imports and
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
            backend = "triton" if x.is_cuda and not needs_grad and _fused_available() else "torch"
        if backend == "triton":
            xs, cs = _centred(x, centres)
            return _import_fused()(xs, cs, weights, spec, precision)

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
        xs, cs = _centred(x, centres)
        d = x.shape[1]
        if d <= EXACT_MAX_D:
            bn, bm = _tiles(x.shape[0], centres.shape[0], chunk_size, per_entry=d)

            def exact(qi: slice, cj: slice) -> Tensor:
                t = xs[qi, None, :] - cs[None, cj, :]
                return tile((t * t).sum(dim=-1), xs[qi], cs[cj], t, cj)

            return _blockwise(x.shape[0], centres.shape[0], bn, bm, exact)
        nx, nc = _sq_norms(xs), _sq_norms(cs)
        tol = cancellation_tol(x.dtype, d, precision if x.is_cuda else "ieee")  # no TF32 off CUDA
        bn, bm = _tiles(x.shape[0], centres.shape[0], chunk_size)

        def block(qi: slice, cj: slice) -> Tensor:
            s = _sqdist_tile(xs[qi], nx[qi], cs[cj], nc[cj], tol)
            return tile(s, xs[qi], cs[cj], None, cj)

        with _matmul_precision(x.device, precision):
            return _blockwise(x.shape[0], centres.shape[0], bn, bm, block)


def _number(name: str, value: Any) -> float:
    """A finite real number as float (bools and non-numbers rejected), else ValueError."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def resolve_kernel(kernel: Any, x: Tensor, centres: Tensor) -> Any:
    """``kernel.resolve(x, centres)`` for a kernel that has it (every :class:`Kernel`), else the kernel
    itself (a duck-typed object with ``witness`` / ``witness_grad`` only)."""
    resolve = getattr(kernel, "resolve", None)
    return resolve(x, centres) if callable(resolve) else kernel


def median_bandwidth(x: Tensor, centres: Tensor, max_points: int = _MEDIAN_POINTS) -> float:
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


class GaussianKernel(RadialKernel):
    """k = exp(−‖x − y‖² / (2h²)); or the multi-scale mixture Σ_l w_l exp(−‖x − y‖² / (2h_l²)).

    bandwidth: h > 0; "median" (median heuristic, :func:`median_bandwidth`, resolved per call);
    or a sequence (h_1..h_L) for the mixture, with ``scale_weights`` w_l > 0 (default 1/L, so φ(0)
    = 1). Positive definite.
    """

    name = "gaussian"

    def __init__(self, bandwidth: float | str | Sequence[float] = 1.0, scale_weights: Sequence[float] | None = None):
        if isinstance(bandwidth, str):
            check_choice("bandwidth", bandwidth, ("median",))
        elif isinstance(bandwidth, (list, tuple)):
            if len(bandwidth) == 0:
                raise ValueError("bandwidth must be a non-empty sequence of positive numbers, got []")
            bandwidth = tuple(check_positive("bandwidth", _number("bandwidth", h)) for h in bandwidth)
        else:
            bandwidth = check_positive("bandwidth", _number("bandwidth", bandwidth))
        if scale_weights is not None:
            if not isinstance(bandwidth, tuple):
                raise ValueError("scale_weights needs a sequence of bandwidths, got bandwidth=" f"{bandwidth!r}")
            if not isinstance(scale_weights, (list, tuple)) or len(scale_weights) != len(bandwidth):
                raise ValueError(
                    f"scale_weights must be a sequence of {len(bandwidth)} positive numbers (one per bandwidth), "
                    f"got {scale_weights!r}"
                )
            scale_weights = tuple(check_positive("scale_weights", _number("scale_weights", w)) for w in scale_weights)
        elif isinstance(bandwidth, tuple):
            scale_weights = tuple(1.0 / len(bandwidth) for _ in bandwidth)
        self.bandwidth = bandwidth
        self.scale_weights = scale_weights

    def _params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bandwidth": self.bandwidth}
        if self.scale_weights is not None:
            out["scale_weights"] = self.scale_weights
        return out

    def resolve(self, x: Tensor, centres: Tensor) -> GaussianKernel:
        if self.bandwidth == "median":
            return GaussianKernel(median_bandwidth(x, centres))
        return self

    def _static_spec(self) -> FusedSpec | None:
        if isinstance(self.bandwidth, str):
            return None
        if isinstance(self.bandwidth, tuple):
            return FusedSpec("gaussian_mix", self.bandwidth + self.scale_weights)
        return FusedSpec("gaussian", (self.bandwidth,))


class IMQKernel(RadialKernel):
    """Inverse multiquadric k = (c² + ‖x − y‖²)^beta, c > 0, beta < 0. Positive definite."""

    name = "imq"

    def __init__(self, c: float = 1.0, beta: float = -0.5):
        self.c = check_positive("c", _number("c", c))
        self.beta = _number("beta", beta)
        if self.beta >= 0:
            raise ValueError(f"beta must be negative for the inverse multiquadric kernel, got {beta!r}")

    def _params(self) -> dict[str, Any]:
        return {"c": self.c, "beta": self.beta}

    def _static_spec(self) -> FusedSpec:
        return FusedSpec("imq", (self.c, self.beta))


class LaplaceKernel(RadialKernel):
    """k = exp(−‖x − y‖ / h), h > 0. Positive definite; φ' singular at 0 (φ'(0) := 0)."""

    name = "laplace"

    def __init__(self, bandwidth: float = 1.0):
        self.bandwidth = check_positive("bandwidth", _number("bandwidth", bandwidth))

    def _params(self) -> dict[str, Any]:
        return {"bandwidth": self.bandwidth}

    def _static_spec(self) -> FusedSpec:
        return FusedSpec("laplace", (self.bandwidth,))


class EnergyKernel(RadialKernel):
    """Energy-distance kernel k = −‖x − y‖: CPD of order 1; φ' singular at 0 (φ'(0) := 0)."""

    name = "energy"

    def _static_spec(self) -> FusedSpec:
        return FusedSpec("energy", ())


def _polyharmonic_spec(order: int, dim: int, eps: float) -> FusedSpec:
    """The spec of the order-m polyharmonic kernel in dimension n, p = 2m − n (module doc)."""
    p = 2 * order - dim
    if p <= 0 and eps == 0:
        raise ValueError(
            f"eps must be > 0 for the polyharmonic kernel with order={order}, dim={dim}: p = 2·order − dim = {p} ≤ 0 "
            "makes it singular at x = y"
        )
    eps2 = eps * eps
    if p < 0:
        return FusedSpec("poly_power", (float(p), 1.0, eps2))
    if p % 2 == 1:
        return FusedSpec("poly_power", (float(p), float((-1) ** ((p + 1) // 2)), eps2))
    return FusedSpec("poly_log", (float(p), float((-1) ** (p // 2 + 1)), eps2))


class PolyharmonicKernel(RadialKernel):
    """Polyharmonic kernel of order m ≥ 1 in dimension n (default: the data dimension), p = 2m − n.

    p < 0: (s + ε²)^(p/2) (needs ε > 0); p > 0 odd: (−1)^⌈p/2⌉ (s + ε²)^(p/2); p ≥ 0 even:
    (−1)^(p/2+1) ½ (s + ε²)^(p/2) log(s + ε²) (= ∓ r^p log r; needs ε > 0 when p = 0). Signs make
    it CPD of order max(0, ⌈p/2⌉) (p odd or negative) or p/2 + 1 (p even); see module doc.
    """

    name = "polyharmonic"

    def __init__(self, order: int = 1, dim: int | None = None, eps: float = 0.0):
        self.order = check_int("order", order, minimum=1)
        self.dim = None if dim is None else check_int("dim", dim, minimum=1)
        self.eps = check_positive("eps", _number("eps", eps), allow_zero=True)
        if self.dim is not None:
            _polyharmonic_spec(self.order, self.dim, self.eps)

    def _params(self) -> dict[str, Any]:
        return {"order": self.order, "dim": self.dim, "eps": self.eps}

    def resolve(self, x: Tensor, centres: Tensor) -> PolyharmonicKernel:
        if self.dim is None:
            return type(self)(**{**self._params(), "dim": x.shape[1]})
        return self

    def _static_spec(self) -> FusedSpec | None:
        return None if self.dim is None else _polyharmonic_spec(self.order, self.dim, self.eps)


class CoulombKernel(PolyharmonicKernel):
    """Plummer-softened Coulomb kernel, the order-1 polyharmonic kernel in dimension n (default d).

    n ≥ 3: (s + ε²)^(−(n−2)/2) (positive definite); n = 2: −½ log(s + ε²) (CPD of order 1);
    n = 1: −√(s + ε²) (CPD of order 1). eps > 0 is required.
    """

    name = "coulomb"

    def __init__(self, dim: int | None = None, eps: float | None = None):
        if eps is None:
            raise ValueError("eps is required for the coulomb kernel (the Plummer softening, eps > 0)")
        check_positive("eps", _number("eps", eps))
        super().__init__(order=1, dim=dim, eps=eps)

    def _params(self) -> dict[str, Any]:
        return {"dim": self.dim, "eps": self.eps}


_KERNEL_CLASSES: dict[str, type[RadialKernel]] = {
    "gaussian": GaussianKernel,
    "imq": IMQKernel,
    "laplace": LaplaceKernel,
    "energy": EnergyKernel,
    "polyharmonic": PolyharmonicKernel,
    "coulomb": CoulombKernel,
}
KERNELS: tuple[str, ...] = (*_KERNEL_CLASSES, "ntk")

_KERNEL_PARAMS: dict[str, tuple[str, ...]] = {
    "gaussian": ("bandwidth", "scale_weights"),
    "imq": ("c", "beta"),
    "laplace": ("bandwidth",),
    "energy": (),
    "polyharmonic": ("order", "dim", "eps"),
    "coulomb": ("dim", "eps"),
    "ntk": ("depth", "activation", "weight_std", "bias_std", "negative_slope", "kind", "method"),
}


def kernel(name: str, **params: Any) -> Kernel:
    """The kernel called ``name`` (one of :data:`KERNELS`) with keyword parameters.

    gaussian(bandwidth=1.0 | "median" | [h_1, ...], scale_weights=None), imq(c=1.0, beta=-0.5),
    laplace(bandwidth=1.0), energy(), polyharmonic(order=1, dim=None, eps=0.0),
    coulomb(dim=None, eps). dim=None means the data dimension at call time.
    ntk(depth=3, activation="relu", weight_std=1.0, bias_std=0.0, kind="ntk" | "nngp"): the
    infinite-width neural tangent kernel of a fully connected network
    (:class:`scoregan.diagnostics.ntk.NTKKernel`).
    """
    check_choice("name", name, KERNELS)
    allowed = _KERNEL_PARAMS[name]
    for key in params:
        if key not in allowed:
            shown = ", ".join(allowed) if allowed else "none"
            raise ValueError(
                f"{key}={params[key]!r} is not a parameter of kernel {name!r}; allowed: {shown}" + closest(key, allowed)
            )
    if name == "ntk":  # lives with the NTK toolkit; imported lazily (it needs nothing from here at import)
        from scoregan.diagnostics.ntk import NTKKernel

        return NTKKernel(**params)
    return _KERNEL_CLASSES[name](**params)

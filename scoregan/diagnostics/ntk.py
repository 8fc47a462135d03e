"""Neural tangent kernels of fully connected discriminators: infinite width and empirical.

A network of ``depth`` hidden layers in the NTK parametrisation (Jacot et al. 2018; the
conventions of Neural Tangents' ``stax.Dense(W_std, b_std, parameterization='ntk')``)

    h¹(x) = σ_w/√d · W¹ x + σ_b b¹,   h^{l+1}(x) = σ_w/√n_l · W^{l+1} φ(h^l(x)) + σ_b b^{l+1},
    f(x)  = h^{depth+1}(x) ∈ R,        every entry of W^l, b^l ~ N(0, 1),

has, as every width n_l → ∞, the NNGP Σ = Σ^{(depth+1)} and the NTK Θ = Θ^{(depth+1)} of

    Σ^{(1)}(x, y)   = σ_w² xᵀy / d + σ_b²,                      Θ^{(1)} = Σ^{(1)},
    Σ^{(l+1)}(x, y) = σ_w² E[φ(u) φ(v)] + σ_b²,
    Θ^{(l+1)}(x, y) = Σ^{(l+1)}(x, y) + σ_w² E[φ'(u) φ'(v)] Θ^{(l)}(x, y),
    (u, v) ~ N(0, [[Σ^{(l)}(x, x), Σ^{(l)}(x, y)], [Σ^{(l)}(x, y), Σ^{(l)}(y, y)]]).

Write a = Σ(x, x), b = Σ(y, y), c = Σ(x, y), ρ = c / √(ab) = cos θ. The two expectations (the
"dual" of φ) are computed

* in closed form for ReLU-like φ(z) = s₊ max(z, 0) + s₋ min(z, 0) (ReLU: s₋ = 0; leaky ReLU:
  s₋ = negative_slope), the arc-cosine kernels (Cho & Saul 2009):
      E[φφ]   = (s₊ − s₋)² √(ab) J(ρ) + s₊ s₋ c,    J(ρ) = (sin θ + (π − θ) ρ) / (2π),
      E[φ'φ'] = (s₊² + s₋²)/2 − (s₊ − s₋)² θ / (2π);
  and for φ = erf (Williams 1997):
      E[φφ] = (2/π) arcsin(2c / √((1 + 2a)(1 + 2b))),  E[φ'φ'] = (4/π) / √((1 + 2a)(1 + 2b) − 4c²);
* for any listed activation (sigmoid, tanh, softplus, GELU, and ReLU / leaky ReLU / erf on request)
  by Gaussian quadrature of the 2-D expectation in polar form: with z ~ N(0, I₂) written as
  r(cos ψ, sin ψ), u = r√a cos ψ and v = r√b cos(ψ − θ), so

      E[h(u, v)] = 1/(2π) ∫_{−π/2}^{π/2} dψ ∫_0^∞ r e^{−r²/2} [h(u, v) + h(−u, −v)] dr.

  The ψ-range is cut at the line v = 0 (ψ = θ − π/2) into two sectors on which neither u nor v
  changes sign, so the integrand is smooth on each sector even for ReLU (whose φ' jumps at 0);
  each sector is split into panels graded toward its ends (where a steep activation turns) and r
  into panels on [0, 9] (the Gaussian tail beyond 9 is below 1e-16), all with Gauss–Legendre
  nodes. This is Gauss–Hermite quadrature of the 2-D Gaussian made kink-aware: the tensor-product
  Gauss–Hermite rule converges only algebraically on ReLU's kinks, this one reaches the closed
  forms to ~1e-8 and smooth activations to ~1e-7 (relative) for pre-activation variances up
  to ~200, with 2 × 36 × 48 = 3456 nodes per pair and layer: about 10⁴ times the cost of a closed
  form, so prefer relu / leaky_relu / erf (smooth) for large point sets.

Subgradient convention at θ = 0 (DESIGN.md §5). Particle flows evaluate ∇ₓk(x, y) at x = y,
where ρ = 1 at every layer. ρ(x) ≤ 1 has a maximum there, so ∇ₓρ = 0 and every term smooth in ρ
contributes its exact value (J'(ρ) = (π − θ)/(2π) is finite). θ = arccos ρ itself is not
differentiable there: near x = y it behaves like a cone |P⊥(x − y)|, whose subdifferential is a
disk centred on 0. We take that centre: dθ/dρ := 0 at |ρ| = 1, i.e. the θ-derivative contribution
is the symmetric (minimal-norm) subgradient, which is also the mean of the one-sided gradients from
opposite directions, and what Neural Tangents returns. Without biases the same happens for every
pair of parallel inputs (ρ = 1 along rays). ρ within ``_SNAP_ULPS`` units of roundoff of ±1 is
snapped to ±1 (the rounding of c versus √(ab) must not produce a spurious huge dθ/dρ), so
∇ₓk is finite everywhere.

Shapes: x (N, d), y (M, d) → N × M. Everything follows the inputs' dtype and device.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from scoregan._checks import check_choice, check_int, check_matrix, check_positive
from scoregan.objectives.kernels import (
    Kernel,
    _blockwise,
    _check_inputs,
    _number,
    _tiles,
)

__all__ = [
    "ACTIVATIONS",
    "CLOSED_FORM_ACTIVATIONS",
    "METHODS",
    "NTKMLP",
    "NTK_KINDS",
    "NTKKernel",
    "activation_pair",
    "dual_activation",
    "empirical_ntk",
    "infinite_ntk",
]

ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "erf", "sigmoid", "tanh", "softplus", "gelu")
CLOSED_FORM_ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "erf")
METHODS: tuple[str, ...] = ("auto", "closed_form", "quadrature")
NTK_KINDS: tuple[str, ...] = ("ntk", "nngp")

# |ρ| ≥ 1 − _SNAP_ULPS·eps counts as |ρ| = 1 (θ = 0 or π).
_SNAP_ULPS = 16.0
# Quadrature: panels (fractions of a sector) for ψ, panel ends for r, Gauss–Legendre nodes per panel.
_ANGLE_PANELS = (0.0, 0.05, 0.2, 0.5, 0.8, 0.95, 1.0)
_RADIUS_PANELS = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.5, 6.5, 9.0)
_ANGLE_NODES, _RADIUS_NODES = 6, 6
# Largest number of (pair × node) entries one quadrature chunk holds.
_QUAD_ELEMENTS = 2**21
# Largest number of scalars the autograd graph of one chunk of pairs holds (NTKKernel gradients).
_GRAD_ELEMENTS = 2**23
# Largest number of Jacobian entries (rows × parameters) the empirical NTK holds per block.
_JAC_ELEMENTS = 2**24


# --------------------------------------------------------------------------------------------
# Activations φ and their derivatives φ'.
# --------------------------------------------------------------------------------------------

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


_PhiPair = Callable[[Tensor], tuple[Tensor, Tensor]]


def _leaky(slope: float) -> _PhiPair:
    def f(z: Tensor) -> tuple[Tensor, Tensor]:
        pos = z > 0
        return torch.where(pos, z, slope * z), torch.where(pos, torch.ones_like(z), torch.full_like(z, slope))

    return f


def _erf_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    return torch.erf(z), (2.0 / math.sqrt(math.pi)) * torch.exp(-z * z)


def _sigmoid_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(z)
    return s, s * torch.sigmoid(-z)


def _tanh_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    t = torch.tanh(z)
    return t, 1.0 - t * t


def _softplus_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    return nn.functional.softplus(z), torch.sigmoid(z)


def _gelu_pair(z: Tensor) -> tuple[Tensor, Tensor]:
    cdf = 0.5 * (1.0 + torch.erf(z / _SQRT_2))
    return z * cdf, cdf + z * _INV_SQRT_2PI * torch.exp(-0.5 * z * z)


def activation_pair(activation: str, negative_slope: float = 0.01) -> _PhiPair:
    """z ↦ (φ(z), φ'(z)) for an activation in :data:`ACTIVATIONS`, elementwise.

    relu max(z, 0); leaky_relu max(z, 0) + negative_slope·min(z, 0); erf; sigmoid; tanh;
    softplus log(1 + eᶻ); gelu z Φ(z) (the exact, erf-based GELU). φ' at a kink is the right
    derivative (a null set for every Gaussian expectation).
    """
    check_choice("activation", activation, ACTIVATIONS)
    table: dict[str, _PhiPair] = {
        "relu": _leaky(0.0),
        "leaky_relu": _leaky(float(negative_slope)),
        "erf": _erf_pair,
        "sigmoid": _sigmoid_pair,
        "tanh": _tanh_pair,
        "softplus": _softplus_pair,
        "gelu": _gelu_pair,
    }
    return table[activation]


# --------------------------------------------------------------------------------------------
# θ = arccos ρ and J(ρ) with the subgradient convention of the module doc.
# --------------------------------------------------------------------------------------------


def _snap(rho: Tensor) -> tuple[Tensor, Tensor]:
    """(ρ clamped to [−1, 1] with near-±1 snapped to ±1, mask of |ρ| < 1 after snapping)."""
    tol = _SNAP_ULPS * torch.finfo(rho.dtype).eps
    r = rho.clamp(-1.0, 1.0)
    r = torch.where(r >= 1.0 - tol, torch.ones_like(r), r)
    r = torch.where(r <= -1.0 + tol, -torch.ones_like(r), r)
    return r, r.abs() < 1.0


def _sin_from_cos(r: Tensor, inside: Tensor) -> Tensor:
    """√(1 − r²) where inside, else 0, with finite autograd everywhere."""
    q = torch.where(inside, 1.0 - r * r, torch.ones_like(r))
    return torch.where(inside, torch.sqrt(q), torch.zeros_like(r))


class _Arccos(torch.autograd.Function):
    """θ = arccos ρ on [−1, 1]; dθ/dρ = −1/sin θ for |ρ| < 1 and := 0 at |ρ| = 1 (module doc)."""

    @staticmethod
    def forward(ctx, rho: Tensor) -> Tensor:
        r, _ = _snap(rho)
        ctx.save_for_backward(rho)
        return torch.arccos(r)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (rho,) = ctx.saved_tensors
        r, inside = _snap(rho)
        s = _sin_from_cos(r, inside)
        return grad * torch.where(inside, -1.0 / torch.where(inside, s, torch.ones_like(s)), torch.zeros_like(s))


class _ArccosJ(torch.autograd.Function):
    """J(ρ) = (sin θ + (π − θ) ρ) / (2π), with its exact derivative J'(ρ) = (π − θ) / (2π)."""

    @staticmethod
    def forward(ctx, rho: Tensor) -> Tensor:
        r, inside = _snap(rho)
        ctx.save_for_backward(rho)
        theta = torch.arccos(r)
        return (_sin_from_cos(r, inside) + (math.pi - theta) * r) / (2.0 * math.pi)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (rho,) = ctx.saved_tensors
        return grad * (math.pi - _Arccos.apply(rho)) / (2.0 * math.pi)


def _safe_sqrt(q: Tensor) -> Tensor:
    """√max(q, 0), with gradient 0 (not ∞) where q ≤ 0."""
    pos = q > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, q, torch.ones_like(q))), torch.zeros_like(q))


def _correlation(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(√(ab), ρ = c/√(ab)), with ρ := 0 where a or b is 0 (a constant pre-activation)."""
    prod = _safe_sqrt(a * b)
    pos = prod > 0
    rho = torch.where(pos, c / torch.where(pos, prod, torch.ones_like(prod)), torch.zeros_like(prod))
    return prod, rho


# --------------------------------------------------------------------------------------------
# Duals: (E[φ(u)φ(v)], E[φ'(u)φ'(v)]) for (u, v) ~ N(0, [[a, c], [c, b]]), elementwise.
# --------------------------------------------------------------------------------------------


def _relu_like_dual(a: Tensor, b: Tensor, c: Tensor, pos: float, neg: float) -> tuple[Tensor, Tensor]:
    prod, rho = _correlation(a, b, c)
    jump = (pos - neg) ** 2
    nngp = jump * prod * _ArccosJ.apply(rho) + pos * neg * c
    dot = (pos * pos + neg * neg) / 2.0 - jump * _Arccos.apply(rho) / (2.0 * math.pi)
    return nngp, dot


def _erf_dual(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    da, db = 1.0 + 2.0 * a, 1.0 + 2.0 * b
    nngp = (2.0 / math.pi) * torch.asin((2.0 * c / torch.sqrt(da * db)).clamp(-1.0, 1.0))
    dot = (4.0 / math.pi) / torch.sqrt(da * db - 4.0 * c * c)
    return nngp, dot


@dataclass(frozen=True)
class _Nodes:
    """Quadrature nodes: sector fractions t (A,), their weights (A,), radii r (R,), weights (R,)."""

    t: Tensor
    wt: Tensor
    r: Tensor
    wr: Tensor


def _panel_nodes(ends: tuple[float, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre nodes and weights on the panels [ends[i], ends[i+1]]."""
    z, w = np.polynomial.legendre.leggauss(n)
    nodes, weights = [], []
    for lo, hi in itertools.pairwise(ends):
        nodes.append(lo + (hi - lo) * (z + 1.0) / 2.0)
        weights.append((hi - lo) * w / 2.0)
    return np.concatenate(nodes), np.concatenate(weights)


@functools.lru_cache(maxsize=16)
def _quadrature_nodes(dtype: torch.dtype, device: torch.device) -> _Nodes:
    t, wt = _panel_nodes(_ANGLE_PANELS, _ANGLE_NODES)
    r, wr = _panel_nodes(_RADIUS_PANELS, _RADIUS_NODES)
    wr = wr * r * np.exp(-0.5 * r * r)  # the radial density r e^{−r²/2} (integrates to 1)

    def as_t(v: np.ndarray) -> Tensor:
        return torch.as_tensor(v, dtype=dtype, device=device)

    return _Nodes(as_t(t), as_t(wt), as_t(r), as_t(wr))


def _quadrature_dual(a: Tensor, b: Tensor, c: Tensor, pair: _PhiPair, nodes: _Nodes) -> tuple[Tensor, Tensor]:
    """Both expectations by the kink-aware polar quadrature of the module doc, chunked over pairs."""
    a, b, c = torch.broadcast_tensors(a, b, c)
    shape = a.shape
    a, b, c = a.reshape(-1), b.reshape(-1), c.reshape(-1)
    if a.numel() == 0:
        return a.new_zeros(shape), a.new_zeros(shape)
    step = max(1, _QUAD_ELEMENTS // (2 * nodes.t.numel() * nodes.r.numel()))
    outs = [_quadrature_block(a[i : i + step], b[i : i + step], c[i : i + step], pair, nodes)
            for i in range(0, a.numel(), step)]
    return torch.cat([o[0] for o in outs]).reshape(shape), torch.cat([o[1] for o in outs]).reshape(shape)


def _quadrature_block(a: Tensor, b: Tensor, c: Tensor, pair: _PhiPair, nodes: _Nodes) -> tuple[Tensor, Tensor]:
    sa, sb = _safe_sqrt(a), _safe_sqrt(b)
    _, rho = _correlation(a, b, c)
    theta = _Arccos.apply(rho)[:, None]  # (P, 1)
    half = math.pi / 2.0
    # Sector 1: ψ ∈ [−π/2, θ − π/2] (v ≤ 0); sector 2: ψ ∈ [θ − π/2, π/2] (v ≥ 0); u ≥ 0 on both.
    psi = torch.cat([-half + theta * nodes.t, theta - half + (math.pi - theta) * nodes.t], dim=1)  # (P, 2A)
    w_psi = torch.cat([theta * nodes.wt, (math.pi - theta) * nodes.wt], dim=1)
    u = (sa[:, None] * torch.cos(psi))[..., None] * nodes.r  # (P, 2A, R)
    v = (sb[:, None] * torch.cos(psi - theta))[..., None] * nodes.r
    weight = w_psi[..., None] * nodes.wr / (2.0 * math.pi)
    (fu, du), (fv, dv) = pair(u), pair(v)
    (fmu, dmu), (fmv, dmv) = pair(-u), pair(-v)
    nngp = ((fu * fv + fmu * fmv) * weight).sum(dim=(1, 2))
    dot = ((du * dv + dmu * dmv) * weight).sum(dim=(1, 2))
    return nngp, dot


@dataclass(frozen=True)
class _Arch:
    """A validated architecture: the recursion's parameters."""

    depth: int
    activation: str
    weight_std: float
    bias_std: float
    negative_slope: float
    method: str

    @property
    def closed_form(self) -> bool:
        return self.method == "closed_form" or (self.method == "auto" and self.activation in CLOSED_FORM_ACTIVATIONS)


def _arch(depth, activation, weight_std, bias_std, negative_slope=0.01, method="auto") -> _Arch:
    check_int("depth", depth, minimum=1)
    check_choice("activation", activation, ACTIVATIONS)
    weight_std = check_positive("weight_std", _number("weight_std", weight_std))
    bias_std = check_positive("bias_std", _number("bias_std", bias_std), allow_zero=True)
    negative_slope = _number("negative_slope", negative_slope)
    check_choice("method", method, METHODS)
    if method == "closed_form" and activation not in CLOSED_FORM_ACTIVATIONS:
        raise ValueError(
            f"method='closed_form' is not available for activation={activation!r}; closed forms exist for "
            f"{', '.join(map(repr, CLOSED_FORM_ACTIVATIONS))} (use method='quadrature' or 'auto')"
        )
    return _Arch(depth, activation, weight_std, bias_std, negative_slope, method)


def dual_activation(
    a: Tensor, b: Tensor, c: Tensor, *, activation: str, negative_slope: float = 0.01, method: str = "auto"
) -> tuple[Tensor, Tensor]:
    """(E[φ(u)φ(v)], E[φ'(u)φ'(v)]) for (u, v) ~ N(0, [[a, c], [c, b]]), elementwise (broadcast).

    method: "closed_form" (relu, leaky_relu, erf), "quadrature" (every activation), "auto"
    (closed form where it exists). Requires a, b ≥ 0 and c² ≤ ab.
    """
    arch = _arch(1, activation, 1.0, 0.0, negative_slope, method)
    return _dual(arch, a, b, c)


def _dual(arch: _Arch, a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    if arch.closed_form:
        if arch.activation == "erf":
            return _erf_dual(a, b, c)
        neg = 0.0 if arch.activation == "relu" else arch.negative_slope
        return _relu_like_dual(a, b, c, 1.0, neg)
    pair = activation_pair(arch.activation, arch.negative_slope)
    return _quadrature_dual(a, b, c, pair, _quadrature_nodes(c.dtype, c.device))


def _diagonal_chain(arch: _Arch, a: Tensor) -> list[Tensor]:
    """[Σ^{(1)}(x, x), ..., Σ^{(depth)}(x, x)]: the variances entering each activation (shape of a)."""
    chain = [a]
    for _ in range(arch.depth - 1):
        a = arch.weight_std**2 * _dual(arch, a, a, a)[0] + arch.bias_std**2
        chain.append(a)
    return chain


def _pair_recursion(arch: _Arch, a_chain: list[Tensor], b_chain: list[Tensor], c: Tensor) -> tuple[Tensor, Tensor]:
    """(Θ, Σ) of the read-out from Σ¹(x, y) = c and the variance chains of x and y.

    Elementwise in broadcast (a, b, c): entry (i, j) depends on (a_l, b_l, c)[i, j] only.
    """
    w2, b2 = arch.weight_std**2, arch.bias_std**2
    ntk = c
    for a, b in zip(a_chain, b_chain):
        nngp, dot = _dual(arch, a, b, c)
        c = w2 * nngp + b2
        ntk = c + w2 * dot * ntk
    return ntk, c


def _first_layer(arch: _Arch, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
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
    stax.Dense(1, W_std, b_std, parameterization='ntk'))`` (recursion and dual formulas: module
    doc). weight_std σ_w > 0, bias_std σ_b ≥ 0 (0: no biases), negative_slope for leaky_relu.
    method: "closed_form" (relu, leaky_relu, erf), "quadrature" (any activation), "auto".
    Differentiable in x and y, with a finite subgradient at x = y (module doc).
    """
    arch = _arch(depth, activation, weight_std, bias_std, negative_slope, method)
    x, y, _ = _check_inputs(x, y, None, centres_name="y")
    a, b, c = _first_layer(arch, x, y)
    return _pair_recursion(arch, _diagonal_chain(arch, a[:, None]), _diagonal_chain(arch, b[None, :]), c)


# --------------------------------------------------------------------------------------------
# The NTK as a kernel of the core.
# --------------------------------------------------------------------------------------------


class NTKKernel(Kernel):
    """k(x, y) = Θ(x, y) (kind "ntk") or Σ(x, y) (kind "nngp") of :func:`infinite_ntk`.

    The x-gradient is exact through the recursion: Σ¹ enters k(x_i, y_j) only through
    a_i = σ_w²‖x_i‖²/d + σ_b² and c_ij = σ_w² x_i·y_j/d + σ_b², so

        ∇ₓk(x_i, y_j) = (2σ_w²/d) ∂k/∂a · x_i + (σ_w²/d) ∂k/∂c · y_j,

    with the two scalars per pair from one backward pass through the elementwise recursion.
    ``witness_grad`` sums them against the weights tile by tile, never forming the N × M × d
    tensor: ∇D(x_i) = (2σ_w²/d) x_i Σ_j a_j ∂k_ij/∂a + (σ_w²/d) Σ_j a_j ∂k_ij/∂c y_j. Finite at
    x = y (module doc). Not translation invariant; positive semi-definite; no fused Triton spec.
    """

    name = "ntk"

    def __init__(
        self,
        depth: int = 3,
        activation: str = "relu",
        weight_std: float = 1.0,
        bias_std: float = 0.0,
        negative_slope: float = 0.01,
        kind: str = "ntk",
        method: str = "auto",
    ):
        self.arch = _arch(depth, activation, weight_std, bias_std, negative_slope, method)
        self.kind = check_choice("kind", kind, NTK_KINDS)

    def _params(self) -> dict[str, Any]:
        a = self.arch
        out: dict[str, Any] = {"depth": a.depth, "activation": a.activation, "weight_std": a.weight_std,
                               "bias_std": a.bias_std}
        if a.activation == "leaky_relu":
            out["negative_slope"] = a.negative_slope
        return {**out, "kind": self.kind, "method": a.method}

    def _pick(self, ntk_nngp: tuple[Tensor, Tensor]) -> Tensor:
        return ntk_nngp[0] if self.kind == "ntk" else ntk_nngp[1]

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """k(x_i, y_j): (N, d), (M, d) → (N, M)."""
        x, y, _ = _check_inputs(x, y, None, centres_name="y")
        a, b, c = _first_layer(self.arch, x, y)
        chains = _diagonal_chain(self.arch, a[:, None]), _diagonal_chain(self.arch, b[None, :])
        return self._pick(_pair_recursion(self.arch, *chains, c))

    def _pair_coefficients(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(α, β), each (N, M), with ∇ₓk(x_i, y_j) = α_ij x_i + β_ij y_j.

        α = (2σ_w²/d) ∂k/∂a, β = (σ_w²/d) ∂k/∂c. Without a graph to keep, the chain rule is
        split: the variance chain a_l(a) of x is differentiated once per point (N,), the pair
        recursion once per pair, in chunks of pairs (bounded memory even for quadrature). When
        x or y requires grad, one differentiable backward pass keeps the result differentiable.
        """
        scale = self.arch.weight_std**2 / x.shape[1]
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
        step = max(1, _GRAD_ELEMENTS // self._cost_per_pair())
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

    def _cost_per_pair(self) -> int:
        """Rough number of scalars the pair recursion's autograd graph holds per pair."""
        per_layer = 32
        if not self.arch.closed_form:
            per_layer *= 2 * (len(_ANGLE_PANELS) - 1) * _ANGLE_NODES * (len(_RADIUS_PANELS) - 1) * _RADIUS_NODES
        return per_layer * self.arch.depth

    def grad_x(self, x: Tensor, y: Tensor) -> Tensor:
        """∂k(x_i, y_j)/∂x_i = α_ij x_i + β_ij y_j: (N, d), (M, d) → (N, M, d)."""
        x, y, _ = _check_inputs(x, y, None, centres_name="y")
        alpha, beta = self._pair_coefficients(x, y)
        return alpha[..., None] * x[:, None, :] + beta[..., None] * y[None, :, :]

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
        bn, bm = _tiles(n, m, chunk_size)

        def tile(qi: slice, cj: slice) -> Tensor:
            alpha, beta = self._pair_coefficients(x[qi], centres[cj])
            w = weights[cj]
            return x[qi] * (alpha @ w)[:, None] + (beta * w) @ centres[cj]

        return _blockwise(n, m, bn, bm, tile)


# --------------------------------------------------------------------------------------------
# Finite width: the NTK-parametrised MLP and the empirical NTK.
# --------------------------------------------------------------------------------------------


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
        self.arch = _arch(depth, activation, weight_std, bias_std, negative_slope)
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
    from torch.func import functional_call, jacrev, vmap

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
    x, y, _ = _check_inputs(x, x if same else y, None, centres_name="y")
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
    rows = chunk_size or max(1, _JAC_ELEMENTS // n_params)
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

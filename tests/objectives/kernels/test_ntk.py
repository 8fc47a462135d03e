"""Neural tangent kernels (scoregan.diagnostics.ntk): infinite-width closed forms and quadrature
against independent references, the empirical NTK against explicit Jacobians and its convergence to
the infinite-width kernel, the NTK as a kernel of the core, the subgradient at x = y, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan.diagnostics.ntk import (
    ACTIVATIONS,
    NTKMLP,
    NTKKernel,
    dual_activation,
    empirical_ntk,
    infinite_ntk,
)
from scoregan.objectives import kernels as K
from scoregan.objectives.kernels import ntk as ntk_module
from tests.helpers import gen, points

F64 = torch.float64



def _reference_relu_like(x, y, depth, w_std, b_std, slope):
    """Per-pair scalar loop (math module) of the leaky-ReLU NTK/NNGP recursion, written from the
    arc-cosine kernels in their indicator form: E[φ'φ'] = (1 + s²)(π − θ)/(2π) + 2s θ/(2π),
    E[φφ] = (1 − s)² k₁ + s c with k₁ = √(ab)(sin θ + (π − θ) cos θ)/(2π)."""
    n, d = x.shape
    m = y.shape[0]
    ntk = torch.empty(n, m, dtype=F64)
    nngp = torch.empty(n, m, dtype=F64)
    for i in range(n):
        for j in range(m):
            xi, yj = x[i].tolist(), y[j].tolist()
            a = w_std**2 * sum(v * v for v in xi) / d + b_std**2
            b = w_std**2 * sum(v * v for v in yj) / d + b_std**2
            c = w_std**2 * sum(u * v for u, v in zip(xi, yj)) / d + b_std**2
            theta_ntk = c
            for _ in range(depth):
                cos = max(-1.0, min(1.0, c / math.sqrt(a * b)))
                th = math.acos(cos)
                k1 = math.sqrt(a * b) * (math.sin(th) + (math.pi - th) * cos) / (2 * math.pi)
                ephi = (1 - slope) ** 2 * k1 + slope * c
                edphi = (1 + slope**2) * (math.pi - th) / (2 * math.pi) + 2 * slope * th / (2 * math.pi)
                a = w_std**2 * (1 + slope**2) / 2 * a + b_std**2
                b = w_std**2 * (1 + slope**2) / 2 * b + b_std**2
                c = w_std**2 * ephi + b_std**2
                theta_ntk = c + w_std**2 * edphi * theta_ntk
            ntk[i, j], nngp[i, j] = theta_ntk, c
    return ntk, nngp

def _scipy_dual(name, a, b, c):
    """E[φ(u)φ(v)] by nested adaptive scipy quadrature in Cholesky coordinates."""
    import numpy as np
    from scipy import integrate, special

    phi = {"tanh": np.tanh, "sigmoid": special.expit, "softplus": lambda z: np.logaddexp(0.0, z),
           "gelu": lambda z: z * special.ndtr(z)}[name]
    s = math.sqrt((a * b - c * c) / a)
    dens = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    def inner(z1):
        m = c / math.sqrt(a) * z1
        return integrate.quad(lambda z2: phi(m + s * z2) * dens(z2), -10, 10, epsabs=1e-12, epsrel=1e-12)[0]

    return integrate.quad(lambda z1: phi(math.sqrt(a) * z1) * inner(z1) * dens(z1), -10, 10,
                          epsabs=1e-11, epsrel=1e-11)[0]


KERNEL_CASES = [
    {"depth": 3, "activation": "relu", "weight_std": 1.4, "bias_std": 0.0},
    {"depth": 3, "activation": "relu", "weight_std": 1.4, "bias_std": 0.6},
    {"depth": 2, "activation": "leaky_relu", "negative_slope": 0.2, "bias_std": 0.3},
    {"depth": 3, "activation": "erf", "bias_std": 0.5},
    {"depth": 2, "activation": "relu", "bias_std": 0.5, "kind": "nngp"},
]

KIDS = ["relu", "relu+bias", "leaky", "erf", "nngp"]


def test_hand_computed_value():
    """depth 1, ReLU, σ_w = 1, no bias, d = 1, x = y = 1: Σ¹ = 1, Σ² = E[relu(u)²] = 1/2,
    Σ̇ = 1/2, Θ = Σ² + Σ̇ Σ¹ = 1."""
    one = torch.ones(1, 1, dtype=F64)
    ntk, nngp = infinite_ntk(one, one, depth=1, activation="relu")
    assert ntk.item() == pytest.approx(1.0, abs=1e-14)
    assert nngp.item() == pytest.approx(0.5, abs=1e-14)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("bias_std", [0.0, 0.7])
@pytest.mark.parametrize("activation,slope", [("relu", 0.0), ("leaky_relu", 0.2)])
def test_relu_closed_form_equals_arccos_reference(depth, bias_std, activation, slope):
    x, y = points(4, 3, 1), points(3, 3, 2) * 1.5
    ntk, nngp = infinite_ntk(x, y, depth=depth, activation=activation, weight_std=1.3, bias_std=bias_std,
                             negative_slope=0.2)
    ref_ntk, ref_nngp = _reference_relu_like(x, y, depth, 1.3, bias_std, slope)
    torch.testing.assert_close(ntk, ref_ntk, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(nngp, ref_nngp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("bias_std", [0.0, 0.7])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "erf"])
def test_quadrature_equals_closed_forms(depth, bias_std, activation):
    x, y = points(5, 3, 3), points(4, 3, 4)
    kw = {"depth": depth, "activation": activation, "weight_std": 1.3, "bias_std": bias_std, "negative_slope": 0.2}
    closed = infinite_ntk(x, y, method="closed_form", **kw)
    quad = infinite_ntk(x, y, method="quadrature", **kw)
    for c, q in zip(closed, quad):
        assert (c - q).abs().max().item() <= 1e-6


def test_erf_closed_form_against_scipy():
    """Williams' erf formula, checked through Price's identity at one point by scipy (1-D)."""
    from scipy import integrate, special

    a = torch.tensor([0.8], dtype=F64)
    nngp, dot = dual_activation(a, a, a, activation="erf")
    ref = integrate.quad(lambda u: special.erf(u) ** 2 * math.exp(-u * u / 1.6) / math.sqrt(1.6 * math.pi),
                         -20, 20, epsabs=1e-13)[0]
    ref_dot = integrate.quad(lambda u: 4 / math.pi * math.exp(-2 * u * u) * math.exp(-u * u / 1.6)
                             / math.sqrt(1.6 * math.pi), -20, 20, epsabs=1e-13)[0]
    assert nngp.item() == pytest.approx(ref, abs=1e-11)
    assert dot.item() == pytest.approx(ref_dot, abs=1e-11)


@pytest.mark.parametrize("name,abc", [("tanh", (1.3, 0.7, 0.5)), ("sigmoid", (4.0, 2.5, -1.9)),
                                      ("softplus", (2.0, 3.0, 2.2)), ("gelu", (9.0, 5.0, 6.0))])
def test_quadrature_smooth_activations_against_scipy(name, abc):
    a, b, c = (torch.tensor([v], dtype=F64) for v in abc)
    nngp, _ = dual_activation(a, b, c, activation=name)
    ref = _scipy_dual(name, *abc)
    assert abs(nngp.item() - ref) <= 1e-7 * max(1.0, abs(ref))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_price_identity_dE_dc_is_derivative_dual(activation):
    """∂E[φ(u)φ(v)]/∂c = E[φ'(u)φ'(v)] (Price's theorem), autograd against the computed dual."""
    g = gen(5)
    a = 0.3 + 2.0 * torch.rand(6, generator=g, dtype=F64)
    b = 0.3 + 2.0 * torch.rand(6, generator=g, dtype=F64)
    c = ((2 * torch.rand(6, generator=g, dtype=F64) - 1) * 0.95 * (a * b).sqrt()).requires_grad_(True)
    nngp, dot = dual_activation(a, b, c, activation=activation, negative_slope=0.2)
    (dc,) = torch.autograd.grad(nngp.sum(), c)
    tol = 1e-12 if activation in ("relu", "leaky_relu", "erf") else 1e-6
    torch.testing.assert_close(dc, dot, rtol=tol, atol=tol)


def test_bias_free_relu_is_positively_homogeneous():
    """No biases: k(λx, y) = λ k(x, y) for λ > 0 (Θ, Σ are 1-homogeneous in each argument)."""
    x, y = points(4, 2, 6), points(5, 2, 7)
    ntk, nngp = infinite_ntk(x, y, depth=3, activation="relu", weight_std=1.4)
    ntk3, nngp3 = infinite_ntk(3.0 * x, y, depth=3, activation="relu", weight_std=1.4)
    torch.testing.assert_close(ntk3, 3.0 * ntk, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(nngp3, 3.0 * nngp, rtol=1e-12, atol=1e-12)
    ntk_b, _ = infinite_ntk(3.0 * x, y, depth=3, activation="relu", weight_std=1.4, bias_std=0.5)
    assert (ntk_b - 3.0 * infinite_ntk(x, y, depth=3, activation="relu", weight_std=1.4,
                                       bias_std=0.5)[0]).abs().max() > 1e-2


@pytest.mark.parametrize("params", KERNEL_CASES + [{"depth": 2, "activation": "tanh", "bias_std": 0.5}],
                         ids=KIDS + ["tanh-quadrature"])
def test_grad_x_is_autograd_of_values(params):
    x, y = points(4, 2, 14), points(5, 2, 15) * 1.3
    k = NTKKernel(**params)
    jac = torch.autograd.functional.jacobian(lambda z: k(z, y), x)  # (N, M, N, d)
    auto = torch.einsum("nmnd->nmd", jac)
    analytic = k.grad_x(x, y)
    assert analytic.shape == (4, 5, 2)
    torch.testing.assert_close(analytic, auto, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("params", KERNEL_CASES, ids=KIDS)
def test_witness_grad_is_weighted_sum_and_autograd_of_witness(params):
    x, y = points(7, 2, 16), points(9, 2, 17) + 0.3
    a = torch.randn(9, generator=gen(18), dtype=F64)
    k = NTKKernel(**params)
    wg = k.witness_grad(x, y, a)
    torch.testing.assert_close(wg, torch.einsum("nmd,m->nd", k.grad_x(x, y), a), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(k.witness(x, y, a), k(x, y) @ a, rtol=1e-10, atol=1e-12)
    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(k.witness(xr, y, a).sum(), xr)
    torch.testing.assert_close(wg, auto, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(k.witness_grad(x, y), k.grad_x(x, y).mean(dim=1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("params", KERNEL_CASES[1:4], ids=KIDS[1:4])
@pytest.mark.parametrize("chunk_size", [1, 7, 16, 53, 1000])
def test_chunked_equals_one_chunk_float32(params, chunk_size, monkeypatch):
    x = torch.randn(37, 2, generator=gen(19)) * 1.5
    y = torch.randn(53, 2, generator=gen(20))
    a = torch.randn(53, generator=gen(21)) / 53
    k = NTKKernel(**params)
    ref_w, ref_g = k.witness(x, y, a), k.witness_grad(x, y, a)
    scale_w, scale_g = ref_w.abs().max().item(), ref_g.abs().max().item()
    for budget in (K.BUDGETS.tile, 64):  # 64: the queries are chunked as well
        monkeypatch.setattr(K.BUDGETS, "tile", budget)
        w = k.witness(x, y, a, chunk_size=chunk_size)
        g = k.witness_grad(x, y, a, chunk_size=chunk_size)
        assert w.dtype == torch.float32 and g.dtype == torch.float32 and g.shape == (37, 2)
        assert (w - ref_w).abs().max() <= 1e-6 * max(scale_w, 1.0)
        assert (g - ref_g).abs().max() <= 1e-6 * max(scale_g, 1.0)


def test_pair_chunks_of_the_gradient_path(monkeypatch):
    """The per-pair autograd of witness_grad, split into chunks of pairs, gives the same result."""
    x, y, a = points(6, 2, 22), points(7, 2, 23), torch.randn(7, generator=gen(24), dtype=F64)
    k = NTKKernel(depth=2, activation="relu", bias_std=0.5)
    ref = k.witness_grad(x, y, a)
    monkeypatch.setattr(K.BUDGETS, "ntk_grad", 1)  # one pair per chunk
    torch.testing.assert_close(k.witness_grad(x, y, a), ref, rtol=1e-12, atol=1e-13)


def test_triton_backend_is_a_clear_error():
    k = NTKKernel()
    with pytest.raises(ValueError, match="backend='triton'.*no fused spec"):
        k.witness_grad(points(3, 2, 25), points(4, 2, 26), backend="triton")
    assert k.fused_spec(points(3, 2, 25), points(4, 2, 26)) is None


def test_witness_grad_is_differentiable_when_x_requires_grad():
    """Second order: ∂/∂x Σ ∇D(x) from witness_grad equals double autograd of the witness."""
    x, y, a = points(5, 2, 27), points(6, 2, 28), torch.randn(6, generator=gen(29), dtype=F64)
    for params in ({"depth": 2, "activation": "relu", "bias_std": 0.5}, {"depth": 2, "activation": "erf", "bias_std": 0.5}):
        k = NTKKernel(**params)
        xr = x.clone().requires_grad_(True)
        (second,) = torch.autograd.grad(k.witness_grad(xr, y, a).sum(), xr)
        xr2 = x.clone().requires_grad_(True)
        (first,) = torch.autograd.grad(k.witness(xr2, y, a).sum(), xr2, create_graph=True)
        (ref,) = torch.autograd.grad(first.sum(), xr2)
        torch.testing.assert_close(second, ref, rtol=1e-9, atol=1e-11)


def test_kernel_is_symmetric_psd_and_follows_dtype():
    z = points(12, 3, 30)
    k = NTKKernel(depth=3, activation="relu", bias_std=0.5)
    gram = k(z, z)
    torch.testing.assert_close(gram, gram.T, rtol=1e-12, atol=1e-12)
    assert torch.linalg.eigvalsh(gram).min() > -1e-10 * gram.diagonal().max()
    z32 = z.float()
    assert k(z32, z32).dtype == torch.float32
    assert k.grad_x(z32, z32).dtype == torch.float32
    assert k.witness_grad(z32, z32).dtype == torch.float32
    torch.testing.assert_close(k(z32, z32).double(), gram, rtol=1e-5, atol=1e-5)


def test_factory_returns_the_ntk_kernel():
    if "ntk" not in K.KERNELS:
        pytest.skip("kernel('ntk') is wired into scoregan.objectives.kernel by the lead")
    k = K.kernel("ntk", depth=2, activation="erf", bias_std=0.3)
    assert isinstance(k, NTKKernel)
    x = points(3, 2, 31)
    torch.testing.assert_close(k(x, x), infinite_ntk(x, x, depth=2, activation="erf", bias_std=0.3)[0])


@pytest.mark.parametrize("bias_std", [0.0, 0.5])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_grad_at_coincidence_is_finite_for_relu(bias_std, dtype):
    y = points(9, 2, 32, dtype)
    for activation in ("relu", "leaky_relu"):
        k = NTKKernel(depth=3, activation=activation, weight_std=1.4, bias_std=bias_std)
        assert torch.isfinite(k.grad_x(y, y)).all()
        assert torch.isfinite(k.witness_grad(y, y)).all()
        xr = y.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(k(xr, y).diagonal().sum(), xr)
        assert torch.isfinite(auto).all()
    # parallel inputs without biases (ρ = 1 along rays) and the origin (ρ undefined) as well
    k = NTKKernel(depth=3, activation="relu", bias_std=bias_std)
    special = torch.cat([2.0 * y[:3], torch.zeros(1, 2, dtype=dtype)])
    assert torch.isfinite(k.grad_x(special, y[:3])).all() and torch.isfinite(k(special, y[:3])).all()


@pytest.mark.parametrize("bias_std", [0.0, 0.5])
def test_grad_at_coincidence_is_the_symmetric_subgradient(bias_std):
    """At x = y the θ-term is a cone: the returned gradient is the mean of the one-sided gradients
    from opposite directions (its subdifferential's centre), up to O(ε); the one-sided gradients
    themselves differ by O(1), so a one-sided choice would fail this test."""
    y = points(6, 2, 33)
    k = NTKKernel(depth=3, activation="relu", weight_std=1.4, bias_std=bias_std)
    idx = torch.arange(6)
    at = k.grad_x(y, y)[idx, idx]
    for seed in (34, 35):
        v = points(6, 2, seed)
        eps = 1e-4
        plus = k.grad_x(y + eps * v, y)[idx, idx]
        minus = k.grad_x(y - eps * v, y)[idx, idx]
        assert (plus - minus).abs().max() > 0.1  # a genuine kink
        assert ((plus + minus) / 2 - at).abs().max() < 1e-3


def test_grad_at_coincidence_is_exact_for_smooth_activations():
    y = points(5, 2, 36)
    k = NTKKernel(depth=3, activation="erf", bias_std=0.5)
    idx = torch.arange(5)
    at = k.grad_x(y, y)[idx, idx]
    v = points(5, 2, 37)
    near = k.grad_x(y + 1e-6 * v, y)[idx, idx]
    assert (near - at).abs().max() < 1e-5


def test_bad_arguments_name_the_argument():
    x, y = points(3, 2, 38), points(4, 2, 39)
    cases = [
        ({"depth": 2, "activation": "rellu"}, "activation"),
        ({"depth": 0, "activation": "relu"}, "depth"),
        ({"depth": 1.5, "activation": "relu"}, "depth"),
        ({"depth": 2, "activation": "relu", "weight_std": 0.0}, "weight_std"),
        ({"depth": 2, "activation": "relu", "weight_std": -1.0}, "weight_std"),
        ({"depth": 2, "activation": "relu", "weight_std": float("nan")}, "weight_std"),
        ({"depth": 2, "activation": "relu", "bias_std": -0.1}, "bias_std"),
        ({"depth": 2, "activation": "tanh", "method": "closed_form"}, "method"),
        ({"depth": 2, "activation": "relu", "method": "exact"}, "method"),
    ]
    for kw, name in cases:
        with pytest.raises(ValueError, match=name):
            infinite_ntk(x, y, **kw)
        with pytest.raises(ValueError, match=name):
            NTKKernel(**kw)
    with pytest.raises(ValueError, match="y"):
        infinite_ntk(x, points(4, 3, 40), depth=2, activation="relu")
    with pytest.raises(ValueError, match="x"):
        infinite_ntk(x[0], y, depth=2, activation="relu")
    with pytest.raises(ValueError, match="centres"):
        NTKKernel().witness_grad(x, points(4, 3, 40))
    with pytest.raises(ValueError, match="kind"):
        NTKKernel(kind="cntk")
    with pytest.raises(ValueError, match="model"):
        empirical_ntk(lambda z: z.sum(1), x)
    with pytest.raises(ValueError, match="scalar"):
        empirical_ntk(torch.nn.Linear(2, 3).double(), x)
    with pytest.raises(ValueError, match="y"):
        empirical_ntk(torch.nn.Linear(2, 1).double(), x, points(2, 3, 41))
    with pytest.raises(ValueError, match="width"):
        NTKMLP(2, 0, 2)
    with pytest.raises(ValueError, match="depth"):
        NTKMLP(2, 8, 0)


# --- the autograd-free fast path (kernels.ntk_fast) against the autograd path -----------------

FAST_ACTIVATIONS = [{"activation": "relu"}, {"activation": "leaky_relu", "negative_slope": 0.2},
                    {"activation": "erf"}]


def _fast_case_points(d: int = 3):
    """Centres y (M, d); queries x: generic points, exact copies of centres (self-terms) and centres
    moved by 1e-3 and 1e-5 (near-coincident pairs); weights of both signs."""
    y = points(17, d, 50) * 1.3 + 0.2
    v = points(4, d, 51)
    x = torch.cat([points(9, d, 52), y[:5], y[5:7] + 1e-3 * v[:2], y[7:9] + 1e-5 * v[2:]])
    return x, y, torch.randn(17, generator=gen(53), dtype=F64)


def _max_rel_err(fast: torch.Tensor, ref: torch.Tensor) -> float:
    """max |fast − ref| / max |ref| (row scale: the witness gradient's natural size)."""
    return ((fast - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("bias_std", [0.0, 1.0])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("act", FAST_ACTIVATIONS, ids=["relu", "leaky0.2", "erf"])
def test_fast_path_equals_autograd_path(act, depth, bias_std):
    x, y, a = _fast_case_points()
    for kind in ("ntk", "nngp"):
        fast = NTKKernel(depth=depth, weight_std=1.2, bias_std=bias_std, kind=kind, **act)
        slow = NTKKernel(depth=depth, weight_std=1.2, bias_std=bias_std, kind=kind, **act)
        slow.fast_path = False
        ref = slow.witness_grad(x, y, a)
        assert _max_rel_err(fast.witness_grad(x, y, a), ref) < 1e-6
        assert _max_rel_err(fast.witness_grad(x, y), slow.witness_grad(x, y)) < 1e-6
        ref_pairs = slow.grad_x(x, y)
        got_pairs = fast.grad_x(x, y)
        assert torch.isfinite(got_pairs).all()
        # per pair, each scaled by its own pair's size, so self-terms and near pairs count in full
        size = ref_pairs.norm(dim=-1)
        err = (got_pairs - ref_pairs).norm(dim=-1) / size.clamp_min(1e-3 * size.max())
        assert err.max() < 1e-6
        xr = x.clone().requires_grad_(True)  # x.requires_grad takes the (differentiable) autograd path
        assert _max_rel_err(fast.witness_grad(xr, y, a).detach(), ref) < 1e-9


def test_fast_path_keeps_the_subgradient_at_coincidence():
    """x = y exactly: the fast path returns the autograd path's subgradient (dθ/dρ := 0)."""
    y = points(8, 2, 54)
    for bias_std in (0.0, 1.0):
        fast = NTKKernel(depth=3, activation="relu", weight_std=1.4, bias_std=bias_std)
        slow = NTKKernel(depth=3, activation="relu", weight_std=1.4, bias_std=bias_std)
        slow.fast_path = False
        idx = torch.arange(8)
        torch.testing.assert_close(fast.grad_x(y, y)[idx, idx], slow.grad_x(y, y)[idx, idx], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fast.witness_grad(y, y), slow.witness_grad(y, y), rtol=1e-10, atol=1e-12)


def test_fast_path_at_the_origin_and_along_rays():
    """Zero-variance points (x = 0 without biases: ρ := 0) and parallel inputs, as the autograd path."""
    y = points(5, 2, 55)
    x = torch.cat([torch.zeros(1, 2, dtype=F64), 2.0 * y[:2], points(3, 2, 56)])
    yz = torch.cat([y, torch.zeros(1, 2, dtype=F64)])
    for act in FAST_ACTIVATIONS:
        fast, slow = NTKKernel(depth=3, bias_std=0.0, **act), NTKKernel(depth=3, bias_std=0.0, **act)
        slow.fast_path = False
        torch.testing.assert_close(fast.grad_x(x, yz), slow.grad_x(x, yz), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(fast.witness_grad(x, yz), slow.witness_grad(x, yz), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", FAST_ACTIVATIONS, ids=["relu", "leaky0.2", "erf"])
def test_fast_path_tiles_give_the_same_result(act, monkeypatch):
    x, y, a = _fast_case_points()
    k = NTKKernel(depth=3, bias_std=1.0, **act)
    ref = k.witness_grad(x, y, a)
    for budget in (1, 64, 300):  # 1: one pair per tile (queries and centres chunked)
        monkeypatch.setattr(K.BUDGETS, "tile", budget)
        for chunk_size in (None, 1, 5, 100):  # only the summation order changes (1e-5 pairs: ill-conditioned)
            assert _max_rel_err(k.witness_grad(x, y, a, chunk_size=chunk_size), ref) < 1e-10


@pytest.mark.parametrize("act", FAST_ACTIVATIONS, ids=["relu", "leaky0.2", "erf"])
def test_fast_values_and_witness_equal_the_autograd_path(act, monkeypatch):
    """k(x, y) and the witness without autograd Functions: the same values; weights that require
    grad (or x) keep the differentiable path."""
    x, y, a = _fast_case_points()
    fast, slow = NTKKernel(depth=3, bias_std=1.0, **act), NTKKernel(depth=3, bias_std=1.0, **act)
    slow.fast_path = False
    torch.testing.assert_close(fast(x, y), slow(x, y), rtol=1e-14, atol=0.0)
    ref = slow.witness(x, y, a)
    torch.testing.assert_close(fast.witness(x, y, a), ref, rtol=1e-12, atol=1e-14)
    monkeypatch.setattr(K.BUDGETS, "tile", 64)
    torch.testing.assert_close(fast.witness(x, y, a, chunk_size=3), ref, rtol=1e-12, atol=1e-14)
    ar = a.clone().requires_grad_(True)
    (dw,) = torch.autograd.grad(fast.witness(x, y, ar).sum(), ar)
    torch.testing.assert_close(dw, slow(x, y).sum(0), rtol=1e-12, atol=1e-14)
    (dg,) = torch.autograd.grad(fast.witness_grad(x, y, ar).sum(), ar)
    torch.testing.assert_close(dg, slow.grad_x(x, y).sum(dim=(0, 2)), rtol=1e-9, atol=1e-11)


def test_float32_keeps_the_pull_of_the_relu_ntk_near_a_target():
    """Near a centre the ReLU NTK's cusp pulls a particle in with a finite force; float32 ρ rounding used
    to snap it away within ~1e-2 (the pull fell from 0.30 to 0.0025 at δ = 1e-2 and particle flows froze)."""
    k = NTKKernel(depth=3, activation="relu", bias_std=1.0)
    y = torch.tensor([[4.6, 1.9]], dtype=torch.float64)
    u = y / y.norm()
    for delta in (3e-2, 1e-2, 1e-3):
        x = y + delta * u
        exact = k.witness_grad(x, y, torch.ones(1, dtype=torch.float64))
        single = k.witness_grad(x.float(), y.float(), torch.ones(1))
        assert float(exact.norm()) > 0.2  # the float64 pull stays finite
        assert torch.allclose(single.double(), exact, rtol=1e-3, atol=1e-4), (delta, single, exact)
        assert torch.allclose(k.witness(x.float(), y.float(), torch.ones(1)).double(),
                              k.witness(x, y, torch.ones(1, dtype=torch.float64)), rtol=1e-5)


@pytest.mark.parametrize("bias_std", [0.0, 1.0])
@pytest.mark.parametrize("act", FAST_ACTIVATIONS, ids=["relu", "leaky0.2", "erf"])
def test_float32_witness_grad_matches_float64_with_near_and_coincident_pairs(act, bias_std, monkeypatch):
    """float32 inputs: the bulk in float32, the pairs with |ρ₁| > 1 − NEAR_PAIR_TAU (near, coincident,
    and without biases antipodal) in float64; every row within float32 accuracy of the float64 result,
    and the near pairs do take the float64 branch (with it switched off the error is orders larger)."""
    g = gen(57)
    y = 2.0 * torch.randn(120, 2, generator=g, dtype=F64)
    x = torch.cat([y[:40] + 1e-3 * torch.randn(40, 2, generator=g, dtype=F64), -y[40:50],
                   2.0 * torch.randn(60, 2, generator=g, dtype=F64), y[:10]]).float().double()
    c = torch.cat([y.float().double(), x])
    w = (torch.randn(c.shape[0], generator=g, dtype=F64) / c.shape[0]).float().double()
    k = NTKKernel(depth=3, bias_std=bias_std, **act)
    ref = k.witness_grad(x, c, w)
    scale = ref.norm(dim=1).clamp_min(1e-2 * ref.norm(dim=1).max())

    def err() -> float:
        return ((k.witness_grad(x.float(), c.float(), w.float()).double() - ref).norm(dim=1) / scale).max().item()

    assert err() < 2e-4
    if act.get("activation") != "erf":  # erf is smooth at ρ = ±1 and always stays in float32
        monkeypatch.setattr(ntk_module, "NEAR_PAIR_TAU", 0.0)
        assert err() > 1e-2


def _can_compile() -> bool:
    import shutil

    from scoregan.objectives.kernels.ntk_fused import _probe

    return (shutil.which("gcc") is not None or shutil.which("cc") is not None) and _probe("cpu", F64) is None


@pytest.mark.parametrize("dtype,act,kind,depth", [(torch.float32, {"activation": "relu"}, "ntk", 3),
                                                  (F64, {"activation": "leaky_relu", "negative_slope": 0.2}, "nngp", 2)])
def test_compiled_tiles_equal_the_eager_fast_path(dtype, act, kind, depth):
    """NTKKernel(compile=True): the fused torch.compile tile (kernels.ntk_fused) gives the eager fast path's
    gradient, near and coincident pairs included (float32: those still in float64); erf and zero-variance
    inputs fall back to the eager path."""
    if not _can_compile():
        pytest.skip("torch.compile does not work here (it needs a C++ compiler on the CPU)")
    g = gen(58)
    y = 2.0 * torch.randn(90, 2, generator=g, dtype=F64)
    x = torch.cat([y[:30] + 1e-3 * torch.randn(30, 2, generator=g, dtype=F64), 2.0 * torch.randn(40, 2, generator=g,
                                                                                                   dtype=F64), y[:5]])
    c = torch.cat([y, x])
    w = torch.randn(c.shape[0], generator=g, dtype=F64) / c.shape[0]
    x, c, w = x.to(dtype), c.to(dtype), w.to(dtype)
    eager = NTKKernel(depth=depth, bias_std=1.0, kind=kind, **act)
    fused = NTKKernel(depth=depth, bias_std=1.0, kind=kind, compile=True, **act)
    ref, got = eager.witness_grad(x, c, w).double(), fused.witness_grad(x, c, w).double()
    scale = ref.norm(dim=1).clamp_min(1e-2 * ref.norm(dim=1).max())
    assert ((got - ref).norm(dim=1) / scale).max().item() < (1e-4 if dtype == torch.float32 else 1e-9)
    nobias = NTKKernel(depth=depth, bias_std=0.0, kind=kind, compile=True, **act)  # x = 0 has zero variance
    z = torch.cat([torch.zeros(1, 2, dtype=dtype), x[:4]])
    torch.testing.assert_close(nobias.witness_grad(z, c, w),
                               NTKKernel(depth=depth, bias_std=0.0, kind=kind, **act).witness_grad(z, c, w))
    with pytest.raises(ValueError, match="compile must be True or False, got 'yes'"):
        NTKKernel(compile="yes")

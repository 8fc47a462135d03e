"""IPM kernels: analytic gradients, chunked witness, (conditional) positive definiteness, the
kernel-smoothed score identity, and argument checks (scoregan.objectives.kernels)."""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scoregan.objectives import kernels as K
from scoregan.objectives.kernels import KERNELS, FusedSpec, Kernel, RadialKernel, kernel
from scoregan.objectives.kernels.tiling import tiles
from scoregan.scores import GaussianMixture
from tests.helpers import gen

F64 = torch.float64

# (name, params, d): every kind and every branch of the polyharmonic family.
CASES = [
    ("gaussian", {"bandwidth": 0.8}, 2),
    ("gaussian", {"bandwidth": "median"}, 2),
    ("gaussian", {"bandwidth": [0.3, 1.0, 3.0], "scale_weights": [0.2, 0.5, 0.3]}, 2),
    ("imq", {}, 2),
    ("imq", {"c": 0.5, "beta": -1.5}, 3),
    ("laplace", {"bandwidth": 0.7}, 2),
    ("energy", {}, 2),
    ("polyharmonic", {"order": 1, "dim": 3, "eps": 0.4}, 3),  # p = -1 (Coulomb in 3-D)
    ("polyharmonic", {"order": 1, "dim": 5, "eps": 0.5}, 2),  # p = -3
    ("polyharmonic", {"order": 2, "dim": 3}, 3),  # p = 1: -r
    ("polyharmonic", {"order": 3, "dim": 3}, 3),  # p = 3: r^3
    ("polyharmonic", {"order": 1, "dim": 2, "eps": 0.3}, 2),  # p = 0: -log r
    ("polyharmonic", {"order": 2, "dim": 2}, 2),  # p = 2: r^2 log r
    ("polyharmonic", {"order": 2, "dim": 2, "eps": 0.5}, 2),  # softened thin plate
    ("polyharmonic", {"order": 3, "dim": 2}, 2),  # p = 4: -r^4 log r
    ("polyharmonic", {"order": 3}, 3),  # dim from the data: p = 3
    ("coulomb", {"eps": 0.3}, 2),  # n = d = 2: -log
    ("coulomb", {"dim": 3, "eps": 0.3}, 3),
    ("coulomb", {"dim": 1, "eps": 0.5}, 2),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for n, p, _ in CASES]





def reference_phi(name: str, params: dict, d: int, r: torch.Tensor) -> torch.Tensor:
    """The kernels written independently of the module, as functions of the distance r."""
    if name == "gaussian":
        h = params["bandwidth"]
        if isinstance(h, list):
            return sum(w * torch.exp(-(r**2) / (2 * b**2)) for b, w in zip(h, params["scale_weights"]))
        return torch.exp(-(r**2) / (2 * h**2))
    if name == "imq":
        return (params.get("c", 1.0) ** 2 + r**2) ** params.get("beta", -0.5)
    if name == "laplace":
        return torch.exp(-r / params["bandwidth"])
    if name == "energy":
        return -r
    n = params.get("dim") or d
    eps = params.get("eps", 0.0)
    rho = torch.sqrt(r**2 + eps**2)
    if name == "coulomb":
        return {1: -rho, 2: -torch.log(rho)}.get(n, rho ** (2.0 - n))
    p = 2 * params["order"] - n
    table = {-1: 1 / rho, -3: rho**-3, 1: -rho, 3: rho**3}
    if p in table:
        return table[p]
    safe = torch.where(rho > 0, rho, torch.ones_like(rho))
    log = torch.where(rho > 0, torch.log(safe), torch.zeros_like(rho))
    return {0: -log, 2: rho**2 * log, 4: -(rho**4) * log}[p]


# ------------------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("name,params,d", CASES, ids=IDS)
def test_values_match_independent_formula(name, params, d):
    x = torch.randn(6, d, generator=gen(1), dtype=F64)
    y = torch.randn(9, d, generator=gen(2), dtype=F64) + 0.5
    k = kernel(name, **params)
    if params.get("bandwidth") == "median":
        pooled = torch.cat([y, x])
        params = {"bandwidth": torch.pdist(pooled).median().item()}
    expected = reference_phi(name, params, d, torch.cdist(x, y))
    torch.testing.assert_close(k(x, y), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,params,d", CASES, ids=IDS)
def test_grad_x_is_autograd_of_values_and_finite_at_coincidence(name, params, d):
    x = torch.randn(5, d, generator=gen(3), dtype=F64)
    y = torch.randn(7, d, generator=gen(4), dtype=F64) * 1.3
    k = kernel(name, **params)
    if params.get("bandwidth") == "median":  # autograd must see the same (resolved) bandwidth
        k = k.resolve(x, y)
    jac = torch.autograd.functional.jacobian(lambda z: k(z, y), x)  # (N, M, N, d)
    auto = torch.einsum("nmnd->nmd", jac)
    analytic = k.grad_x(x, y)
    assert analytic.shape == (5, 7, d)
    torch.testing.assert_close(analytic, auto, rtol=1e-8, atol=1e-12)

    # x == y: finite everywhere, and the self-pairs are exactly 0 for radial kernels.
    self_grad = k.grad_x(y, y)
    assert torch.isfinite(self_grad).all()
    assert torch.equal(torch.diagonal(self_grad, dim1=0, dim2=1), torch.zeros(d, 7, dtype=F64))
    kr = k.resolve(y, y)
    assert torch.isfinite(kr.profile_grad(torch.zeros(3, dtype=F64))).all()


@pytest.mark.parametrize("name,params,d", CASES, ids=IDS)
def test_profile_grad_is_derivative_of_profile(name, params, d):
    k = kernel(name, **params).resolve(torch.zeros(4, d, dtype=F64), torch.ones(3, d, dtype=F64))
    s = torch.linspace(0.01, 9.0, 50, dtype=F64, requires_grad=True)
    (auto,) = torch.autograd.grad(k.profile(s).sum(), s)
    torch.testing.assert_close(k.profile_grad(s.detach()), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,params,d", CASES, ids=IDS)
def test_witness_grad_is_weighted_sum_of_grad_x_and_autograd_of_witness(name, params, d):
    x = torch.randn(11, d, generator=gen(5), dtype=F64)
    y = torch.randn(13, d, generator=gen(6), dtype=F64) + 0.3
    a = torch.randn(13, generator=gen(7), dtype=F64)
    k = kernel(name, **params)
    wg = k.witness_grad(x, y, a, backend="torch")
    assert wg.shape == (11, d)
    torch.testing.assert_close(wg, torch.einsum("nmd,m->nd", k.grad_x(x, y), a), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(k.witness(x, y, a), k(x, y) @ a, rtol=1e-10, atol=1e-12)

    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(k.witness(xr, y, a).sum(), xr)
    torch.testing.assert_close(wg, auto, rtol=1e-8, atol=1e-12)
    # Default weights are 1/M.
    torch.testing.assert_close(k.witness_grad(x, y), k.grad_x(x, y).mean(dim=1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d", [2, 8])
@pytest.mark.parametrize("name,params", [("energy", {}), ("laplace", {"bandwidth": 2.0}),
                                         ("polyharmonic", {"order": 2, "dim": 2}),
                                         ("polyharmonic", {"order": 2, "dim": 3}),
                                         ("gaussian", {"bandwidth": 3.0})])
def test_particles_against_themselves_float32(name, params, d):
    """x is the centre set (particle flows): the expansion's rounding at x == y must not leak.

    Two clusters far from their common mean: at d = 8 the expansion gives s ≈ 1e-4 instead of 0 on
    the diagonal, and for singular kernels a garbage unit vector; the cancellation threshold removes
    it (distinct points here are ≥ 0.5 apart, far above the threshold distance ≈ 0.1 at this norm).
    At d = 2 the exact differences give s = 0 there.
    """
    grid = torch.cartesian_prod(torch.arange(12.0), torch.arange(12.0)) * 0.7  # spacing 0.7 ≫ threshold
    grid = grid + (torch.rand(144, 2, generator=gen(8)) - 0.5) * 0.2
    grid = torch.cat([grid, torch.zeros(144, d - 2)], dim=1)
    far = torch.zeros(d)
    far[0], far[1] = 50.0, -20.0
    x = torch.cat([grid + far, grid - far]).float()
    k = kernel(name, **params)
    got = k.witness_grad(x, x, backend="torch").double()
    ref = k.grad_x(x.double(), x.double()).mean(dim=1)
    assert (got - ref).abs().max() <= 5e-4 * ref.abs().max()


@pytest.mark.parametrize("name,params", [("laplace", {"bandwidth": 0.1}), ("energy", {}),
                                         ("polyharmonic", {"order": 2, "dim": 2})])
def test_near_pairs_interact_exactly_in_low_dimension_float32(name, params):
    """d ≤ EXACT_MAX_D: S from exact differences, so distinct pairs 1e-3…1e-2 apart at norms ≈ 11
    (below the expansion's float32 threshold distance ≈ 1.3e-2, where a laplace kernel of bandwidth
    0.1 lost ≈ 10% of the gradient) match the float64 values and gradients."""
    g = gen(31)
    far = torch.tensor([10.0, -5.0])
    y = torch.cat([torch.randn(40, 2, generator=g) * 0.3 + far, torch.randn(40, 2, generator=g) * 0.3 - far])
    step = torch.randn(30, 2, generator=g)
    x = y[:60:2] + step / step.norm(dim=1, keepdim=True) * 10 ** (-3 + torch.rand(30, 1, generator=g))
    a = torch.randn(80, generator=g) / 80
    k = kernel(name, **params)
    ref = torch.einsum("nmd,m->nd", k.grad_x(x.double(), y.double()), a.double())
    got = k.witness_grad(x, y, a, backend="torch", chunk_size=17).double()
    assert ((got - ref).norm(dim=1).max() / ref.norm(dim=1).max()).item() < 1e-5
    vals = k(x, y).double()
    torch.testing.assert_close(vals, k(x.double(), y.double()), rtol=1e-5, atol=1e-5 * vals.abs().max().item())
    torch.testing.assert_close(k.witness(x, y, a).double(), k(x.double(), y.double()) @ a.double(),
                               rtol=1e-5, atol=1e-5 * (vals.abs().max() * a.abs().sum()).item())


@pytest.mark.parametrize("name,params,d", CASES, ids=IDS)
def test_self_pairs_are_exactly_coincident_float32(name, params, d):
    """k(x_i, x_i) = φ(0) exactly although the float32 expansion leaves S_ii up to ~1e-2 here."""
    x = torch.randn(50, 64, generator=gen(25)) + torch.linspace(-30.0, 30.0, 50)[:, None]
    if name in ("polyharmonic", "coulomb"):
        params = {"dim": d, **params}  # the case's dimension, not 64
    k = kernel(name, **params).resolve(x, x)
    phi0 = k.profile(torch.zeros(1))
    assert torch.equal(k(x, x).diagonal(), phi0.expand(50))
    a = torch.zeros(50)
    a[7] = 1.0
    assert k.witness(x, x, a)[7] == phi0[0]


# ------------------------------------------------------------------------- chunking


@pytest.mark.parametrize("name,params,d", [CASES[i] for i in (0, 2, 3, 6, 10, 12, 16)],
                         ids=[IDS[i] for i in (0, 2, 3, 6, 10, 12, 16)])
@pytest.mark.parametrize("chunk_size", [1, 7, 16, 53, 1000])
def test_chunked_equals_one_chunk_float32(name, params, d, chunk_size, monkeypatch):
    x = torch.randn(37, d, generator=gen(9)) * 1.5
    y = torch.randn(53, d, generator=gen(10))
    a = torch.randn(53, generator=gen(11)) / 53
    k = kernel(name, **params)
    ref_w, ref_g = k.witness(x, y, a), k.witness_grad(x, y, a)
    scale_w, scale_g = ref_w.abs().max().item(), ref_g.abs().max().item()
    for budget in (K.BUDGETS.tile, 64):  # 64: the queries are chunked as well
        monkeypatch.setattr(K.BUDGETS, "tile", budget)
        w = k.witness(x, y, a, chunk_size=chunk_size)
        g = k.witness_grad(x, y, a, chunk_size=chunk_size, backend="torch")
        assert w.dtype == torch.float32 and g.shape == (37, d)
        assert (w - ref_w).abs().max() <= 1e-6 * max(scale_w, 1.0)
        assert (g - ref_g).abs().max() <= 1e-6 * max(scale_g, 1.0)


def test_tiles_respect_budget():
    for n, m, cs in [(37, 53, None), (10**6, 10**5, None), (10**6, 10**6, 1000), (5, 3, 1000)]:
        bn, bm = tiles(n, m, cs)
        assert 1 <= bn <= n and 1 <= bm <= m and bn * bm <= max(K.BUDGETS.tile, bm)
    assert tiles(37, 53, None) == (37, 53)


class _QuadraticKernel(Kernel):
    """A non-radial kernel (1 + x·y)² to exercise the generic tiled path of :class:`Kernel`."""

    name = "quadratic"

    def __call__(self, x, y):
        return (1 + x @ y.T) ** 2

    def grad_x(self, x, y):
        return 2 * (1 + x @ y.T)[..., None] * y[None, :, :]


def test_generic_kernel_path(monkeypatch):
    x = torch.randn(9, 3, generator=gen(12), dtype=F64)
    y = torch.randn(14, 3, generator=gen(13), dtype=F64)
    a = torch.randn(14, generator=gen(14), dtype=F64)
    k = _QuadraticKernel()
    monkeypatch.setattr(K.BUDGETS, "tile", 20)
    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad((k(xr, y) @ a).sum(), xr)
    for cs in (None, 1, 4):
        torch.testing.assert_close(k.witness(x, y, a, chunk_size=cs), k(x, y) @ a)
        torch.testing.assert_close(k.witness_grad(x, y, a, chunk_size=cs), auto)
    with pytest.raises(ValueError, match="backend='triton'.*no fused spec"):
        k.witness_grad(x, y, a, backend="triton")


# ------------------------------------------------------------------------- positive definiteness


def _moment_null_basis(z: torch.Tensor, q: int) -> torch.Tensor:
    """Orthonormal basis (n, n − #monomials) of {a : Σ_i a_i P(z_i) = 0 for all deg P < q}."""
    n, d = z.shape
    if q == 0:
        return torch.eye(n, dtype=z.dtype)
    cols = [torch.ones(n, dtype=z.dtype)]
    for deg in range(1, q):
        for idx in itertools.combinations_with_replacement(range(d), deg):
            cols.append(torch.prod(z[:, list(idx)], dim=1))
    p = torch.stack(cols, dim=1)
    u, _, _ = torch.linalg.svd(p, full_matrices=True)
    return u[:, p.shape[1]:]


EXPECTED_ORDER = [0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 1, 2, 2, 3, 2, 1, 0, 1]


@pytest.mark.parametrize("case,q", list(zip(CASES, EXPECTED_ORDER)), ids=IDS)
def test_conditionally_positive_definite(case, q):
    """λ_min of K on {a : moments of degree < q vanish} is ≥ 0 (Micchelli; module doc)."""
    name, params, d = case
    z = torch.rand(40, d, generator=gen(15), dtype=F64) * 4 - 2
    k = kernel(name, **params)
    assert k.cpd_order(z) == q
    gram = k(z, z)
    basis = _moment_null_basis(z, q)
    eig = torch.linalg.eigvalsh(basis.T @ gram @ basis)
    tiny = 1e-10 * gram.abs().max()
    assert eig.min() >= -tiny
    # A random admissible a: the quadratic form is strictly positive (strict CPD).
    a = basis @ torch.randn(basis.shape[1], generator=gen(16), dtype=F64)
    assert a @ gram @ a > tiny
    if q >= 1:  # the moment conditions are needed: without them K has a negative direction
        weaker = _moment_null_basis(z, q - 1)
        assert torch.linalg.eigvalsh(weaker.T @ gram @ weaker).min() < -tiny


# ------------------------------------------------------------------------- the witness flow


def _mmd2(k, x, y):
    z = torch.cat([x, y])
    a = torch.cat([torch.full((len(x),), 1 / len(x), dtype=x.dtype), torch.full((len(y),), -1 / len(y), dtype=x.dtype)])
    return a @ k(z, z) @ a


def _match_moments(x, y, q):
    """x moved so its moments of degree < q equal those of y (q ≤ 3)."""
    if q <= 1:
        return x
    if q == 2:
        return x - x.mean(0) + y.mean(0)
    lx, ly = torch.linalg.cholesky(torch.cov(x.T, correction=0)), torch.linalg.cholesky(torch.cov(y.T, correction=0))
    return (x - x.mean(0)) @ torch.linalg.inv(lx).T @ ly.T + y.mean(0)


@pytest.mark.parametrize("name,params,d", CASES, ids=IDS)
def test_witness_flow_moves_particles_toward_data(name, params, d):
    """One Euler step x ← x + η ∇D̂(x), D̂ = κ*p̂_d − κ*p̂_g (particles included as centres).

    It is gradient descent on the particles for E = MMD²_κ (so E drops for every kernel), and for
    a kernel of CPD order q it decreases the Gaussian MMD when the moments of degree < q agree;
    the opposite step increases it (so a sign error in φ fails).
    """
    g = gen(17)
    y = torch.cat([torch.randn(32, d, generator=g, dtype=F64) * 0.5 + 1.5,
                   torch.randn(32, d, generator=g, dtype=F64) * 0.5 - 1.5])
    x = torch.randn(48, d, generator=g, dtype=F64) * 0.6 + 0.8
    k = kernel(name, **params)
    x = _match_moments(x, y, k.cpd_order(x))
    centres = torch.cat([y, x])
    a = torch.cat([torch.full((64,), 1 / 64, dtype=F64), torch.full((48,), -1 / 48, dtype=F64)])
    v = k.witness_grad(x, centres, a)
    step = 0.05 / v.norm(dim=1).max()
    gauss = kernel("gaussian", bandwidth=1.0)
    own_before, gauss_before = _mmd2(k, x, y), _mmd2(gauss, x, y)
    assert _mmd2(k, x + step * v, y) < own_before
    assert _mmd2(gauss, x + step * v, y) < 0.995 * gauss_before
    assert _mmd2(gauss, x - step * v, y) > gauss_before


def test_order_two_kernels_do_not_attract_across_different_means():
    """Documented limitation: under φ = r³ (CPD order 2) two Dirac masses repel."""
    k = kernel("polyharmonic", order=3, dim=3)
    x, y = torch.zeros(1, 3, dtype=F64), torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    v = k.witness_grad(x, torch.cat([y, x]), torch.tensor([1.0, -1.0], dtype=F64))
    assert v[0, 0] < 0  # pointing away from the data point


# ------------------------------------------------------------------------- smoothed scores


def _mixtures():
    p_d = GaussianMixture(torch.tensor([[-1.5, 0.0], [1.5, 0.5], [0.0, 2.0]], dtype=F64),
                          torch.tensor([0.5, 0.7, 0.4], dtype=F64), torch.tensor([0.3, 0.5, 0.2], dtype=F64))
    p_g = GaussianMixture(torch.tensor([[0.5, -0.5], [-0.5, 1.0]], dtype=F64), torch.tensor([0.8, 0.6], dtype=F64))
    return p_d, p_g


SCORE_CASES = [c for c in CASES if c[2] == 2]
N_MC = 40000


@pytest.fixture(scope="module")
def mc_samples():
    """y ~ p_d and y ~ p_g (N_MC each) with their exact scores, drawn once for the module."""
    p_d, p_g = _mixtures()
    y_d, y_g = p_d.sample(N_MC, gen(18)), p_g.sample(N_MC, gen(19))
    return (y_d, p_d.score(y_d)), (y_g, p_g.score(y_g))


@pytest.mark.parametrize("name,params,d", SCORE_CASES, ids=[i for c, i in zip(CASES, IDS) if c[2] == 2])
def test_witness_gradient_is_kernel_smoothed_score_difference(name, params, d, mc_samples):
    """∇(κ*(p_d − p_g)) = κ*(p_d s_d) − κ*(p_g s_g) (integration by parts), by Monte Carlo.

    Estimator A: witness_grad with centres y ~ p_d (+1/n) and y ~ p_g (−1/n). Estimator B:
    mean_j k(x, y_j) s(y_j) with exact mixture scores. Per sample the two estimators share y_j,
    so the tolerance is 5 standard errors of the paired difference; the signal is at least 8
    standard errors, so a wrong factor or sign in ∇ₓk fails.
    """
    (y_d, s_d), (y_g, s_g) = mc_samples
    n = N_MC
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5], [2.0, -1.0], [0.5, 2.5]], dtype=F64)
    centres = torch.cat([y_d, y_g])
    k = kernel(name, **params).resolve(x, centres)
    a = torch.cat([torch.full((n,), 1 / n, dtype=F64), torch.full((n,), -1 / n, dtype=F64)])
    est_a = k.witness_grad(x, centres, a)
    est_b, se2 = 0.0, 0.0
    for y, score, sign in ((y_d, s_d, 1.0), (y_g, s_g, -1.0)):
        smoothed = k(x, y)[..., None] * score[None]  # (Nq, n, d)
        est_b = est_b + sign * smoothed.mean(dim=1)
        se2 = se2 + (k.grad_x(x, y) - smoothed).var(dim=1) / n
    se = se2.sqrt()
    assert ((est_a - est_b).abs() <= 5 * se).all()
    assert est_a.abs().max() > 8 * se.max()


@pytest.mark.parametrize("bandwidth", [0.5, 1.3])
def test_gaussian_witness_matches_closed_form(bandwidth):
    """(κ*p)(x) = (2πh²)^{d/2} p_h(x) with p_h = p * N(0, h²I); its gradient is that times s_h."""
    p_d, p_g = _mixtures()
    n, h = 20000, bandwidth
    y_d, y_g = p_d.sample(n, gen(20)), p_g.sample(n, gen(21))
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5], [2.0, -1.0]], dtype=F64)
    k = kernel("gaussian", bandwidth=h)
    c = (2 * math.pi * h**2)
    exact_w = c * (p_d.perturbed(h).log_prob(x).exp() - p_g.perturbed(h).log_prob(x).exp())
    exact_g = c * (p_d.perturbed(h).log_prob(x).exp()[:, None] * p_d.perturbed(h).score(x)
                   - p_g.perturbed(h).log_prob(x).exp()[:, None] * p_g.perturbed(h).score(x))
    centres = torch.cat([y_d, y_g])
    a = torch.cat([torch.full((n,), 1 / n, dtype=F64), torch.full((n,), -1 / n, dtype=F64)])
    se_w = (k(x, y_d).var(dim=1) / n + k(x, y_g).var(dim=1) / n).sqrt()
    se_g = (k.grad_x(x, y_d).var(dim=1) / n + k.grad_x(x, y_g).var(dim=1) / n).sqrt()
    assert ((k.witness(x, centres, a) - exact_w).abs() <= 5 * se_w).all()
    assert ((k.witness_grad(x, centres, a) - exact_g).abs() <= 5 * se_g).all()
    assert exact_g.abs().max() > 20 * se_g.max()


# ------------------------------------------------------------------------- specs


def test_fused_specs_are_resolved_numbers():
    x = torch.randn(30, 2, generator=gen(22), dtype=F64)
    y = torch.randn(20, 2, generator=gen(23), dtype=F64)
    med = torch.pdist(torch.cat([y, x])).median().item()
    expect = {
        ("gaussian", ()): FusedSpec("gaussian", (1.0,)),
        ("gaussian", (("bandwidth", "median"),)): FusedSpec("gaussian", (med,)),
        ("gaussian", (("bandwidth", (1.0, 2.0)),)): FusedSpec("gaussian_mix", (1.0, 2.0, 0.5, 0.5)),
        ("imq", ()): FusedSpec("imq", (1.0, -0.5)),
        ("laplace", (("bandwidth", 2.0),)): FusedSpec("laplace", (2.0,)),
        ("energy", ()): FusedSpec("energy", ()),
        ("polyharmonic", (("order", 3), ("eps", 0.5))): FusedSpec("poly_log", (4.0, -1.0, 0.25)),  # dim = d = 2
        ("polyharmonic", (("order", 2), ("dim", 3))): FusedSpec("poly_power", (1.0, -1.0, 0.0)),
        ("polyharmonic", (("order", 3), ("dim", 3))): FusedSpec("poly_power", (3.0, 1.0, 0.0)),
        ("coulomb", (("eps", 0.5),)): FusedSpec("poly_log", (0.0, -1.0, 0.25)),
        ("coulomb", (("dim", 4), ("eps", 0.5))): FusedSpec("poly_power", (-2.0, 1.0, 0.25)),
    }
    for (name, params), spec in expect.items():
        assert kernel(name, **dict(params)).fused_spec(x, y) == spec, (name, params)


def test_median_bandwidth_is_deterministic_subsample():
    z = torch.randn(3000, 2, generator=gen(24), dtype=F64)
    h1 = K.median_bandwidth(z[:1000], z[1000:])
    idx = torch.linspace(0, 2999, 1024).round().long()
    pooled = torch.cat([z[1000:], z[:1000]])[idx]
    assert h1 == pytest.approx(torch.pdist(pooled).median().item(), rel=1e-12)
    assert K.median_bandwidth(torch.zeros(3, 2), torch.zeros(2, 2)) == 1.0


def test_dtype_and_device_follow_input():
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(4, 2, dtype=dtype)
        k = kernel("imq")
        assert k(x, x).dtype == dtype and k.witness_grad(x, x).dtype == dtype and k.witness(x, x).dtype == dtype


# ------------------------------------------------------------------------- arguments and backends


def test_bad_arguments_name_the_argument():
    x, y = torch.randn(4, 2), torch.randn(5, 3)
    k = kernel("gaussian")
    with pytest.raises(ValueError, match="centres"):
        k.witness_grad(x, y)
    with pytest.raises(ValueError, match="y"):
        k(x, y)
    with pytest.raises(ValueError, match="x must have shape"):
        k.witness(torch.randn(4), y)
    with pytest.raises(ValueError, match="weights"):
        k.witness(x, torch.randn(5, 2), torch.ones(4))
    with pytest.raises(ValueError, match="bandwidth"):
        kernel("gaussian", bandwidth=-1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        kernel("gaussian", bandwidth="mediann")
    with pytest.raises(ValueError, match="bandwidth"):
        kernel("gaussian", bandwidth=[1.0, 0.0])
    with pytest.raises(ValueError, match="scale_weights"):
        kernel("gaussian", bandwidth=[1.0, 2.0], scale_weights=[1.0])
    with pytest.raises(ValueError, match="bandwidth"):
        kernel("laplace", bandwidth=0)
    with pytest.raises(ValueError, match="beta"):
        kernel("imq", beta=0.5)
    with pytest.raises(ValueError, match="eps"):
        kernel("polyharmonic", order=1, dim=3)  # p = -1 needs eps > 0
    with pytest.raises(ValueError, match="eps"):
        kernel("polyharmonic", order=1).witness_grad(torch.randn(4, 2), torch.randn(3, 2))  # p = 0 at call time
    with pytest.raises(ValueError, match="eps"):
        kernel("coulomb")
    with pytest.raises(ValueError, match="order"):
        kernel("polyharmonic", order=0)
    with pytest.raises(ValueError, match="did you mean 'gaussian'"):
        kernel("gausian")
    with pytest.raises(ValueError, match="did you mean 'bandwidth'"):
        kernel("gaussian", bandwith=1.0)
    z = torch.randn(4, 2)
    with pytest.raises(ValueError, match="backend"):
        k.witness_grad(z, z, backend="cuda")
    with pytest.raises(ValueError, match="precision"):
        k.witness_grad(z, z, precision="fp16")
    with pytest.raises(ValueError, match="chunk_size"):
        k.witness(z, z, chunk_size=0)
    with pytest.raises(ValueError, match="dtype"):
        k.witness(z, z.double())
    with pytest.raises(ValueError, match="overflows torch.float32.*eps"):  # 0.09^-128 at x = y
        kernel("coulomb", eps=0.3).witness_grad(torch.randn(3, 256), torch.randn(4, 256))
    assert torch.isfinite(kernel("coulomb", eps=0.3).witness_grad(torch.randn(3, 256).double(),
                                                                  torch.randn(4, 256).double())).all()
    with pytest.raises(ValueError, match="resolve"):
        kernel("gaussian", bandwidth="median").profile(torch.ones(3))
    radial = {"gaussian", "imq", "laplace", "energy", "polyharmonic", "coulomb"}
    assert set(KERNELS) == radial | {"ntk"}
    assert all(isinstance(kernel(n, **({"eps": 1.0} if n == "coulomb" else {})), RadialKernel) for n in radial)


def test_triton_backend_without_fused_module_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "scoregan.objectives.kernels.triton_kernels", None)  # import fails
    z = torch.randn(5, 2)
    k = kernel("gaussian")
    with pytest.raises(ValueError, match="backend='triton'.*triton_kernels"):
        k.witness_grad(z, z, backend="triton")
    # "auto" on the CPU (or without the module) is the torch path.
    torch.testing.assert_close(k.witness_grad(z, z, backend="auto"), k.witness_grad(z, z, backend="torch"))
    torch.testing.assert_close(k.witness_grad(z, z, precision="tf32"), k.witness_grad(z, z, precision="ieee"))


_FUSED = Path(__file__).resolve().parents[3] / "scoregan" / "objectives" / "kernels" / "triton_kernels.py"


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.skipif(not _FUSED.exists(), reason="scoregan/objectives/kernels/triton_kernels.py does not exist")
def test_triton_interpreter_matches_torch_path():
    """The fused kernel under TRITON_INTERPRET=1 (CPU) equals the torch path (a subprocess, since
    the interpreter is chosen when triton is first imported)."""
    code = """
import torch
from scoregan.objectives.kernels import kernel
g = torch.Generator().manual_seed(0)
x = torch.randn(9, 3, generator=g); y = torch.randn(13, 3, generator=g)
y = torch.cat([y, x[:4], x[4:8] + 1e-3])  # centres on queries (self-pairs) and 1.7e-3 from them
a = torch.randn(21, generator=g) / 21
for name, p in [("gaussian", {"bandwidth": 1.1}), ("gaussian", {"bandwidth": [0.5, 2.0]}), ("imq", {}),
                ("laplace", {}), ("energy", {}), ("polyharmonic", {"order": 3}),
                ("polyharmonic", {"order": 2, "dim": 2}), ("coulomb", {"eps": 0.3})]:
    k = kernel(name, **p)
    ref = k.witness_grad(x, y, a, backend="torch")
    got = k.witness_grad(x, y, a, backend="triton")
    err = (got - ref).abs().max().item() / max(ref.abs().max().item(), 1.0)
    assert err < 1e-5, (name, p, err)
print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[3]
    env["PYTHONPATH"] = f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("d", [2, 16])
def test_cuda_paths_match_float64(d):
    """On CUDA: torch and auto (fused) backends, ieee and tf32, against a float64 reference."""
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(500, d, device="cuda", generator=g)
    y = torch.cat([torch.randn(700, d, device="cuda", generator=g) + 0.3, x[:100]])
    a = torch.rand(800, device="cuda", generator=g) / 800
    flag = torch.backends.cuda.matmul.fp32_precision
    for name, params, tf32_ok in [("gaussian", {"bandwidth": 1.1}, True), ("imq", {}, True),
                                  ("energy", {}, False), ("polyharmonic", {"order": 2, "dim": 2}, False)]:
        k = kernel(name, **params)
        ref = k.witness_grad(x.double(), y.double(), a.double(), backend="torch")
        for backend in ("torch", "auto"):
            for precision in ("ieee", "tf32") if tf32_ok else ("ieee",):
                got = k.witness_grad(x, y, a, backend=backend, precision=precision)
                assert got.device.type == "cuda" and got.dtype == torch.float32
                err = (got.double() - ref).abs().max() / ref.abs().max()
                assert err < (1e-4 if precision == "ieee" else 5e-3), (name, backend, precision, err.item())
    assert torch.backends.cuda.matmul.fp32_precision == flag


# ------------------------------------------------------------------------- kernel_witness


def _gaussian_reference(x, centres, weights, h):
    """Σ_j a_j exp(−‖x − y_j‖² / (2h²)) in float64 from exact differences (N,)."""
    s = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return torch.exp(-s / (2 * h * h)) @ weights


@pytest.mark.parametrize("d", [3, 7])  # exact differences and the expansion
def test_kernel_witness_value_and_grad_equal_a_float64_reference(d):
    p = torch.randn(11, d, generator=gen(40), dtype=F64)
    q = torch.randn(8, d, generator=gen(41), dtype=F64) + 0.5
    x = torch.randn(9, d, generator=gen(42), dtype=F64)
    alpha, beta = torch.rand(11, generator=gen(43), dtype=F64), torch.rand(8, generator=gen(44), dtype=F64)
    h = K.median_bandwidth(q, p)  # pooled [p; q], as resolve_kernel(kernel, negative, positive)
    w = K.kernel_witness(kernel("gaussian", bandwidth="median"), p, q, alpha, beta)
    assert isinstance(w, K.Witness) and w.kernel.bandwidth == h and w.dim == d
    centres, a = torch.cat([p, q]), torch.cat([alpha, -beta])
    torch.testing.assert_close(w.value(x), _gaussian_reference(x, centres, a, h), rtol=1e-12, atol=1e-14)
    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(_gaussian_reference(xr, centres, a, h).sum(), xr)
    torch.testing.assert_close(w.grad(x, backend="torch"), auto, rtol=1e-10, atol=1e-12)
    # uniform weights by default: +1/M_p, −1/M_n
    u = K.kernel_witness(kernel("gaussian", bandwidth=h), p, q)
    a_u = torch.cat([torch.full((11,), 1 / 11, dtype=F64), torch.full((8,), -1 / 8, dtype=F64)])
    torch.testing.assert_close(u.value(x), _gaussian_reference(x, centres, a_u, h), rtol=1e-12, atol=1e-14)
    # positive terms only, with the kernel still resolved from both samples
    only = K.kernel_witness(kernel("gaussian", bandwidth="median"), p, q, alpha, negative_centres=False)
    torch.testing.assert_close(only.value(x), _gaussian_reference(x, p, alpha, h), rtol=1e-12, atol=1e-14)


def test_kernel_witness_is_differentiable_in_the_samples_for_a_gradient_penalty():
    p = torch.randn(6, 5, generator=gen(45), dtype=F64).requires_grad_(True)
    q = torch.randn(7, 5, generator=gen(46), dtype=F64).requires_grad_(True)
    x = torch.randn(4, 5, generator=gen(47), dtype=F64).requires_grad_(True)
    h = 1.3
    w = K.kernel_witness(kernel("gaussian", bandwidth=h), p, q)
    a = torch.cat([torch.full((6,), 1 / 6, dtype=F64), torch.full((7,), -1 / 7, dtype=F64)])

    def penalty(value):
        (gx,) = torch.autograd.grad(value.sum(), x, create_graph=True)
        return ((gx.norm(dim=1) - 1) ** 2).mean()

    got = torch.autograd.grad(penalty(w.value(x)), (p, q))
    want = torch.autograd.grad(penalty(_gaussian_reference(x, torch.cat([p, q]), a, h)), (p, q))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_kernel_witness_median_bandwidth_is_independent_of_the_queries():
    p = torch.randn(30, 2, generator=gen(48))
    q = torch.randn(25, 2, generator=gen(49)) * 2
    x = torch.randn(40, 2, generator=gen(50)) * 3
    w = K.kernel_witness(kernel("gaussian", bandwidth="median"), p, q)
    fixed = K.kernel_witness(kernel("gaussian", bandwidth=K.median_bandwidth(q, p)), p, q)
    torch.testing.assert_close(w.value(x[:5]), w.value(x)[:5])
    torch.testing.assert_close(w.grad(x[:5]), w.grad(x)[:5])
    torch.testing.assert_close(w.value(x), fixed.value(x))
    torch.testing.assert_close(w.grad(x), fixed.grad(x))


def test_kernel_witness_bad_input_names_the_argument():
    p, q = torch.randn(4, 3, dtype=F64), torch.randn(5, 3, dtype=F64)
    k = kernel("gaussian")
    with pytest.raises(ValueError, match="negative_weights must be non-negative"):
        K.kernel_witness(k, p, q, negative_weights=-torch.ones(5, dtype=F64))
    with pytest.raises(ValueError, match="positive_weights has 3 entries"):
        K.kernel_witness(k, p, q, positive_weights=torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="generated"):
        K.kernel_witness(k, p, q[:, :2], names=("data", "generated"))

"""ODE sampling and change-of-variables log-likelihoods against closed-form Gaussian flows."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan.sampling.ode import (
    divergence_exact,
    divergence_hutchinson,
    integrate,
    log_likelihood,
)

F64 = torch.float64
MU = torch.tensor([1.5, -0.5], dtype=F64)
SCALE = torch.tensor([0.4, 2.0], dtype=F64)


def gaussian_bridge(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The velocity whose flow maps x0 to x_t = a(t) x0 + t μ, a(t) = 1 + t (s − 1): N(0, I) → N(μ, diag s²)."""
    mu, s = MU.to(x), SCALE.to(x)
    a = 1 + t * (s - 1)
    return (s - 1) / a * (x - t * mu) + mu


def std_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)


def target_log_prob(x: torch.Tensor) -> torch.Tensor:
    return torch.distributions.Normal(MU.to(x), SCALE.to(x)).log_prob(x).sum(1)


def test_integrate_reaches_the_closed_form_endpoint():
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    exact = SCALE * x0 + MU
    sol = integrate(gaussian_bridge, x0, method="dopri5", atol=1e-9, rtol=1e-9)
    assert (sol.x - exact).abs().max() < 1e-7 and sol.nfe > 6
    rk4 = integrate(gaussian_bridge, x0, method="rk4", steps=50)
    assert (rk4.x - exact).abs().max() < 1e-6 and rk4.nfe == 4 * 50
    euler = integrate(gaussian_bridge, x0, method="euler", steps=3)
    assert euler.nfe == 3 and (euler.x - exact).abs().max() < 1e-12  # straight paths: Euler is exact


def test_euler_is_first_order_on_a_curved_flow():
    a, field = _linear_field(2, 0)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    exact = x0 @ torch.linalg.matrix_exp(a).T
    errs = [(integrate(field, x0, method="euler", steps=n).x - exact).abs().max().item() for n in (10, 20)]
    assert 1e-3 < errs[0] < 0.5 and errs[1] == pytest.approx(errs[0] / 2, rel=0.15)


def test_integrate_follows_the_input_dtype():
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    sol = integrate(gaussian_bridge, x0, method="euler", steps=4)
    assert sol.x.dtype == torch.float32 and sol.x.shape == (8, 2)


@pytest.mark.parametrize("mode", ["exact", "hutchinson"])
def test_log_likelihood_of_a_gaussian_flow_is_the_gaussian_log_density(mode):
    """Acceptance: change of variables = exact log N(x; μ, diag s²) to 1e-4 (Hutchinson is exact here
    because the Jacobian of this field is diagonal)."""
    g = torch.Generator().manual_seed(1)
    x1 = MU + SCALE * torch.randn(500, 2, generator=g, dtype=F64)
    res = log_likelihood(gaussian_bridge, x1, std_normal_log_prob, method="dopri5", atol=1e-8, rtol=1e-8,
                         divergence=mode, generator=g)
    assert (res.log_prob - target_log_prob(x1)).abs().max() < 1e-4
    assert (res.x0 - (x1 - MU) / SCALE).abs().max() < 1e-5  # the backward solve lands on the source point


def test_log_likelihood_with_a_fixed_grid_converges():
    x1 = MU + SCALE * torch.randn(100, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    coarse = log_likelihood(gaussian_bridge, x1, std_normal_log_prob, method="rk4", steps=4)
    fine = log_likelihood(gaussian_bridge, x1, std_normal_log_prob, method="rk4", steps=64)
    ref = target_log_prob(x1)
    e_coarse, e_fine = (coarse.log_prob - ref).abs().max(), (fine.log_prob - ref).abs().max()
    assert e_fine < 1e-5 and e_fine < e_coarse / 100 and fine.nfe == 4 * 64


def _linear_field(dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    a = 0.4 * torch.randn(dim, dim, generator=g, dtype=F64)  # not symmetric, not diagonal
    return a, (lambda x, t: x @ a.T)


def test_non_diagonal_linear_flow_exact_and_hutchinson():
    """v = A x: x1 = e^A x0, log p1(x1) = log p0(x0) − tr A. Exact divergence hits it; Hutchinson is off
    per sample (ε is fixed along the path, error −Σ_{i≠j} A_ij ε_i ε_j) but unbiased on average."""
    dim = 3
    a, field = _linear_field(dim, 3)
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(4000, dim, generator=g, dtype=F64)
    x1 = x0 @ torch.linalg.matrix_exp(a).T
    ref = std_normal_log_prob(x0) - torch.trace(a)
    ex = log_likelihood(field, x1, std_normal_log_prob, divergence="exact", atol=1e-9, rtol=1e-9)
    assert (ex.log_prob - ref).abs().max() < 1e-6
    hu = log_likelihood(field, x1, std_normal_log_prob, divergence="hutchinson", generator=g, atol=1e-9, rtol=1e-9)
    err = hu.log_prob - ref
    sym = a + a.T
    sd = math.sqrt(float(sum(sym[i, j] ** 2 for i in range(dim) for j in range(i + 1, dim))))  # per-sample std
    assert err.abs().max() > 0.05 * sd  # really an estimate
    assert abs(err.mean().item()) < 4 * sd / math.sqrt(x1.shape[0])
    assert err.std().item() == pytest.approx(sd, rel=0.1)
    four = log_likelihood(field, x1, std_normal_log_prob, divergence="hutchinson", n_probes=4, generator=g,
                          atol=1e-9, rtol=1e-9)
    assert (four.log_prob - ref).std().item() == pytest.approx(sd / 2, rel=0.1)  # variance / K


def test_auto_divergence_switches_to_hutchinson_above_the_threshold():
    _, field = _linear_field(4, 5)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(6), dtype=F64)
    kw = {"method": "rk4", "steps": 2}
    auto_low = log_likelihood(field, x, std_normal_log_prob, divergence="auto", exact_max_dim=4, **kw)
    exact = log_likelihood(field, x, std_normal_log_prob, divergence="exact", **kw)
    auto_high = log_likelihood(field, x, std_normal_log_prob, divergence="auto", exact_max_dim=3,
                               generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(auto_low.log_prob, exact.log_prob)
    assert not torch.allclose(auto_high.log_prob, exact.log_prob)


def test_divergence_helpers_match_the_jacobian_trace():
    a, field = _linear_field(5, 7)
    x = torch.randn(10, 5, dtype=F64)
    t = torch.tensor(0.3, dtype=F64)
    v, div = divergence_exact(field, x, t)
    assert torch.allclose(v, x @ a.T) and torch.allclose(div, torch.trace(a).expand(10))
    eye = torch.eye(5, dtype=F64)
    probes = eye[:, None, :].expand(5, 10, 5)  # the basis vectors: Σ_k e_kᵀ J e_k / K = tr J / 5
    _, hdiv = divergence_hutchinson(field, x, t, probes)
    assert torch.allclose(hdiv * 5, div)


def test_bad_arguments_are_named():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="steps is required"):
        integrate(gaussian_bridge, x, method="euler")
    with pytest.raises(ValueError, match="adaptive"):
        integrate(gaussian_bridge, x, method="dopri5", steps=5)
    with pytest.raises(ValueError, match="method"):
        integrate(gaussian_bridge, x, method="leapfrog")
    with pytest.raises(ValueError, match="divergence"):
        log_likelihood(gaussian_bridge, x, std_normal_log_prob, divergence="trace")
    with pytest.raises(ValueError, match="t0 and t1"):
        integrate(gaussian_bridge, x, t0=1.0, t1=1.0, method="euler", steps=2)

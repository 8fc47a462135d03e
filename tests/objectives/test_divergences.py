"""f-divergences and generator losses: definitions, conjugates, inverses, weights, stability, errors."""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from scoregan.objectives.divergences import (
    DIVERGENCES,
    Divergence,
    divergence,
    log1mexp,
)
from scoregan.objectives.generator_losses import GENERATOR_LOSSES, generator_loss

ALPHAS = (-1.0, 0.5, 2.0, 3.0)
ALL = [divergence(n) for n in DIVERGENCES if n != "alpha"] + [divergence("alpha", alpha=a) for a in ALPHAS]
IDS = [repr(d) for d in ALL]
F64 = torch.float64
U = torch.linspace(-30, 30, 6001, dtype=F64)  # log r grid



def t64(x):
    return torch.as_tensor(x, dtype=F64)


# --------------------------------------------------------------------------- the f themselves
def quad_divergence(div: Divergence, mu: float) -> float:
    """D_f(N(mu, 1) ‖ N(0, 1)) = ∫ p_g f(p_d/p_g) by quadrature on a fine grid."""
    x = torch.linspace(-20, 20, 100_001, dtype=F64)
    log_pd = -0.5 * (x - mu) ** 2 - 0.5 * math.log(2 * math.pi)
    log_pg = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
    r = torch.exp(log_pd - log_pg)
    integrand = torch.exp(log_pg) * div.f(r)
    return float(torch.trapezoid(integrand, x))


def closed_form_divergence(div: Divergence, mu: float) -> float:
    """Textbook values between N(mu, 1) (data) and N(0, 1) (generator)."""
    m2 = mu**2
    name = div.name
    if name in ("kl", "reverse_kl"):
        return m2 / 2
    if name in ("pearson", "neyman"):
        return math.exp(m2) - 1  # χ² between unit-variance Gaussians, symmetric in the shift
    if name == "hellinger":
        return 2 * (1 - math.exp(-m2 / 8))
    if name == "alpha":
        a = div.alpha
        return (math.exp(-a * (1 - a) * m2 / 2) - 1) / (a * (a - 1))
    raise AssertionError(name)


@pytest.mark.parametrize("div", [d for d in ALL if d.name not in ("js", "sgan")], ids=lambda d: repr(d))
def test_divergence_values_against_closed_forms(div):
    for mu in (0.5, 1.3):
        assert quad_divergence(div, mu) == pytest.approx(closed_form_divergence(div, mu), rel=1e-8)


def test_js_is_the_jensen_shannon_divergence_and_sgan_twice_it():
    mu = 1.1
    x = torch.linspace(-20, 20, 100_001, dtype=F64)
    pd = torch.exp(-0.5 * (x - mu) ** 2) / math.sqrt(2 * math.pi)
    pg = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    m = (pd + pg) / 2
    js = 0.5 * torch.trapezoid(pd * torch.log(pd / m), x) + 0.5 * torch.trapezoid(pg * torch.log(pg / m), x)
    assert quad_divergence(divergence("js"), mu) == pytest.approx(float(js), rel=1e-9)
    assert quad_divergence(divergence("sgan"), mu) == pytest.approx(2 * float(js), rel=1e-9)
    assert 0 < float(js) < math.log(2)


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_f_is_normalised_and_convex_and_derivatives_match_finite_differences(div):
    one = t64([1.0])
    assert float(div.f(one)) == pytest.approx(0.0, abs=1e-15)
    r = torch.exp(torch.linspace(-4, 4, 41, dtype=F64))
    assert torch.all(div.f_second(r) > 0)
    h = 1e-5 * r
    fd1 = (div.f(r + h) - div.f(r - h)) / (2 * h)
    fd2 = (div.f_prime(r + h) - div.f_prime(r - h)) / (2 * h)
    torch.testing.assert_close(div.f_prime(r), fd1, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(div.f_second(r), fd2, rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------------------- conjugate, inverse, activation
@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_f_star_is_the_convex_conjugate(div):
    ts = [float(div.activation(t64(v))) for v in (-3.0, -1.0, 0.0, 0.7, 2.0)]
    lo, hi = div.t_domain
    if math.isfinite(lo):  # below the range of f', the sup over r >= 0 is -f(0)
        ts.append(lo - 0.5)
    for t in ts:
        # sup_{r > 0} t r − f(r), searched over log r
        res = minimize_scalar(lambda s: -(t * math.exp(s) - float(div.f(t64(math.exp(s))))),
                              bounds=(-40, 12), method="bounded", options={"xatol": 1e-12, "maxiter": 2000})
        assert float(div.f_star(t64(t))) == pytest.approx(-res.fun, rel=1e-8, abs=1e-8), t
    if math.isfinite(hi):  # above the range of f', t r − f(r) is unbounded
        assert math.isinf(float(div.f_star(t64(hi + 0.1))))


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_fenchel_young_equality_at_the_optimum(div):
    # f*(f'(r)) = r f'(r) − f(r), and f_star_of_activation computes it from log r without f*
    u = torch.linspace(-8, 8, 161, dtype=F64)
    r = torch.exp(u)
    expected = r * div.f_prime(r) - div.f(r)
    torch.testing.assert_close(div.f_star(div.f_prime(r)), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(div.f_star_of_activation(u), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_activation_inverse_and_domain(div):
    u = torch.linspace(-20, 20, 401, dtype=F64)
    r = torch.exp(u)
    t = div.activation(u)
    torch.testing.assert_close(t, div.f_prime(r), rtol=1e-12, atol=1e-12)  # T = f'(e^v)
    lo, hi = div.t_domain
    inner = u.abs() <= 15
    assert torch.all((t[inner] > lo) & (t[inner] < hi))  # lands in the open range of f', inside dom f*
    # over all of [−30, 30] rounding may land T on the edge of that range; f* stays finite there
    t_all = div.activation(U)
    assert torch.all((t_all >= lo) & (t_all <= hi)) and torch.isfinite(div.f_star(t_all)).all()
    # (f')^{-1} inverts f': away from the saturated ends of dom f*, to float64 precision
    mid = u.abs() <= 8
    torch.testing.assert_close(div.log_ratio(t)[mid], u[mid], rtol=0, atol=1e-9)
    torch.testing.assert_close(div.f_prime_inv(div.f_prime(r[mid])), r[mid], rtol=1e-9, atol=0)
    # activation and log_ratio are finite on the whole range [−30, 30] in float64
    for x in (div.activation(U), div.f_star_of_activation(U)):
        assert torch.isfinite(x).all()


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_weight_is_r_squared_f_second(div):
    r = torch.exp(U)
    torch.testing.assert_close(div.weight(U), r**2 * div.f_second(r), rtol=1e-12, atol=0)


EXPECTED_W = {
    "kl": lambda r: r,
    "reverse_kl": lambda r: torch.ones_like(r),
    "pearson": lambda r: 2 * r**2,
    "neyman": lambda r: 2 / r,
    "hellinger": lambda r: torch.sqrt(r) / 2,
    "js": lambda r: 0.5 * r / (1 + r),
    "sgan": lambda r: r / (1 + r),
}


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_weight_closed_forms_and_stability(div):
    u = torch.linspace(-10, 10, 201, dtype=F64)
    r = torch.exp(u)
    expected = r**div.alpha if div.name == "alpha" else EXPECTED_W[div.name](r)
    torch.testing.assert_close(div.weight(u), expected, rtol=1e-12, atol=0)
    assert torch.isfinite(div.weight(U)).all() and torch.all(div.weight(U) > 0)
    if not (div.name == "alpha" and abs(div.alpha) * 30 > 88):  # r^3 at r = e^30 exceeds float32's range
        w32 = div.weight(U.float())
        assert torch.isfinite(w32).all() and torch.all(w32 > 0)


@pytest.mark.parametrize("alpha", [-1.9, 2.9])
def test_alpha_family_is_finite_in_float32_over_the_documented_range(alpha):
    div = divergence("alpha", alpha=alpha)
    for method in (div.activation, div.weight, div.f_star_of_activation):
        assert torch.isfinite(method(U.float())).all(), method.__name__


def test_alpha_family_members_are_rescaled_classics():
    r = torch.exp(torch.linspace(-5, 5, 51, dtype=F64))
    torch.testing.assert_close(divergence("alpha", alpha=2.0).f(r), divergence("pearson").f(r) / 2)
    torch.testing.assert_close(divergence("alpha", alpha=-1.0).f(r), divergence("neyman").f(r) / 2)
    torch.testing.assert_close(divergence("alpha", alpha=0.5).f(r), 2 * divergence("hellinger").f(r))


def test_log1mexp_accuracy():
    ts = [-1e-12, -1e-3, -0.5, -0.7, -5.0, -40.0]
    with decimal.localcontext() as ctx:  # 50-digit reference
        ctx.prec = 50
        exact = [float((1 - decimal.Decimal(t).exp()).ln()) for t in ts]
    np.testing.assert_allclose(log1mexp(torch.tensor(ts, dtype=F64)).numpy(), exact, rtol=1e-14)


# --------------------------------------------------------------------------- generator losses
EXPECTED_LOSS_W = {
    "saturating": lambda r: r / (1 + r),
    "non_saturating": lambda r: 1 / (1 + r),
    "least_squares": lambda r: r / (1 + r) ** 3,
    "hinge": lambda r: torch.ones_like(r),
}


@pytest.mark.parametrize("div", ALL, ids=IDS)
@pytest.mark.parametrize("name", GENERATOR_LOSSES)
def test_generator_loss_weights_closed_form(div, name):
    loss = generator_loss(name)
    u = torch.linspace(-10, 10, 201, dtype=F64)
    r = torch.exp(u)
    expected = div.weight(u) if name == "fgan" else EXPECTED_LOSS_W[name](r)
    torch.testing.assert_close(loss.weight(u, div), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("div", ALL, ids=IDS)
@pytest.mark.parametrize("name", GENERATOR_LOSSES)
def test_loss_of_t_equals_loss_of_log_ratio(div, name):
    loss = generator_loss(name)
    u = torch.linspace(-8, 8, 161, dtype=F64)
    torch.testing.assert_close(loss(div.activation(u), div), loss.of_log_ratio(u, div), rtol=1e-9, atol=1e-9)


def test_classic_losses_in_terms_of_d():
    u = torch.linspace(-6, 6, 61, dtype=F64)
    D = torch.sigmoid(u)
    div = divergence("sgan")
    t = div.activation(u)
    torch.testing.assert_close(torch.exp(t), D)  # SGAN: T = log D
    torch.testing.assert_close(generator_loss("saturating")(t, div), torch.log(1 - D))
    torch.testing.assert_close(generator_loss("non_saturating")(t, div), -torch.log(D))
    torch.testing.assert_close(generator_loss("least_squares")(t, div), 0.5 * (D - 1) ** 2)
    torch.testing.assert_close(generator_loss("hinge")(t, div), -u)


def test_sgan_saturating_and_fgan_coincide_up_to_log4():
    div = divergence("sgan")
    t = div.activation(torch.linspace(-10, 10, 101, dtype=F64))
    sat, fg = generator_loss("saturating"), generator_loss("fgan")
    torch.testing.assert_close(fg(t, div) - sat(t, div), torch.full_like(t, math.log(4)))
    torch.testing.assert_close(fg.weight(U, div), sat.weight(U, div), rtol=1e-15, atol=0)
    tg = t.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(fg(tg, div).sum(), tg)
    (g2,) = torch.autograd.grad(sat(tg, div).sum(), tg)
    torch.testing.assert_close(g1, g2)


def test_non_saturating_keeps_a_weight_where_saturating_vanishes():
    u = torch.tensor([-20.0], dtype=F64)  # generator far from the data: r = e^-20
    assert float(generator_loss("non_saturating").weight(u, "sgan")) > 0.999
    assert float(generator_loss("saturating").weight(u, "sgan")) < 1e-8


# --------------------------------------------------------------------------- errors
def test_unknown_divergence_names_the_argument_and_suggests():
    with pytest.raises(ValueError) as err:
        divergence("kll")
    msg = str(err.value)
    assert "name='kll'" in msg and all(repr(n) in msg for n in DIVERGENCES) and "did you mean 'kl'" in msg


def test_unknown_generator_loss_names_the_argument_and_suggests():
    with pytest.raises(ValueError) as err:
        generator_loss("nonsaturating")
    msg = str(err.value)
    assert "name='nonsaturating'" in msg and all(repr(n) in msg for n in GENERATOR_LOSSES)
    assert "did you mean 'non_saturating'" in msg


@pytest.mark.parametrize("kwargs", [{}, {"alpha": 1.0}, {"alpha": 0}, {"alpha": "half"}, {"alpha": 0.5, "beta": 1}])
def test_alpha_parameter_errors(kwargs):
    with pytest.raises(ValueError, match="alpha"):
        divergence("alpha", **kwargs)


def test_parameter_for_a_parameterless_divergence():
    with pytest.raises(ValueError, match="kl"):
        divergence("kl", alpha=0.5)

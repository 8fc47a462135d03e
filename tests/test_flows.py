"""The identities of DESIGN.md §1 on closed-form Gaussian mixtures (scoregan.flows)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scoregan import flows
from scoregan.objectives.divergences import DIVERGENCES, divergence
from scoregan.objectives.generator_losses import GENERATOR_LOSSES, generator_loss
from scoregan.objectives.kernels import kernel
from scoregan.scores.gaussian_mixture import GaussianMixture

F64 = torch.float64
ALL_DIVS = [divergence(n) for n in DIVERGENCES if n != "alpha"] + [
    divergence("alpha", alpha=a) for a in (-1.0, 0.5, 2.0, 3.0)
]
PAIRS = [(d, l) for d in ALL_DIVS for l in GENERATOR_LOSSES]
PAIR_IDS = [f"{d!r}-{l}" for d, l in PAIRS]
U = torch.linspace(-30, 30, 6001, dtype=F64)



def random_mixture(g: torch.Generator, d: int, K: int, kind: str) -> GaussianMixture:
    means = (1.5 / math.sqrt(d)) * torch.randn(K, d, generator=g, dtype=F64)
    weights = 0.3 + torch.rand(K, generator=g, dtype=F64)
    if kind == "isotropic":
        sc = 0.7 + 0.6 * torch.rand(K, generator=g, dtype=F64)
    elif kind == "diagonal":
        sc = 0.7 + 0.6 * torch.rand(K, d, generator=g, dtype=F64)
    else:
        A = 0.4 * torch.randn(K, d, d, generator=g, dtype=F64) / math.sqrt(d)
        sc = A @ A.mT + 0.6 * torch.eye(d, dtype=F64)
    return GaussianMixture(means, sc, weights)


# --------------------------------------------------------------------------- f-GAN velocity: score form = discriminator form
KINDS = st.sampled_from(["isotropic", "diagonal", "full"])


@settings(max_examples=25, deadline=None)
@given(d=st.sampled_from([1, 2, 10]), seed=st.integers(0, 2**31 - 1), kd=st.integers(1, 3), kg=st.integers(1, 3),
       kind_d=KINDS, kind_g=KINDS)
def test_score_form_equals_discriminator_form_for_every_pair(d, seed, kd, kg, kind_d, kind_g):
    g = torch.Generator().manual_seed(seed)
    p_d, p_g = random_mixture(g, d, kd, kind_d), random_mixture(g, d, kg, kind_g)
    x = torch.cat([p_d.sample(24, g), p_g.sample(24, g)])
    log_r = p_d.log_ratio(p_g, x)
    keep = log_r.abs() <= 8  # a sane range of r: points near both mixtures
    assume(int(keep.sum()) >= 4)
    x, log_r = x[keep], log_r[keep]
    s_d, s_g = p_d.score(x), p_g.score(x)

    def optimal_discriminator(y):  # v*(y) = log r(y), so T* = activation(v*) = f'(r)
        return p_d.log_prob(y) - p_g.log_prob(y)

    for div, name in PAIRS:
        loss = generator_loss(name)
        v_score = flows.fgan_velocity(s_d, s_g, log_r, div, loss)
        v_disc = flows.fgan_velocity_from_discriminator(x, optimal_discriminator, div, loss)
        # the literal composition ℓ_G(T(x)), T = activation(v*(x)), differentiated by autograd
        xg = x.clone().requires_grad_(True)
        (grad_t,) = torch.autograd.grad(loss(div.activation(optimal_discriminator(xg)), div).sum(), xg)
        w = flows.weight(div, loss, log_r)
        floor = 1e-10 * w * (s_d.norm(dim=1) + s_g.norm(dim=1))  # cancellation where s_d ≈ s_g
        for v_other in (v_disc, -grad_t):
            err = (v_other - v_score).norm(dim=1)
            assert torch.all(err <= 1e-6 * v_score.norm(dim=1) + floor), (div, name, err.max())


# --------------------------------------------------------------------------- weights: closed form = autograd
@pytest.mark.parametrize("div, name", PAIRS, ids=PAIR_IDS)
def test_closed_form_weight_equals_autograd(div, name):
    w = flows.weight(div, name, U)
    assert torch.isfinite(w).all() and torch.all(w > 0)
    torch.testing.assert_close(flows.weight_autograd(div, name, U), w, rtol=1e-8, atol=0)
    # through T = activation(u): exact in exact arithmetic; float64 keeps 1e-8 while |log r| <= 8
    mid = U.abs() <= 8
    torch.testing.assert_close(flows.weight_autograd(div, name, U[mid], through_activation=True), w[mid],
                               rtol=1e-8, atol=0)
    if not (div.name == "alpha" and abs(div.alpha) * 30 > 88):  # r^3 at r = e^30 exceeds float32's range
        assert torch.isfinite(flows.weight(div, name, U.float())).all()


def test_weight_accepts_names_and_objects():
    u = torch.linspace(-3, 3, 7, dtype=F64)
    torch.testing.assert_close(flows.weight("sgan", "non_saturating", u), torch.sigmoid(-u))
    torch.testing.assert_close(flows.weight(divergence("kl"), generator_loss("fgan"), u), torch.exp(u))


# --------------------------------------------------------------------------- discriminator form: graph hygiene
def test_discriminator_velocity_leaves_no_graph_unless_asked():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(5, 2)
    v = flows.fgan_velocity_from_discriminator(x, net, "sgan", "non_saturating")
    assert v.shape == (5, 2) and not v.requires_grad
    assert all(p.grad is None for p in net.parameters())
    v2 = flows.fgan_velocity_from_discriminator(x, net, "sgan", "non_saturating", create_graph=True)
    assert v2.requires_grad
    v2.pow(2).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    torch.testing.assert_close(v, v2.detach())


def test_flow_target():
    x = torch.randn(4, 3, requires_grad=True)
    v = torch.randn(4, 3)
    target = flows.flow_target(x * 2, v, 0.1)
    assert not target.requires_grad
    torch.testing.assert_close(target, (2 * x + 0.1 * v).detach())


# --------------------------------------------------------------------------- IPM: witness gradient and smoothed scores
H = 0.8  # Gaussian kernel bandwidth


def ipm_setup(m: int):
    g = torch.Generator().manual_seed(11)
    p_d = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=F64), torch.tensor([0.5, 0.7], dtype=F64),
                          torch.tensor([0.4, 0.6], dtype=F64))
    p_g = GaussianMixture(torch.tensor([[0.3, -0.8]], dtype=F64), torch.tensor([[0.9, 0.6]], dtype=F64))
    data, gen = p_d.sample(m, g), p_g.sample(m, g)
    x = torch.tensor([[-1.0, 0.2], [0.0, 0.0], [0.5, -0.5], [1.2, 0.8], [0.3, -1.5], [-0.3, 1.0]], dtype=F64)
    return p_d, p_g, data, gen, x


def exact_smoothed(p: GaussianMixture, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(κ*p)(x) and ∇(κ*p)(x) for κ = exp(−‖·‖²/(2h²)): (2πh²)^{d/2} p_h(x) and that times s_h(x)."""
    ph = p.perturbed(H)
    c = (2 * math.pi * H**2) ** (x.shape[1] / 2)
    dens = c * ph.log_prob(x).exp()
    return dens, dens[:, None] * ph.score(x)


def mc_error(terms_d: torch.Tensor, terms_g: torch.Tensor) -> torch.Tensor:
    """Standard error of mean_j terms_d[:, j] − mean_j terms_g[:, j] (terms (N, M, ...))."""
    return torch.sqrt(terms_d.var(dim=1) / terms_d.shape[1] + terms_g.var(dim=1) / terms_g.shape[1])


def test_ipm_velocity_is_the_signed_sum_of_kernel_gradients():
    _, _, data, gen, x = ipm_setup(50)
    k = kernel("gaussian", bandwidth=H)
    a_d = torch.rand(50, dtype=F64)
    a_g = torch.rand(50, dtype=F64)

    def grad_k(y):  # (N, M, d): ∇ₓ exp(−‖x − y‖²/(2h²))
        diff = x[:, None, :] - y[None]
        return -diff / H**2 * torch.exp(-(diff**2).sum(-1) / (2 * H**2))[..., None]

    expected = grad_k(data).mean(1) - grad_k(gen).mean(1)
    torch.testing.assert_close(flows.ipm_velocity(x, k, data, gen), expected, rtol=1e-10, atol=1e-12)
    weighted = torch.einsum("nmd,m->nd", grad_k(data), a_d) - torch.einsum("nmd,m->nd", grad_k(gen), a_g)
    torch.testing.assert_close(flows.ipm_velocity(x, k, data, gen, a_d, a_g), weighted, rtol=1e-10, atol=1e-12)
    # D̂ increases towards the data: the velocity is the gradient of the witness
    xg = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(flows.ipm_witness(xg, k, data, gen).sum(), xg)
    torch.testing.assert_close(auto, expected, rtol=1e-10, atol=1e-12)


def test_feature_ipm_velocity_is_the_gradient_of_the_witness_of_the_composed_kernel():
    """∇ₓ Σ_j a_j k(φ(x), φ(y_j)) by autograd through an explicit float64 sum equals the pulled-back
    closed-form feature gradient J_φᵀ ∇ᵤD̂."""
    g = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(5, 7, generator=g, dtype=F64), torch.randn(7, 3, generator=g, dtype=F64)

    def phi(t):
        return torch.tanh(t @ w1) @ w2

    data, gen, x = (torch.randn(n, 5, generator=g, dtype=F64) for n in (40, 30, 11))
    k = kernel("gaussian", bandwidth=H)
    xg = x.clone().requires_grad_(True)

    def k_phi(a, b):  # (N, M): exp(−‖φ(a) − φ(b)‖²/(2h²))
        return torch.exp(-((phi(a)[:, None] - phi(b)[None]) ** 2).sum(-1) / (2 * H**2))

    witness = k_phi(xg, data).mean(1) - k_phi(xg, gen).mean(1)
    (expected,) = torch.autograd.grad(witness.sum(), xg)
    got = flows.feature_ipm_velocity(x, phi, k, data, gen)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert got.abs().max() > 1e-3  # not trivially zero
    # with φ = identity it is the pixel-space velocity
    torch.testing.assert_close(flows.feature_ipm_velocity(x, lambda t: t, k, data, gen),
                               flows.ipm_velocity(x, k, data, gen), rtol=1e-12, atol=1e-14)


def test_median_bandwidth_of_the_witness_comes_from_its_two_samples():
    """With bandwidth "median", D̂ is one function: h is the median distance of [data; generated]
    whatever the query points, also when they are the generated points themselves."""
    from scoregan.objectives.kernels import median_bandwidth

    _, _, data, gen, x = ipm_setup(50)
    h = median_bandwidth(gen, data)
    fixed, med = kernel("gaussian", bandwidth=h), kernel("gaussian", bandwidth="median")
    assert h != pytest.approx(median_bandwidth(gen, torch.cat([data, gen])), rel=1e-3)  # the old pooling differs
    for q in (x, gen, x[:3] * 10):
        torch.testing.assert_close(flows.ipm_velocity(q, med, data, gen), flows.ipm_velocity(q, fixed, data, gen),
                                   rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(flows.ipm_witness(q, med, data, gen), flows.ipm_witness(q, fixed, data, gen),
                                   rtol=1e-12, atol=1e-14)


def test_ipm_velocity_and_smoothed_score_difference_match_the_exact_smoothed_scores():
    m = 20_000
    p_d, p_g, data, gen, x = ipm_setup(m)
    k = kernel("gaussian", bandwidth=H)
    dens_d, grad_d = exact_smoothed(p_d, x)
    dens_g, grad_g = exact_smoothed(p_g, x)
    exact_v, exact_w = grad_d - grad_g, dens_d - dens_g

    # witness-gradient estimator and its standard error from the per-sample terms ∇ₓk(x, y_j)
    v_ipm = flows.ipm_velocity(x, k, data, gen)

    def grad_terms(y):
        diff = x[:, None, :] - y[None]
        return -diff / H**2 * torch.exp(-(diff**2).sum(-1) / (2 * H**2))[..., None]

    se_ipm = mc_error(grad_terms(data), grad_terms(gen))
    # score-form estimator: mean_j k(x, y_j) s(y_j)
    s_d, s_g = p_d.score(data), p_g.score(gen)
    v_ssd = flows.smoothed_score_difference(x, k, data, s_d, gen, s_g)
    se_ssd = mc_error(k(x, data)[..., None] * s_d[None], k(x, gen)[..., None] * s_g[None])
    se_w = mc_error(k(x, data), k(x, gen))

    assert se_ipm.mean() < 0.05 * exact_v.abs().mean() and se_ssd.mean() < 0.05 * exact_v.abs().mean()  # power
    assert torch.all((v_ipm - exact_v).abs() < 5 * se_ipm)
    assert torch.all((v_ssd - exact_v).abs() < 5 * se_ssd)
    assert torch.all((v_ipm - v_ssd).abs() < 5 * (se_ipm + se_ssd))
    assert torch.all((flows.ipm_witness(x, k, data, gen) - exact_w).abs() < 5 * se_w)


# --------------------------------------------------------------------------- bad input
def test_bad_names_name_the_argument():
    u = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match=r"divergence='klx'.*'kl'.*did you mean 'kl'"):
        flows.weight("klx", "hinge", u)
    with pytest.raises(ValueError, match=r"generator_loss='hing'.*'saturating'.*did you mean 'hinge'"):
        flows.weight("kl", "hing", u)
    with pytest.raises(ValueError, match="generator_loss"):
        flows.weight_autograd("kl", "nope", u)


def test_bad_shapes():
    s = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="log_r"):
        flows.fgan_velocity(s, s, torch.zeros(3, dtype=F64), "kl", "fgan")
    with pytest.raises(ValueError, match="score_g"):
        flows.fgan_velocity(s, torch.zeros(4, 3, dtype=F64), torch.zeros(4, dtype=F64), "kl", "fgan")
    with pytest.raises(ValueError, match="discriminator"):
        flows.fgan_velocity_from_discriminator(s, lambda y: y, "kl", "fgan")
    k = kernel("gaussian", bandwidth=1.0)
    with pytest.raises(ValueError, match="generated"):
        flows.ipm_velocity(s, k, s, torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="data_weights"):
        flows.ipm_velocity(s, k, s, s, data_weights=-torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="score_d"):
        flows.smoothed_score_difference(s, k, s, torch.zeros(3, 2, dtype=F64), s, s)

"""GaussianMixture against scipy (log-density), autograd (score) and closed-form moments (sampling)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from scoregan.scores.gaussian_mixture import GaussianMixture

KINDS = ("scalar", "isotropic", "diagonal", "full")



def make_mixture(kind: str, d: int, K: int, seed: int, dtype=torch.float64) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.randn(K, d, generator=g, dtype=dtype)
    weights = 0.2 + torch.rand(K, generator=g, dtype=dtype)
    if kind == "scalar":
        sc = 0.7
    elif kind == "isotropic":
        sc = 0.4 + torch.rand(K, generator=g, dtype=dtype)
    elif kind == "diagonal":
        sc = 0.3 + torch.rand(K, d, generator=g, dtype=dtype)
    else:
        A = torch.randn(K, d, d, generator=g, dtype=dtype)
        sc = A @ A.mT / d + 0.2 * torch.eye(d, dtype=dtype)
    return GaussianMixture(means, sc, weights)


def scipy_log_prob(gm: GaussianMixture, x: torch.Tensor) -> np.ndarray:
    comps = [
        math.log(float(w)) + multivariate_normal(mean=m.numpy(), cov=c.numpy()).logpdf(x.numpy()).reshape(-1)
        for w, m, c in zip(gm.weights, gm.means, gm.covariances)
    ]
    stacked = np.stack(comps, axis=1)
    top = stacked.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(stacked - top).sum(axis=1, keepdims=True)))[:, 0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", [1, 2, 5])
def test_log_prob_matches_scipy(kind, d):
    gm = make_mixture(kind, d, K=3, seed=d)
    x = gm.sample(200, torch.Generator().manual_seed(1)) + torch.randn(200, d, dtype=torch.float64)
    ours = gm.log_prob(x).numpy()
    np.testing.assert_allclose(ours, scipy_log_prob(gm, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("d", [1, 3, 10])
def test_score_matches_autograd_of_log_prob(kind, d):
    gm = make_mixture(kind, d, K=4, seed=10 + d)
    x = gm.sample(100, torch.Generator().manual_seed(2)) + 2.0 * torch.randn(100, d, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(gm.log_prob(xg).sum(), xg)
    torch.testing.assert_close(gm.score(x), auto, rtol=1e-8, atol=1e-8)


def test_score_and_log_prob_stable_far_away():
    gm = make_mixture("isotropic", 2, K=3, seed=0)
    x = torch.tensor([[1e3, -1e3], [5e2, 0.0]], dtype=torch.float64)
    assert torch.isfinite(gm.log_prob(x)).all()
    assert torch.isfinite(gm.score(x)).all()
    r = gm.responsibilities(x)
    torch.testing.assert_close(r.sum(1), torch.ones(2, dtype=torch.float64))


def test_responsibilities_are_bayes_posterior():
    gm = make_mixture("full", 2, K=3, seed=3)
    x = torch.randn(50, 2, dtype=torch.float64)
    comp = np.stack([float(w) * multivariate_normal(m.numpy(), c.numpy()).pdf(x.numpy())
                     for w, m, c in zip(gm.weights, gm.means, gm.covariances)], axis=1)
    np.testing.assert_allclose(gm.responsibilities(x).numpy(), comp / comp.sum(1, keepdims=True), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_sampling_moments_within_monte_carlo_error(kind):
    d, n = 3, 200_000
    gm = make_mixture(kind, d, K=3, seed=5)
    x, labels = gm.sample_with_labels(n, torch.Generator().manual_seed(7))
    m, C = gm.overall_mean, gm.overall_covariance
    # mean: standard error sqrt(C_ii / n); 5 standard errors
    se_mean = torch.sqrt(torch.diagonal(C) / n)
    assert torch.all((x.mean(0) - m).abs() < 5 * se_mean)
    # covariance entries: standard error of the mean of (x_i - m_i)(x_j - m_j), estimated from samples
    xc = x - m
    prods = xc[:, :, None] * xc[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    assert torch.all((prods.mean(0) - C).abs() < 5 * se_cov)
    # label frequencies: binomial standard error
    freq = torch.bincount(labels, minlength=3).double() / n
    se_w = torch.sqrt(gm.weights * (1 - gm.weights) / n)
    assert torch.all((freq - gm.weights).abs() < 5 * se_w)
    # the samples of each component have that component's mean
    for k in range(3):
        xk = x[labels == k]
        se_k = torch.sqrt(torch.diagonal(gm.covariances[k]) / len(xk))
        assert torch.all((xk.mean(0) - gm.means[k]).abs() < 5 * se_k)


def test_overall_moments_closed_form_against_brute_force():
    gm = make_mixture("full", 2, K=2, seed=9)
    w, mu, S = gm.weights, gm.means, gm.covariances
    m = w[0] * mu[0] + w[1] * mu[1]
    C = sum(w[k] * (S[k] + torch.outer(mu[k] - m, mu[k] - m)) for k in range(2))
    torch.testing.assert_close(gm.overall_mean, m)
    torch.testing.assert_close(gm.overall_covariance, C)


def test_sampling_is_deterministic_given_generator():
    gm = make_mixture("full", 4, K=3, seed=1, dtype=torch.float32)
    a, la = gm.sample_with_labels(500, torch.Generator().manual_seed(123))
    b, lb = gm.sample_with_labels(500, torch.Generator().manual_seed(123))
    c = gm.sample(500, torch.Generator().manual_seed(124))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == (500, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_perturbed_adds_sigma_squared_identity(kind):
    gm = make_mixture(kind, 3, K=2, seed=4)
    sigma = 0.8
    gp = gm.perturbed(sigma)
    torch.testing.assert_close(gp.covariances, gm.covariances + sigma**2 * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(gp.means, gm.means)
    torch.testing.assert_close(gp.weights, gm.weights)
    assert gm.perturbed(0.0).log_prob(gm.means).allclose(gm.log_prob(gm.means))


def test_perturbed_density_is_the_convolution_in_one_dimension():
    # (p * N(0, σ²))(x) = ∫ p(y) N(x - y; 0, σ²) dy, by quadrature on a fine grid
    gm = GaussianMixture(torch.tensor([[-1.0], [2.0]], dtype=torch.float64), torch.tensor([0.5, 0.3], dtype=torch.float64),
                         torch.tensor([0.3, 0.7], dtype=torch.float64))
    sigma = 0.6
    y = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    dy = y[1] - y[0]
    py = gm.log_prob(y[:, None]).exp()
    x = torch.tensor([-2.0, 0.0, 1.3, 3.0], dtype=torch.float64)
    kern = torch.exp(-((x[:, None] - y[None]) ** 2) / (2 * sigma**2)) / math.sqrt(2 * math.pi * sigma**2)
    conv = (kern * py).sum(1) * dy
    torch.testing.assert_close(gm.perturbed(sigma).log_prob(x[:, None]).exp(), conv, rtol=1e-9, atol=1e-12)


def test_log_ratio_and_component_stds():
    p = make_mixture("diagonal", 2, K=3, seed=1)
    q = make_mixture("full", 2, K=2, seed=2)
    x = torch.randn(40, 2, dtype=torch.float64)
    torch.testing.assert_close(p.log_ratio(q, x), p.log_prob(x) - q.log_prob(x))
    torch.testing.assert_close(p.component_stds, p._stds.amax(1))
    torch.testing.assert_close(q.component_stds, torch.linalg.eigvalsh(q.covariances)[:, -1].sqrt())
    iso = GaussianMixture(torch.zeros(2, 3), torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(iso.component_stds, torch.tensor([0.5, 2.0]))


def test_dtype_and_device_follow_means_and_inputs():
    gm = GaussianMixture([[0.0, 1.0], [1.0, 0.0]], 1.0)
    assert gm.dtype == torch.float32 and gm.dim == 2 and gm.n_components == 2
    assert GaussianMixture(np.zeros((1, 2)), 1.0).dtype == torch.float64
    x64 = torch.randn(5, 2, dtype=torch.float64)
    assert gm.log_prob(x64).dtype == torch.float64 and gm.score(x64).dtype == torch.float64
    g64 = gm.to(dtype=torch.float64)
    assert g64.dtype == torch.float64 and g64.weights.dtype == torch.float64
    torch.testing.assert_close(g64.log_prob(x64), gm.log_prob(x64))
    torch.testing.assert_close(gm.weights, torch.tensor([0.5, 0.5]))


def test_python_numbers_are_exact_in_a_float64_mixture():
    """Scalars and lists for a float64 mixture are not rounded through float32 on the way."""
    gm = GaussianMixture(torch.zeros(2, 1, dtype=torch.float64), 0.1, [0.3, 0.7])
    assert gm.component_stds[0].item() == 0.1 and gm.weights[0].item() == 0.3
    x = torch.tensor([[0.05]], dtype=torch.float64)
    exact = math.log(0.3 + 0.7) - 0.5 * math.log(2 * math.pi * 0.01) - 0.05**2 / (2 * 0.01)
    assert gm.log_prob(x).item() == pytest.approx(exact, rel=1e-14)


@pytest.mark.parametrize(
    "means, sc, weights, arg",
    [
        (torch.zeros(3), 1.0, None, "means"),
        (torch.zeros(2, 2), -1.0, None, "stds_or_covs"),
        (torch.zeros(2, 2), torch.tensor([1.0, 0.0]), None, "stds_or_covs"),
        (torch.zeros(2, 2), torch.ones(3), None, "stds_or_covs"),
        (torch.zeros(2, 2), torch.ones(2, 3), None, "stds_or_covs"),
        (torch.zeros(2, 2), torch.ones(2, 2, 3), None, "stds_or_covs"),
        (torch.zeros(1, 2), torch.tensor([[[1.0, 2.0], [2.0, 1.0]]]), None, "stds_or_covs"),  # indefinite
        (torch.zeros(1, 2), torch.tensor([[[1.0, 0.5], [0.0, 1.0]]]), None, "stds_or_covs"),  # asymmetric
        (torch.zeros(2, 2), 1.0, torch.tensor([1.0, -1.0]), "weights"),
        (torch.zeros(2, 2), 1.0, torch.ones(3), "weights"),
        (torch.tensor([[0.0, float("nan")]]), 1.0, None, "means"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(means, sc, weights, arg):
    with pytest.raises(ValueError, match=arg):
        GaussianMixture(means, sc, weights)


def test_bad_call_arguments():
    gm = GaussianMixture(torch.zeros(2, 3), 1.0)
    with pytest.raises(ValueError, match="x"):
        gm.log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x"):
        gm.score(torch.zeros(3))
    with pytest.raises(ValueError, match="n"):
        gm.sample(0)
    with pytest.raises(ValueError, match="sigma"):
        gm.perturbed(-0.1)
    with pytest.raises(ValueError, match="other"):
        gm.log_ratio(GaussianMixture(torch.zeros(1, 2), 1.0), torch.zeros(2, 3))

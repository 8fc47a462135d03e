"""The score of a perturbed empirical measure (scoregan.scores.empirical) against closed forms."""

import pytest
import torch

from scoregan.scores import GaussianMixture
from scoregan.scores.empirical import empirical_posterior_mean, empirical_score

F64 = torch.float64


def test_equals_the_score_of_the_equal_weight_mixture_of_the_centres():
    """p̂^σ is the mixture (1/M) Σ N(y_j, σ²I): its closed-form score, for a scalar and per-row σ."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(37, 3, generator=g, dtype=F64) * 2
    x = torch.randn(53, 3, generator=g, dtype=F64) * 3
    for s in (0.05, 0.3, 2.0):
        exact = GaussianMixture(centres, s).score(x)
        assert torch.allclose(empirical_score(x, centres, s), exact, rtol=1e-6, atol=1e-8)
    sig = torch.exp(torch.randn(53, generator=g, dtype=F64))
    rows = torch.stack([GaussianMixture(centres, float(sig[i])).score(x[i:i + 1])[0] for i in range(53)])
    assert torch.allclose(empirical_score(x, centres, sig, chunk=7), rows, rtol=1e-6, atol=1e-8)


def test_is_consistent_for_the_perturbed_gaussian_score():
    """Centres y ~ N(0, s²): the estimate approaches ∇log N(0, s² + σ²) = −x / (s² + σ²) as M grows."""
    g = torch.Generator().manual_seed(1)
    s, sigma = 0.7, 0.5
    centres = s * torch.randn(200_000, 1, generator=g, dtype=F64)
    x = torch.linspace(-1.5, 1.5, 13, dtype=F64)[:, None]
    est = empirical_score(x, centres, sigma)
    exact = -x / (s**2 + sigma**2)
    assert torch.allclose(est, exact, atol=0.02)
    # and with few centres it is visibly off: the check above is not vacuous
    few = empirical_score(x, centres[:8], sigma)
    assert (few - exact).abs().max() > 0.1


def test_posterior_mean_is_a_convex_combination_of_the_centres():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(10, 2, generator=g, dtype=F64)
    m = empirical_posterior_mean(torch.randn(40, 2, generator=g, dtype=F64) * 10, centres, 0.01)
    # tiny σ: the posterior mean snaps to the nearest centre
    d = torch.cdist(m, centres).min(dim=1).values
    assert d.max() < 1e-6


@pytest.mark.parametrize("offset, sigma", [(100.0, 0.05), (1000.0, 0.3)])
def test_float32_is_accurate_far_from_the_origin(offset, sigma):
    """The logits drop ‖x‖²; shifting by the centres' mean keeps float32 near its own rounding (the
    unshifted form was off by 0.24 and 0.43 relative at these offsets)."""
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(400, 2, generator=g, dtype=F64) * 0.5 + offset
    x = centres[:100] + sigma * torch.randn(100, 2, generator=g, dtype=F64)
    exact = empirical_score(x, centres, sigma)
    f32 = empirical_score(x.float(), centres.float(), sigma).double()
    assert float((f32 - exact).norm() / exact.norm()) < 1e-3
    mean32 = empirical_posterior_mean(x.float(), centres.float(), sigma).double()
    assert float((mean32 - empirical_posterior_mean(x, centres, sigma)).abs().max()) < 1e-3 * offset


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=torch.zeros(4, 2), centres=torch.zeros(3, 3), sigma=1.0), "centres has dimension 3"),
    (dict(x=torch.zeros(4, 2), centres=torch.zeros(3, 2), sigma=0.0), "sigma must be > 0"),
    (dict(x=torch.zeros(4, 2), centres=torch.zeros(3, 2), sigma=torch.ones(5)), r"sigma must be a float or have shape \(4,\)"),
    (dict(x=torch.zeros(4), centres=torch.zeros(3, 2), sigma=1.0), r"x must have shape \(N, d\)"),
])
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        empirical_score(**kwargs)

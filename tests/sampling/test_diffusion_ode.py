"""The probability-flow ODE through torchdiffeq (scoregan.sampling.diffusion_ode) against closed forms:
a Gaussian mixture's exact perturbed score gives its samples and its exact log-density log p^σ."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan.sampling import DiffusionInfo
from scoregan.sampling.diffusion_ode import diffusion_log_likelihood, sample_ode
from tests.helpers import gen, w2
from tests.sampling.test_diffusion import SIGMA_MAX, floor, mixture_d, mixture_g, start

F64 = torch.float64


def test_adaptive_ode_sampling_reproduces_the_mixture():
    p = mixture_d()
    x, info = sample_ode(p, start(600), SIGMA_MAX, 0.002, atol=1e-6, rtol=1e-6, return_info=True)
    ref = p.sample(600, gen(3))
    assert isinstance(info, DiffusionInfo) and info.nfe > 10
    assert w2(x, ref) <= 1.3 * floor(p, ref) + 0.02


def test_the_ode_with_the_exact_log_ratio_as_guidance_samples_p_d_from_p_g():
    """s_g + ∇ log p_d^σ/p_g^σ = s_d: the guided ODE from p_g's score reaches p_d, the unguided one stays at p_g."""
    pd, pg = mixture_d(), mixture_g()

    def log_ratio(x, sigma):
        s = float(sigma)
        return pd.perturbed(s).log_prob(x) - pg.perturbed(s).log_prob(x)

    from scoregan.sampling import DiscriminatorGuidance

    guide = DiscriminatorGuidance(log_ratio, noise_conditional=True, link="logit")
    x0 = start(600)
    guided = sample_ode(pg, x0, SIGMA_MAX, 0.002, guidance=guide, atol=1e-6, rtol=1e-6)
    plain = sample_ode(pg, x0, SIGMA_MAX, 0.002, atol=1e-6, rtol=1e-6)
    ref = pd.sample(600, gen(4))
    assert w2(guided, ref) <= 1.3 * floor(pd, ref) + 0.05 < w2(plain, ref)


@pytest.mark.parametrize("sigma_min", [0.05, 0.3])
def test_log_likelihood_equals_the_perturbed_mixtures_log_density(sigma_min):
    p = mixture_d()
    x = p.perturbed(sigma_min).sample(40, gen(5))
    sol = diffusion_log_likelihood(p, x, 300.0, sigma_min, atol=1e-8, rtol=1e-8, divergence="exact")
    exact = p.perturbed(sigma_min).log_prob(x)
    # the prior N(0, 300² I) stands in for p^300: an error of about |E x_0|/300 ≈ 2e-3 nats (module doc)
    assert (sol.log_prob - exact).abs().max().item() < 5e-3
    rough = diffusion_log_likelihood(p, x, 20.0, sigma_min, atol=1e-8, rtol=1e-8, divergence="exact")
    assert (rough.log_prob - exact).abs().max().item() > 5e-3  # the test sees the prior's error
    assert sol.x0.shape == x.shape and sol.nfe > 0


def test_bad_levels_get_one_line():
    p = mixture_d()
    with pytest.raises(ValueError, match="sigma_max must be greater than sigma_min, got sigma_max=0.1, sigma_min=0.5"):
        sample_ode(p, start(4), 0.1, 0.5)
    with pytest.raises(ValueError, match="sigma_min must be positive"):
        diffusion_log_likelihood(p, start(4), 10.0, 0.0)
    with pytest.raises(ValueError, match="steps is required for the fixed-grid method 'euler'"):
        sample_ode(p, start(4), 10.0, 0.1, method="euler")
    x = sample_ode(p, start(50), SIGMA_MAX, 0.01, method="rk4", steps=200)
    assert torch.isfinite(x).all() and math.isfinite(float(x.std()))

"""One diagnostic measurement (scoregan.diagnostics.measure): the statistics' keys and values,
networks left untouched, and the overfitting ratio's closed form."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan.diagnostics.measure import compute_diagnostics
from scoregan.models import Discriminator, Generator


def test_compute_diagnostics_keys_and_values():
    torch.manual_seed(0)
    gen, disc = Generator(2, 2, hidden=[16]), Discriminator(2, hidden=[16])
    z, real = torch.randn(32, 2), torch.randn(40, 2)
    means = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    row = compute_diagnostics(gen, disc, z, real, means=means)
    for key in ("steepness_median", "dgrad_real_mean", "dgrad_fake_max", "combined_median", "align_fake_mean"):
        assert key in row and math.isfinite(row[key])
    from scoregan.diagnostics import discriminator_gradient, steepness

    s = steepness(gen, z)
    with torch.no_grad():
        g = discriminator_gradient(disc, gen(z)).norm(dim=1)
    assert math.isclose(row["combined_median"], float(torch.quantile((s * g).double(), 0.5)), rel_tol=1e-6)
    gr = discriminator_gradient(disc, real).norm(dim=1)
    assert math.isclose(row["dgrad_ratio"], float(gr.double().quantile(0.5) / g.double().quantile(0.5)), rel_tol=1e-5)
    assert set(compute_diagnostics(gen, None, z)) == {k for k in row if k.startswith("steepness_")}


def test_measurement_leaves_spectral_norm_networks_untouched():
    """Spectral normalisation advances its power iteration on every train-mode forward: the
    diagnostics must run in eval mode and leave every buffer and parameter as it was."""
    torch.manual_seed(0)
    gen = Generator(2, 2, hidden=[16], spectral_norm=True).train()
    # a 32×32 layer: its power iteration is not yet at a float fixed point, so a train-mode forward
    # would visibly move its buffers
    disc = Discriminator(2, hidden=[32, 32], spectral_norm=True).train()
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (gen, disc)]
    row = compute_diagnostics(gen, disc, torch.randn(16, 2), torch.randn(16, 2), means=torch.zeros(3, 2),
                              heldout=torch.randn(8, 2))
    assert math.isfinite(row["overfit"])  # the held-out statistics ran too
    for m, b in zip((gen, disc), before):
        assert m.training
        for k, v in m.state_dict().items():
            assert torch.equal(v, b[k]), k


def test_overfitting_ratio_is_exact_for_a_linear_critic_and_affine_invariant():
    """For v(x) = wᵀx + b the median of v over a set is wᵀ(the set's points) + b at the median
    point, so overfit is a ratio of differences of projected medians; v and a·v + c (a > 0) give
    the same value, and equal training and held-out sets give 0."""
    from scoregan.diagnostics.measure import overfitting_stats

    g = torch.Generator().manual_seed(0)
    real, held, fake = (torch.randn(n, 3, generator=g, dtype=torch.float64) + shift
                        for n, shift in ((51, 1.0), (31, 0.6), (41, -2.0)))  # odd sizes: unique medians
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    lin = torch.nn.Linear(3, 1, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(w[None])
        lin.bias.fill_(0.3)
    m = [float((x @ w).median()) for x in (real, held, fake)]
    expected = (m[0] - m[1]) / (m[0] - m[2])
    row = overfitting_stats(lin, real, held, fake)
    assert row["overfit"] == pytest.approx(expected, rel=1e-12)
    assert 0.05 < expected < 0.5  # the held-out set lies between the training and generated ones
    assert row["critic_heldout"] == pytest.approx(m[1] + 0.3, rel=1e-12)
    assert row["dgrad_heldout_median"] == pytest.approx(float(w.norm()), rel=1e-12)  # ∇ₓv = w everywhere
    scaled = overfitting_stats(lambda x: 7.0 * lin(x) - 4.0, real, held, fake)
    assert scaled["overfit"] == pytest.approx(expected, rel=1e-12)
    assert overfitting_stats(lin, real, real, fake)["overfit"] == 0.0  # held-out = training: no overfitting

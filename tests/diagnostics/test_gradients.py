"""The discriminator's input gradient and its alignment with the nearest mode
(scoregan.diagnostics.gradients) against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from scoregan.diagnostics import (
    cosine_alignment,
    discriminator_gradient,
    discriminator_gradient_stats,
    mode_alignment,
    nearest_mode_direction,
)

# (latent k, output d, hidden widths, activation)


class Quadratic(nn.Module):
    """v(x) = bᵀx + ½ xᵀ S x, with ∇v(x) = b + S x (S symmetric)."""

    def __init__(self, d: int, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(d)
        a = torch.randn(d, d, generator=g, dtype=dtype)
        self.S = nn.Parameter(a + a.T)
        self.b = nn.Parameter(torch.randn(d, generator=g, dtype=dtype))

    def forward(self, x):
        return x @ self.b + 0.5 * ((x @ self.S) * x).sum(1)

class NearestModePull(nn.Module):
    """v(x) = −sign · ½ min_c ‖x − μ_c‖²: ∇v = sign · (μ_{c(x)} − x), straight at the nearest mode."""

    def __init__(self, means, sign=1.0):
        super().__init__()
        self.means, self.sign = means, sign

    def forward(self, x):
        return -self.sign * 0.5 * ((x[:, None, :] - self.means[None]) ** 2).sum(-1).min(dim=1).values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_of_quadratic_discriminator(dtype):
    disc = Quadratic(5).to(dtype)
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(1), dtype=dtype)
    expected = disc.b + x @ disc.S
    got = discriminator_gradient(disc, x)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-5 if dtype == torch.float32 else 1e-12)
    assert all(p.grad is None for p in disc.parameters())

    fake = x[:20] * 2
    stats = discriminator_gradient_stats(disc, x, fake)
    n_real = expected.detach().norm(dim=1).double().numpy()
    n_fake = (disc.b + fake @ disc.S).detach().norm(dim=1).double().numpy()
    for key, ref in [("dgrad_real_mean", n_real.mean()), ("dgrad_real_median", np.median(n_real)),
                     ("dgrad_real_max", n_real.max()), ("dgrad_fake_mean", n_fake.mean()),
                     ("dgrad_fake_median", np.median(n_fake)), ("dgrad_fake_max", n_fake.max())]:
        assert math.isclose(stats[key], ref, rel_tol=1e-5), key
    assert not any(k.startswith("align") for k in stats)  # no mixture, no alignment


def test_alignment_is_one_when_the_gradient_points_at_the_nearest_mode():
    ticks = torch.linspace(-4, 4, 5, dtype=torch.float64)
    means = torch.cartesian_prod(ticks, ticks)  # the 25-Gaussians grid
    x = 5 * torch.rand(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 2.5
    stats = discriminator_gradient_stats(NearestModePull(means), x, x, means=means)
    assert math.isclose(stats["align_fake_mean"], 1.0, abs_tol=1e-12)
    assert math.isclose(stats["align_fake_min"], 1.0, abs_tol=1e-12) and stats["align_fake_pos"] == 1.0
    away = discriminator_gradient_stats(NearestModePull(means, sign=-1.0), x, x, means=means)
    assert math.isclose(away["align_fake_max"], -1.0, abs_tol=1e-12) and away["align_fake_pos"] == 0.0
    # a constant push (gradient e₁) has cosine e₁·(μ − x)/‖μ − x‖ with the nearest mean μ
    direction, idx = nearest_mode_direction(x, means)
    brute = torch.stack([means[((means - xi) ** 2).sum(1).argmin()] for xi in x])
    torch.testing.assert_close(direction, brute - x)
    e1 = torch.zeros_like(x)
    e1[:, 0] = 1
    torch.testing.assert_close(mode_alignment(e1, x, means), (brute - x)[:, 0] / (brute - x).norm(dim=1))


def test_cosine_alignment_edge_cases_and_shapes():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(cosine_alignment(a, b), torch.tensor([1.0, 0.0, 0.0]))  # zero vectors: 0, not NaN

    class Column(nn.Module):  # (N, 1) outputs are accepted
        def forward(self, x):
            return (x**2).sum(1, keepdim=True)

    x = torch.randn(4, 3)
    torch.testing.assert_close(discriminator_gradient(Column(), x), 2 * x)

    class Bad(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="discriminator must map"):
        discriminator_gradient(Bad(), x)
    with pytest.raises(ValueError, match="means"):
        nearest_mode_direction(x, torch.zeros(5, 2))

"""Score networks (scoregan.models.score_nets): the denoising score-matching loss at the exact score is
its closed-form minimum; the network is parametrised over σ."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan.models import ScoreNet, dsm_loss
from tests.helpers import (
    F64,
)


def test_dsm_loss_at_the_exact_score_is_its_closed_form_minimum():
    """x ~ N(0, s²I), s*(x̃, σ) = −x̃/(s² + σ²): E‖σ s* + ε‖² = d s²/(s² + σ²), and any other field scores worse."""
    g = torch.Generator().manual_seed(0)
    s, sigma, n, d = 1.5, 0.7, 200_000, 2
    x = s * torch.randn(n, d, generator=g, dtype=F64)
    eps = torch.randn(n, d, generator=g, dtype=F64)

    class Exact(torch.nn.Module):
        def __init__(self, scale=1.0):
            super().__init__()
            self.scale = scale

        def forward(self, xt, sig):
            return -self.scale * xt / (s**2 + sig[:, None] ** 2)

    sig = torch.full((n,), sigma, dtype=F64)
    best = dsm_loss(Exact(), x, sig, eps).item()
    assert best == pytest.approx(d * s**2 / (s**2 + sigma**2), rel=0.01)
    assert dsm_loss(Exact(1.2), x, sig, eps).item() > best + 0.01
    assert dsm_loss(Exact(0.8), x, sig, eps).item() > best + 0.01


def test_score_net_is_parametrised_over_sigma():
    """s(x, σ) = F(x, log σ) / σ."""
    net = ScoreNet(2, hidden=[8]).to(F64)
    x = torch.randn(4, 2, dtype=F64)
    out = net(x, torch.full((4,), 0.5, dtype=F64))
    assert torch.allclose(out, net.net(x, math.log(0.5)) / 0.5) and torch.equal(out, net(x, 0.5))

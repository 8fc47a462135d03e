"""Adversarial update rules: their losses are the textbook ones, and a step moves the right way."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scoregan.config import load_config
from scoregan.data import make_dataset
from scoregan.objectives import divergence
from scoregan.trainers import get_rule
from scoregan.trainers.adversarial import fgan_discriminator_loss, gradient_penalty
from scoregan.trainers.base import StepContext


def test_sgan_bound_is_the_logistic_loss_up_to_log4():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, generator=g, dtype=torch.float64), torch.randn(500, generator=g, dtype=torch.float64)
    ours = fgan_discriminator_loss(divergence("sgan"), a, b)
    logistic = F.softplus(-a).mean() + F.softplus(b).mean()
    assert ours.item() == pytest.approx(logistic.item() - math.log(4), abs=1e-12)


def test_gradient_penalty_of_a_linear_critic():
    w = torch.tensor([3.0, 4.0], dtype=torch.float64)  # ‖∇D‖ = 5 everywhere
    critic = lambda x: x @ w  # noqa: E731
    x = torch.randn(64, 2, dtype=torch.float64)
    gp = gradient_penalty(critic, x, x + 1, torch.Generator().manual_seed(0), center=1.0)
    assert gp.item() == pytest.approx(16.0, rel=1e-12)
    gp0 = gradient_penalty(critic, x, x + 1, torch.Generator().manual_seed(0), center=0.0)
    assert gp0.item() == pytest.approx(25.0, rel=1e-12)


def _ctx(cfg, data, step=1):
    return StepContext(step, cfg.train.batch_size, data, torch.Generator().manual_seed(1),
                       torch.Generator().manual_seed(2), torch.device("cpu"), torch.float64)


@pytest.mark.parametrize("name", ["nsgan", "wgan-gp"])
def test_discriminator_learns_to_separate(name):
    """After a few critic updates with G frozen, D scores real data above generated samples."""
    cfg = load_config(None, [f"trainer.name={name}", "train.batch_size=128", "model.discriminator.hidden=[32, 32]",
                             "model.generator.hidden=[16]", "optim.lr_g=1e-12", "optim.lr_d=3e-3"])
    data = make_dataset(cfg.data)
    torch.manual_seed(0)
    rule = get_rule(name)(cfg, data, torch.device("cpu"), torch.float64)
    rule.build()
    ctx = _ctx(cfg, data)
    real, fake = ctx.real(512), rule.sample(512, torch.Generator().manual_seed(5))
    gap0 = (rule.D(real).mean() - rule.D(fake).mean()).item()
    for _ in range(30):
        logs = rule.step(ctx)
    gap1 = (rule.D(real).mean() - rule.D(fake).mean()).item()
    assert gap1 > gap0 + 0.5 and math.isfinite(logs["loss_d"]) and math.isfinite(logs["loss_g"])

"""Adversarial update rules: their losses are the textbook ones, and a step moves the right way."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scoregan import flows
from scoregan._autograd import input_gradient
from scoregan.config import load_config
from scoregan.data import make_dataset
from scoregan.objectives import divergence
from scoregan.objectives.kernels import mmd2
from scoregan.trainers import get_rule
from scoregan.trainers.adversarial import fgan_discriminator_loss, gradient_penalty
from scoregan.trainers.base import StepContext
from tests.helpers import (
    F64,
    make_ctx,
    rule_for,
)


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
    eps = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    gp = gradient_penalty(critic, x, x + 1, eps, center=1.0)
    assert gp.item() == pytest.approx(16.0, rel=1e-12)
    gp0 = gradient_penalty(critic, x, x + 1, eps, center=0.0)
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


def _fit_discriminator(rule, ctx, p_g_std, steps):
    """Train D with the generator replaced by N(0, p_g_std²) (1-D), returns the raw output on a grid."""
    rule.generate = lambda c: p_g_std * c.normal(c.batch_size, 1)
    for _ in range(steps):
        rule.step(ctx)
    return rule.D


def test_saturating_loss_vanishes_where_the_non_saturating_one_does_not():
    """DESIGN §1: far from the data (logit v → −∞) −softplus(v) has gradient → 0, softplus(−v) → −1."""
    v = torch.tensor([-12.0, 0.0, 3.0], dtype=F64, requires_grad=True)
    grads = {}
    for name in ("sgan", "nsgan"):
        rule, _, _ = rule_for(name)
        (g,) = torch.autograd.grad(3 * rule.g_loss(v), v)  # g_loss is the batch mean
        grads[name] = g
    assert torch.allclose(grads["sgan"], -torch.sigmoid(v.detach()), atol=1e-12)
    assert torch.allclose(grads["nsgan"], -torch.sigmoid(-v.detach()), atol=1e-12)
    assert abs(grads["sgan"][0]) < 1e-5 and abs(grads["nsgan"][0] + 1) < 1e-5


def test_fgan_takes_its_divergence_and_generator_loss_from_the_config():
    rule, _, _ = rule_for("fgan", "trainer.divergence=hellinger", "trainer.generator_loss=non_saturating")
    assert rule.div.name == "hellinger" and rule.loss.name == "non_saturating"
    rule, _, _ = rule_for("fgan", "trainer.divergence=alpha", "trainer.alpha=0.5")
    assert rule.div.alpha == 0.5 and rule.loss.name == "fgan"
    u = torch.linspace(-2, 2, 5, dtype=F64)
    assert torch.allclose(rule.g_loss(u), -rule.div.f_star_of_activation(u).mean())


def test_trained_fgan_discriminator_estimates_the_log_ratio():
    """1-D data ½N(−1.5, 0.5²) + ½N(1.5, 0.5²) vs a fixed generator N(0, 1.5²): the KL f-GAN's raw output → log r."""
    rule, cfg, data = rule_for("fgan", "data.name=gmm", "data.dim=1", "data.n_modes=2", "data.radius=1.5",
                               "data.std=0.5", "train.batch_size=256", "optim.lr_d=5e-3", "optim.lr_g=1e-12",
                               "model.discriminator.hidden=[32, 32]", "model.discriminator.activation=tanh",
                               "trainer.divergence=kl")
    ctx = make_ctx(cfg, data)
    D = _fit_discriminator(rule, ctx, 1.5, 250)
    x = torch.tensor([-1.5, -1.0, -0.5, 0.5, 1.0, 1.5], dtype=F64)[:, None]  # where both densities have mass
    log_r = data.mixture.log_prob(x) - torch.distributions.Normal(0.0, 1.5).log_prob(x[:, 0]).to(F64)
    with torch.no_grad():
        out = D(x)
    assert torch.allclose(data.mixture.means.flatten().sort().values, torch.tensor([-1.5, 1.5], dtype=F64))
    assert (out - log_r).abs().max() < 0.35, (out, log_r)  # log r spans [−1.5, 0.9] on this grid


@pytest.mark.parametrize("name", ["sgan", "lsgan", "hinge", "mmd-gan"])
def test_critic_learns_to_separate(name):
    rule, cfg, data = rule_for(name, "optim.lr_g=1e-12", "optim.lr_d=3e-3", "train.batch_size=128")
    ctx = make_ctx(cfg, data)
    real, fake = ctx.real(256), rule.sample(256, torch.Generator().manual_seed(5))

    def gap():
        with torch.no_grad():
            if name == "mmd-gan":
                return mmd2(rule.kernel, rule.D(real), rule.D(fake)).item()
            return (rule.D(real).mean() - rule.D(fake).mean()).item()

    g0 = gap()
    for _ in range(6 if name == "mmd-gan" else 30):
        logs = rule.step(ctx)
    assert gap() > g0 + (0.05 if name == "mmd-gan" else 0.5) and all(math.isfinite(v) for v in logs.values())


def test_mmd2_is_the_u_statistic():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 2, generator=g, dtype=F64), torch.randn(5, 2, generator=g, dtype=F64) + 1

    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / 2)

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    rule, _, _ = rule_for("gmmn", "trainer.bandwidth=1.0")
    assert mmd2(rule.kernel, x, y).item() == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_median_mmd2_uses_one_bandwidth_for_its_three_terms():
    """bandwidth: median fixes h once from the pooled batch: the loss is the metric's MMD² at that h
    (resolving each of k(x, x), k(y, y), k(x, y) on its own points gave a different number)."""
    from scoregan.metrics import mmd2 as metric_mmd2
    from scoregan.objectives import kernel

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(60, 2, generator=g, dtype=F64) * 0.3, torch.randn(40, 2, generator=g, dtype=F64) * 3 + 1
    ref = metric_mmd2(x, y)  # unbiased, median heuristic on [x; y]
    assert mmd2(kernel("gaussian", bandwidth="median"), x, y).item() == pytest.approx(ref.value, rel=1e-10)
    assert mmd2(kernel("gaussian", bandwidth=ref.bandwidth), x, y).item() == pytest.approx(ref.value, rel=1e-10)


def test_gmmn_decreases_the_mmd_to_the_data():
    rule, cfg, data = rule_for("gmmn", "optim.lr_g=3e-3", "train.batch_size=128")
    ctx = make_ctx(cfg, data)
    ref = data.sample(512, generator=torch.Generator().manual_seed(9)).to(F64)

    def dist():
        return mmd2(rule.kernel, rule.sample(512, torch.Generator().manual_seed(3)), ref).item()

    d0 = dist()
    for _ in range(40):
        rule.step(ctx)
    assert dist() < 0.5 * d0


def _field_and_mode(rule, q):
    """The rule's velocity field at q, and the modes D was evaluated in."""
    seen = []
    hook = rule.D.register_forward_hook(lambda m, i, o: seen.append(m.training))
    try:
        v = rule.velocity_field(torch.Generator().manual_seed(0))(q)
    finally:
        hook.remove()
    return v, seen


@pytest.mark.parametrize("name,extra", [("nsgan", []), ("sgan", []), ("fgan", ["trainer.divergence=pearson"]),
                                        ("fgan", ["trainer.divergence=hellinger", "trainer.generator_loss=saturating"])])
def test_fgan_velocity_field_is_the_discriminator_form(name, extra):
    """For the f-GAN family velocity_field is flows.fgan_velocity_from_discriminator(x, D, f, ℓ_G), with D in
    eval mode and no gradient left on its parameters."""
    rule, _, _ = rule_for(name, *extra)
    q = torch.randn(40, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    v, seen = _field_and_mode(rule, q)
    expected = flows.fgan_velocity_from_discriminator(q, rule.D, rule.div, rule.loss)
    assert v.abs().max() > 0
    assert torch.allclose(v, expected, rtol=0, atol=1e-10)
    assert seen and not any(seen) and rule.D.training
    assert all(p.grad is None for p in rule.D.parameters())


@pytest.mark.parametrize("name", ["lsgan", "hinge", "wgan-gp"])
def test_velocity_field_of_other_scalar_discriminators_is_minus_the_per_sample_loss_gradient(name):
    """lsgan: −(D − 1)∇D; hinge and WGAN-GP: ∇D (the critic gradient)."""
    rule, _, _ = rule_for(name)
    q = torch.randn(40, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    v, seen = _field_and_mode(rule, q)
    grad = input_gradient(rule.D, q)
    with torch.no_grad():
        d = rule.D(q).reshape(-1)
    expected = -(d - 1)[:, None] * grad if name == "lsgan" else grad
    assert torch.allclose(v, expected, rtol=0, atol=1e-10)
    assert not any(seen) and rule.D.training


def test_velocity_field_of_mmd_rules():
    """MMD-GAN (a feature map, no scalar D) has none; GMMN's is the witness gradient of its batches."""
    assert rule_for("mmd-gan")[0].velocity_field(torch.Generator().manual_seed(0)) is None
    rule, cfg, data = rule_for("gmmn")
    field = rule.velocity_field(torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    y = data.sample(cfg.train.batch_size, generator=g).to(F64)
    z = torch.randn(cfg.train.batch_size, cfg.model.latent_dim, generator=g, dtype=F64)
    with torch.no_grad():
        x = rule.G(z)
    q = torch.randn(30, 2, dtype=F64)
    assert torch.allclose(field(q), flows.ipm_velocity(q, rule.kernel, y, x), rtol=0, atol=1e-10)

"""The kernel flow-matching GAN (scoregan.trainers.kernel_flow): its target is x + η ∇D̂(x) for every
kernel, its inner steps and its reference bank."""

from __future__ import annotations

import pytest
import torch

from scoregan import flows
from tests.helpers import (
    capture_regression,
    make_ctx,
    rule_for,
)


def _witness_grad_by_autograd(x, data, generated, phi):
    """∇ₓ [mean_j φ(‖x − y_j‖²) − mean_i φ(‖x − x_i‖²)] by autograd (centres detached)."""
    xg = x.clone().requires_grad_(True)

    def mean_k(c):
        return phi(((xg[:, None, :] - c[None]) ** 2).sum(-1)).mean(1)

    (g,) = torch.autograd.grad((mean_k(data) - mean_k(generated)).sum(), xg)
    return g


@pytest.mark.parametrize("kernel,extra,phi", [
    ("gaussian", ["trainer.bandwidth=[0.5, 2.0]"],
     lambda s: 0.5 * torch.exp(-s / (2 * 0.25)) + 0.5 * torch.exp(-s / (2 * 4.0))),
    ("coulomb", ["trainer.eps=0.3"], lambda s: -0.5 * torch.log(s + 0.09)),  # order 1 in 2-D
    ("polyharmonic", ["trainer.order=2", "trainer.eps=0.0"], lambda s: 0.5 * s * torch.log(s + 1e-300)),  # r² log r
    ("energy", [], lambda s: -torch.sqrt(s + 1e-300)),
])
def test_kernel_flow_target_is_x_plus_eta_witness_gradient(kernel, extra, phi):
    rule, cfg, data = rule_for("kernel-flow", f"trainer.kernel={kernel}", "trainer.step_size=0.7", *extra)
    calls = capture_regression(rule)
    ctx = make_ctx(cfg, data, seed=3)
    replay = make_ctx(cfg, data, seed=3)
    with torch.no_grad():
        y, z = replay.real(), replay.normal(cfg.train.batch_size, cfg.model.latent_dim)
        x = rule.G(z)
    rule.step(ctx)
    (z_seen, target), = calls
    assert torch.equal(z_seen, z)
    expected = x + 0.7 * _witness_grad_by_autograd(x, y, x, phi)
    assert torch.allclose(target, expected, rtol=1e-9, atol=1e-10)


def test_kernel_flow_inner_steps_fit_the_target_and_the_bank_is_a_fifo():
    rule, cfg, data = rule_for("kernel-flow", "trainer.bank_size=96", "trainer.inner_steps=25", "optim.lr_g=3e-3")
    calls = capture_regression(rule)
    replay = make_ctx(cfg, data)
    batch, first_bank = replay.real(), replay.real(96)
    with torch.no_grad():
        before = rule.G(replay.normal(32, cfg.model.latent_dim))
    rule.step(make_ctx(cfg, data))
    z, target = calls[0]
    assert torch.equal(rule.bank, torch.cat([batch, first_bank])[:96])  # newest batch in front
    with torch.no_grad():
        after = rule.G(z)
    assert (after - target).norm(dim=1).mean() < 0.5 * (before - target).norm(dim=1).mean()


def test_velocity_field_is_the_witness_gradient_of_its_own_batches():
    """velocity_field(g) = flows.ipm_velocity(·, kernel, Y, G(z)) with Y, then z drawn from g; it leaves the
    global RNG, G's mode and G's gradients alone and answers in the query's dtype."""
    rule, cfg, data = rule_for("kernel-flow")
    state = torch.get_rng_state()
    seen = []
    hook = rule.G.register_forward_hook(lambda m, i, o: seen.append(m.training))
    field = rule.velocity_field(torch.Generator().manual_seed(11))
    hook.remove()
    assert torch.equal(torch.get_rng_state(), state)
    assert seen == [False] and rule.G.training
    g = torch.Generator().manual_seed(11)
    y = data.sample(cfg.train.batch_size, generator=g).to(torch.float64)
    z = torch.randn(cfg.train.batch_size, cfg.model.latent_dim, generator=g, dtype=torch.float64)
    with torch.no_grad():
        x = rule.G(z)
    q = torch.randn(50, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = field(q)
    assert v.shape == (50, 2) and v.abs().max() > 0
    assert torch.allclose(v, flows.ipm_velocity(q, rule.kernel, y, x), rtol=0, atol=1e-10)
    assert field(q.float()).dtype == torch.float32
    assert all(p.grad is None for p in rule.G.parameters())
    assert field.label.startswith("∇D̂")

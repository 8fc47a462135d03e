"""Conditional flow matching (scoregan.trainers.flow_matching): the OT coupling, the regressed velocity,
NFE and likelihood of an exact field, and flow matching from a trained generator."""

from __future__ import annotations

import itertools

import pytest
import torch

from scoregan.config import load_config
from scoregan.experiment.loop import Trainer
from scoregan.trainers.flow_matching import minibatch_ot_permutation
from tests.helpers import (
    F64,
    FAST,
    config_path,
    make_ctx,
    rule_for,
)


def _has_pot() -> bool:
    try:
        import ot  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("solver", ["scipy", pytest.param("pot", marks=pytest.mark.skipif(not _has_pot(),
                                                                                         reason="POT not installed"))])
def test_ot_coupling_is_the_cost_minimising_permutation(solver):
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(7, 2, generator=g, dtype=F64), torch.randn(7, 2, generator=g, dtype=F64) * 2 + 1
    perm = minibatch_ot_permutation(x0, x1, solver)
    assert sorted(perm.tolist()) == list(range(7))

    def cost(p):
        return float(((x0 - x1[list(p)]) ** 2).sum())

    best = min(cost(p) for p in itertools.permutations(range(7)))
    assert cost(perm.tolist()) == pytest.approx(best, rel=1e-12)
    x0, x1 = torch.randn(128, 3, generator=g, dtype=F64), torch.randn(128, 3, generator=g, dtype=F64)
    perm = minibatch_ot_permutation(x0, x1, solver)
    c = torch.cdist(x0, x1) ** 2
    base = c[torch.arange(128), perm].sum()
    for i, j in torch.randint(0, 128, (300, 2), generator=g).tolist():  # no pair swap improves it
        swapped = base - c[i, perm[i]] - c[j, perm[j]] + c[i, perm[j]] + c[j, perm[i]]
        assert swapped >= base - 1e-9


@pytest.mark.parametrize("name", ["cfm", "ot-cfm"])
def test_cfm_regresses_the_straight_conditional_velocity(name):
    """I-CFM: loss = mean ‖v(x_t, t) − (x1 − x0)‖² at x_t = (1 − t) x0 + t x1 for independent pairs;
    OT-CFM: the same with x1 permuted by the batch's OT plan."""
    rule, cfg, data = rule_for(name)
    replay = make_ctx(cfg, data, seed=4)
    x1 = replay.real()
    x0 = replay.normal(x1.shape[0], 2)
    if name == "ot-cfm":
        x1 = x1[minibatch_ot_permutation(x0, x1)]
    t = torch.rand(x1.shape[0], generator=replay.noise_rng, dtype=F64)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    with torch.no_grad():
        expected = (rule.v(xt, t) - (x1 - x0)).pow(2).sum(1).mean().item()
    logs = rule.step(make_ctx(cfg, data, seed=4))
    assert logs["loss_v"] == pytest.approx(expected, rel=1e-12)
    if name == "ot-cfm":  # the coupling shortens the pairs: mean ‖x1 − x0‖² below the independent one
        x1_ind = make_ctx(cfg, data, seed=4).real()
        assert (x1 - x0).pow(2).sum(1).mean() < 0.8 * (x1_ind - x0).pow(2).sum(1).mean()


def test_cfm_sampling_reports_nfe_and_the_likelihood_of_an_exact_field():
    rule, _, _ = rule_for("cfm", "trainer.solver=rk4", "trainer.ode_steps=3", "trainer.source_std=2.0")
    x = rule.sample(10, torch.Generator().manual_seed(0))
    assert x.shape == (10, 2) and rule.last_nfe == 12
    mu = torch.tensor([1.0, -2.0], dtype=F64)

    class Shift(torch.nn.Module):  # the flow x0 + t μ: p1 = N(μ, 2² I)
        def forward(self, x, t):
            return mu.expand_as(x)

    rule.v = Shift()
    pts = torch.randn(50, 2, dtype=F64)
    lp = rule.log_prob(pts).log_prob
    assert torch.allclose(lp, torch.distributions.Normal(mu, 2.0).log_prob(pts).sum(1), atol=1e-6)


def test_cfm_from_a_trained_generator(tmp_path):
    src = load_config(config_path("8gaussians", "kernel-flow"), [*FAST, "train.steps=3", "eval.n_samples=32"])
    Trainer(src, tmp_path / "src").fit()
    rule, cfg, data = rule_for("cfm", "trainer.source=generator", f"trainer.source_run={tmp_path / 'src'}",
                               "trainer.solver=euler", "trainer.ode_steps=1")
    with torch.no_grad():
        rule.v.net.body.net[-1].weight.zero_()
        rule.v.net.body.net[-1].bias.zero_()  # v ≡ 0: one Euler step returns the generator's samples
    x = rule.sample(16, torch.Generator().manual_seed(0))
    g = rule.source_G(torch.randn(16, src.model.latent_dim, generator=torch.Generator().manual_seed(0), dtype=F64))
    assert torch.equal(x, g) and rule.last_nfe == 1
    rule.step(make_ctx(cfg, data))
    with pytest.raises(ValueError, match="gaussian"):
        rule.log_prob(x)

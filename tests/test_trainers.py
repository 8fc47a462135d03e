"""Every update rule: a few CPU steps, and a property the math fixes (targets, couplings, optima, resume)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from scoregan.checkpoint import load_checkpoint
from scoregan.config import ConfigError, load_config
from scoregan.data import make_dataset
from scoregan.models import ScoreNet, dsm_loss
from scoregan.experiment.callbacks import StopAtStep
from scoregan.experiment.runs import build_rule
from scoregan.trainers import TRAINERS, get_rule
from scoregan.trainers.base import StepContext
from scoregan.trainers.flow_matching import minibatch_ot_permutation
from scoregan.objectives.kernels import mmd2
from scoregan.experiment.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64
ISSUE_TRAINERS = ["nsgan", "sgan", "lsgan", "hinge", "fgan-kl", "fgan-reverse_kl", "fgan-pearson", "fgan-hellinger",
                  "fgan-js", "wgan-gp", "mmd-gan", "gmmn", "score-gan", "kernel-flow", "cfm", "ot-cfm"]
FAST = ["train.batch_size=32", "model.generator.hidden=[16, 16]", "model.discriminator.hidden=[16, 16]",
        "train.progress=false", "tracking.mode=disabled", "eval.figures=false", "eval.n_samples=64"]
SMALL_NETS = {
    "score-gan": ["trainer.score_net.hidden=[16]", "trainer.generator_score_net.hidden=[16]",
                  "trainer.ratio_net.hidden=[16]", "trainer.data_score_steps=10", "trainer.score_warmup=3",
                  "trainer.data_score_cache=null"],
    "cfm": ["trainer.velocity_net.hidden=[16]"],
    "ot-cfm": ["trainer.velocity_net.hidden=[16]"],
}


def config_path(target: str, trainer: str) -> Path:
    return ROOT / "configs" / "toy" / f"{target}-{trainer}.yaml"


def rule_for(name: str, *overrides: str, config: str | None = None):
    """A built rule on CPU float64 (seeded) and a step context factory."""
    cfg = load_config(config, [f"trainer.name={name}", *FAST, *SMALL_NETS.get(name, []), *overrides])
    data = make_dataset(cfg.data)
    torch.manual_seed(0)
    cfg.train.dtype = "float64"
    return build_rule(cfg, data, torch.device("cpu")), cfg, data


def make_ctx(cfg, data, step=1, seed=0):
    return StepContext(step, cfg.train.batch_size, data, torch.Generator().manual_seed(seed + 1),
                       torch.Generator().manual_seed(seed + 2), torch.device("cpu"), F64)


def capture_perturbation(rule):
    """Record the clean batch x and its perturbation x̃ of a score-GAN rule's ``perturb`` call."""
    seen = {}
    orig = rule.perturb

    def spy(ctx, x, sigma):
        out = orig(ctx, x, sigma)
        seen.update(x=x.clone(), x_noisy=out[0].clone())
        return out

    rule.perturb = spy
    return seen


def capture_regression(rule):
    """Record (z, target) of every ``regress`` call of a generator rule."""
    calls = []
    orig = rule.regress

    def spy(z, target, steps=1, **kw):
        calls.append((z.clone(), target.clone()))
        return orig(z, target, steps, **kw)

    rule.regress = spy
    return calls


# ------------------------------------------------------------------------------- registry and configs
def test_every_variant_is_registered_with_a_typed_config():
    assert {"nsgan", "sgan", "lsgan", "hinge", "fgan", "wgan-gp", "mmd-gan", "gmmn", "score-gan", "kernel-flow",
            "cfm", "ot-cfm"} <= set(TRAINERS)
    for name, rule in TRAINERS.items():
        assert isinstance(load_config(None, [f"trainer.name={name}"]).trainer, rule.Config)


@pytest.mark.parametrize("target", ["8gaussians", "25gaussians"])
def test_a_config_per_trainer_and_target_exposing_the_mixture(target):
    for trainer in ISSUE_TRAINERS:
        path = config_path(target, trainer)
        assert path.is_file(), f"missing {path.relative_to(ROOT)}"
        cfg = load_config(path)
        assert cfg.data.name == target
        assert cfg.trainer.name == ("fgan" if trainer.startswith("fgan-") else trainer)
        assert None not in (cfg.data.radius, cfg.data.std, cfg.data.n_modes)
        if trainer.startswith("fgan-"):
            assert cfg.trainer.divergence == trainer[5:]
        moved = load_config(path, ["data.radius=2.5", "data.std=0.2"])  # pointed at another target by --set
        assert (moved.data.radius, moved.data.std) == (2.5, 0.2)


def test_config_errors_are_named():
    with pytest.raises(ConfigError, match="trainer.alpha"):
        load_config(None, ["trainer.name=fgan", "trainer.divergence=alpha"])
    with pytest.raises(ConfigError, match="laplace kernel takes one number"):
        load_config(None, ["trainer.name=kernel-flow", "trainer.kernel=laplace", "trainer.bandwidth=[1, 2]"])
    with pytest.raises(ConfigError, match="median"):
        load_config(None, ["trainer.name=kernel-flow", "trainer.bandwidth=widest"])
    with pytest.raises(ConfigError, match="ode_steps is required"):
        load_config(None, ["trainer.name=cfm", "trainer.solver=euler"])
    with pytest.raises(ConfigError, match="source_run"):
        load_config(None, ["trainer.name=cfm", "trainer.source=generator"])
    with pytest.raises(ConfigError, match="sigma_min"):
        load_config(None, ["trainer.name=score-gan", "trainer.sigma_min=3", "trainer.sigma_max=1"])


# ------------------------------------------------------------------------------- adversarial family
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


def _fit_discriminator(rule, ctx, p_g_std, steps):
    """Train D with the generator replaced by N(0, p_g_std²) (1-D), returns the raw output on a grid."""
    rule.generate = lambda c: p_g_std * c.normal(c.batch_size, 1)
    for _ in range(steps):
        rule.step(ctx)
    return rule.D


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


# ------------------------------------------------------------------------------- kernel flow-matching GAN
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
        before = rule.G(replay.normal(32, 2))
    rule.step(make_ctx(cfg, data))
    z, target = calls[0]
    assert torch.equal(rule.bank, torch.cat([batch, first_bank])[:96])  # newest batch in front
    with torch.no_grad():
        after = rule.G(z)
    assert (after - target).norm(dim=1).mean() < 0.5 * (before - target).norm(dim=1).mean()


# ------------------------------------------------------------------------------- score-matching GAN
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


@pytest.mark.parametrize("div,loss,needs_ratio", [("reverse_kl", "fgan", False), ("kl", "fgan", True),
                                                  ("pearson", "hinge", False), ("js", "non_saturating", True)])
def test_score_gan_target_is_x_plus_eta_sigma2_w_score_difference(div, loss, needs_ratio):
    rule, cfg, data = rule_for("score-gan", f"trainer.divergence={div}", f"trainer.generator_loss={loss}",
                               "trainer.data_score=exact", "trainer.sigma_mode=fixed", "trainer.sigma=0.4",
                               "trainer.step_size=0.6", "trainer.score_warmup=0")
    assert (rule.ratio is not None) == needs_ratio
    calls = capture_regression(rule)
    seen = capture_perturbation(rule)
    rule.step(make_ctx(cfg, data))
    _, target = calls[0]
    x, xt = seen["x"], seen["x_noisy"]
    sd = data.mixture.perturbed(0.4).score(xt)  # exact score of p_d * N(0, 0.4²)
    with torch.no_grad():
        sg = rule.s_g(xt, 0.4)
        u = rule.ratio(xt, 0.4) if needs_ratio else torch.zeros(xt.shape[0], dtype=F64)
    w = {("reverse_kl", "fgan"): torch.ones_like(u), ("kl", "fgan"): torch.exp(u),
         ("pearson", "hinge"): torch.ones_like(u), ("js", "non_saturating"): torch.sigmoid(-u)}[(div, loss)]
    expected = x + 0.6 * 0.4**2 * w[:, None] * (sd - sg)
    assert torch.allclose(target, expected, rtol=1e-9, atol=1e-12)


def test_score_gan_noise_level_weights():
    sig = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=F64)
    for extra, want in [([], sig**2), (["trainer.sigma_pivot=1.0"], sig * torch.tensor([1.0, 1.0, 1.0, 3.0], dtype=F64)),
                        (["trainer.sigma_weighting=sigma"], sig), (["trainer.sigma_weighting=none"], torch.ones(4, dtype=F64))]:
        rule, _, _ = rule_for("score-gan", *extra)
        assert torch.allclose(rule.sigma_weight(sig), want)


def test_score_gan_sigma_modes():
    rule, cfg, data = rule_for("score-gan", "trainer.sigma_mode=anneal", "trainer.sigma_max=2.0",
                               "trainer.sigma_min=0.1", "trainer.anneal_fraction=0.5", "train.steps=100")
    s = [rule.sigmas(make_ctx(cfg, data, step=k), 3)[0].item() for k in (1, 26, 51, 101)]
    assert s[0] == pytest.approx(2.0) and s[1] == pytest.approx(math.sqrt(0.2)) and s[2] == s[3] == pytest.approx(0.1)
    rule, cfg, data = rule_for("score-gan", "trainer.sigma_mode=progressive", "trainer.sigma_max=2.0",
                               "trainer.sigma_min=0.1", "trainer.anneal_fraction=0.5", "train.steps=100")
    for step, low in ((1, 2.0), (26, math.sqrt(0.2)), (90, 0.1)):  # log-uniform on [σ_lo(t), σ_max]
        d = rule.sigmas(make_ctx(cfg, data, step=step), 4000)
        assert d.min() >= low - 1e-9 and d.max() <= 2.0 + 1e-9 and d.min() < low * 1.01
    rule, cfg, data = rule_for("score-gan", "trainer.sigma_mode=schedule", "trainer.sigma_max=2.0",
                               "trainer.sigma_min=0.1")
    draws = rule.sigmas(make_ctx(cfg, data), 20_000)
    assert draws.min() >= 0.1 and draws.max() <= 2.0
    assert torch.log(draws).mean().item() == pytest.approx(0.5 * (math.log(0.1) + math.log(2.0)), abs=0.02)
    assert torch.log(draws).std().item() == pytest.approx(math.log(20.0) / math.sqrt(12), rel=0.03)  # uniform in log
    rule, cfg, data = rule_for("score-gan", "trainer.sigma_mode=schedule", "trainer.sigma_max=8.0",
                               "trainer.sigma_min=0.5", "trainer.sigma_levels=4")
    levels = torch.unique(rule.sigmas(make_ctx(cfg, data), 1000))
    assert torch.allclose(levels, torch.tensor([0.5, 0.5 * 16 ** (1 / 3), 0.5 * 16 ** (2 / 3), 8.0], dtype=F64))


def test_data_score_is_fitted_once_and_reused(tmp_path):
    cache = ["trainer.data_score_cache=" + str(tmp_path), "trainer.data_score_steps=30"]
    rule, cfg, data = rule_for("score-gan", *cache)
    logs = rule.step(make_ctx(cfg, data))
    assert logs["data_score_cached"] == 0.0
    files = list((tmp_path / "data_scores").glob("*.pt"))
    assert len(files) == 1
    again, cfg2, data2 = rule_for("score-gan", *cache, "train.seed=5")
    logs2 = again.step(make_ctx(cfg2, data2))
    assert logs2["data_score_cached"] == 1.0 and logs2["data_score_loss"] == logs["data_score_loss"]
    for k, v in rule.s_d.state_dict().items():
        assert torch.equal(v, again.s_d.state_dict()[k])
    other, _, _ = rule_for("score-gan", *cache, "data.radius=3.0")
    assert other.data_score_key() != rule.data_score_key()


def test_data_score_network_fits_the_perturbed_mixture_score():
    """A short DSM fit of s_d already points where the exact perturbed score points."""
    rule, _, data = rule_for("score-gan", "trainer.data_score_steps=600", "trainer.score_net.hidden=[64, 64]",
                               "trainer.sigma_min=0.5", "trainer.sigma_max=2.0", "trainer.data_score_batch=256")
    rule.fit_data_score()
    x = data.sample(400, generator=torch.Generator().manual_seed(1)).to(F64) * 1.2
    with torch.no_grad():
        est = rule.s_d(x, 1.0)
    exact = data.mixture.perturbed(1.0).score(x)
    cos = torch.nn.functional.cosine_similarity(est, exact, dim=1)
    assert cos.mean() > 0.9


# ------------------------------------------------------------------------------- flow matching
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


# ------------------------------------------------------------------------------- exact resume
RESUME_CASES = {
    "sgan": [], "lsgan": [], "hinge": [], "fgan": ["trainer.divergence=pearson"], "gmmn": [],
    "mmd-gan": ["trainer.n_critic=2"],
    "kernel-flow": ["trainer.bank_size=64", "trainer.kernel=coulomb", "trainer.inner_steps=2"],
    "score-gan": ["trainer.divergence=kl", "trainer.sigma_mode=schedule"],  # ratio network included
    "cfm": ["trainer.sigma=0.1", "trainer.solver=euler", "trainer.ode_steps=4"],
    "ot-cfm": ["trainer.ema=0.9", "trainer.solver=euler", "trainer.ode_steps=4"],
}


@pytest.mark.parametrize("name", [*RESUME_CASES, "score-gan/batch"])
def test_resume_is_bit_identical(tmp_path, name):
    extra = RESUME_CASES.get(name, ["trainer.generator_score=batch", "trainer.generator_score_batch=32", "trainer.ema=0.9"])
    name = name.split("/")[0]
    cfg = load_config(None, [f"trainer.name={name}", *FAST, *SMALL_NETS.get(name, []), *extra,
                             "train.steps=6", "train.checkpoint_every=3", "train.eval_every=3", "train.log_every=1"])
    Trainer(cfg, tmp_path / "straight").fit()
    assert Trainer(cfg, tmp_path / "resumed", callbacks=[StopAtStep(3)]).fit().step == 3
    Trainer(cfg, tmp_path / "resumed", resume=True).fit()
    a = load_checkpoint(tmp_path / "straight/checkpoints/last.pt")["rule"]
    b = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")["rule"]
    assert set(a["modules"]) == set(b["modules"])
    for net, params in a["modules"].items():
        for k, v in params.items():
            assert torch.equal(v, b["modules"][net][k]), f"{net}.{k} differs after resume"
    for key, v in a["extra"].items():
        assert torch.equal(v, b["extra"][key]) if isinstance(v, torch.Tensor) else v == b["extra"][key]
    rows = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("straight", "resumed")]
    assert [json.loads(r) for r in rows[0]] == [json.loads(r) for r in rows[1]]


# ------------------------------------------------------------------------------- the toy benchmark
def test_toy_benchmark_writes_its_table_and_merges(tmp_path):
    from scoregan.experiment.bench_results import merge_results
    from scoregan.experiment.bench_toy import run_toy_benchmark

    kw = {"steps": 3, "batch_size": 16, "n_samples": 60, "n_draws": 2, "torchcfm": False, "log": lambda s: None,
          "overrides": ["model.generator.hidden=[8]", "model.discriminator.hidden=[8]"]}
    a = run_toy_benchmark(["8gaussians"], ["gmmn"], tmp_path / "a.json", **kw)
    run_toy_benchmark(["swiss_roll"], ["kernel-flow"], tmp_path / "b.json", **kw)
    (row,) = a["rows"]
    assert row["trainer"] == "gmmn" and row["steps"] == 3 and len(row["w2_draws"]) == 2 and row["nfe"] == 1
    assert row["w2_mean"] == pytest.approx(sum(row["w2_draws"]) / 2) and row["train_cpu_s"] > 0
    assert {"sliced_w2", "mmd2", "modes_covered", "hq_fraction"} <= set(row)
    merged = merge_results([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "all.json")
    assert [r["target"] for r in merged["rows"]] == ["8gaussians", "swiss_roll"]
    md = (tmp_path / "all.md").read_text()
    assert "## 8gaussians" in md and "## swiss_roll" in md and "| gmmn |" in md and "| kernel-flow |" in md
    assert (tmp_path / "all.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="not a benchmark target"):
        run_toy_benchmark(["moons"], ["gmmn"], tmp_path / "c.json", **kw)


def test_score_gan_batch_generator_score_is_the_empirical_score_of_fresh_samples(monkeypatch):
    """generator_score = batch: no s_g network; the target is x + η σ² (s_d − ŝ_g) with ŝ_g the
    perturbed empirical score of a fresh batch of ``generator_score_batch`` generated samples."""
    import scoregan.trainers.score_gan as sg_mod
    from scoregan.scores.empirical import empirical_score as real

    rule, cfg, data = rule_for("score-gan", "trainer.generator_score=batch", "trainer.generator_score_batch=50",
                               "trainer.data_score=exact", "trainer.sigma_mode=fixed", "trainer.sigma=0.4",
                               "trainer.step_size=0.6")
    assert rule.s_g is None and "generator_score" not in rule.modules
    seen = {}

    def spy(x, centres, sigma):
        seen.update(x=x.clone(), centres=centres.clone())
        return real(x, centres, sigma)

    monkeypatch.setattr(sg_mod, "empirical_score", spy)
    perturbed = capture_perturbation(rule)
    calls = capture_regression(rule)
    logs = rule.step(make_ctx(cfg, data))
    assert "loss_sg" not in logs
    _, target = calls[0]
    xt, centres = seen["x"], seen["centres"]
    assert torch.equal(xt, perturbed["x_noisy"]) and centres.shape == (50, data.dim)
    expected = perturbed["x"] + 0.6 * 0.4**2 * (data.mixture.perturbed(0.4).score(xt) - real(xt, centres, 0.4))
    assert torch.allclose(target, expected, rtol=1e-9, atol=1e-12)


def test_toy_benchmark_keeps_finished_rows_when_a_later_run_crashes(tmp_path, monkeypatch):
    """The JSON is rewritten after every row, so a crash in the middle of a long sweep loses nothing."""
    import scoregan.experiment.bench_toy as bt

    real = bt._run_scoregan
    calls = []

    def flaky(target, trainer, *args, **kw):
        calls.append(trainer)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(target, trainer, *args, **kw)

    monkeypatch.setattr(bt, "_run_scoregan", flaky)
    kw = {"steps": 3, "batch_size": 16, "n_samples": 60, "n_draws": 2, "torchcfm": False, "log": lambda s: None,
          "overrides": ["model.generator.hidden=[8]", "model.discriminator.hidden=[8]"]}
    with pytest.raises(RuntimeError, match="boom"):
        bt.run_toy_benchmark(["8gaussians"], ["gmmn", "kernel-flow"], tmp_path / "a.json", **kw)
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["complete"] is False and [r["trainer"] for r in saved["rows"]] == ["gmmn"]
    assert not (tmp_path / "a.json.tmp").exists()

    # --resume keeps the finished row (not retrained) and runs only the missing one
    calls.clear()
    monkeypatch.setattr(bt, "_run_scoregan", lambda target, trainer, *a, **k: (calls.append(trainer),
                                                                                real(target, trainer, *a, **k))[1])
    out = bt.run_toy_benchmark(["8gaussians"], ["gmmn", "kernel-flow"], tmp_path / "a.json", resume=True, **kw)
    assert calls == ["kernel-flow"] and out["complete"] is True
    assert [r["trainer"] for r in out["rows"]] == ["gmmn", "kernel-flow"]
    assert out["rows"][0] == saved["rows"][0] and out["floor"] == saved["floor"]
    assert (tmp_path / "a.md").read_text().count("| gmmn |") == 1
    with pytest.raises(ValueError, match="other settings.*steps: 3 there, 4 now"):
        bt.run_toy_benchmark(["8gaussians"], ["gmmn"], tmp_path / "a.json", resume=True, **{**kw, "steps": 4})


def test_data_score_cache_key_follows_the_training_split(tmp_path):
    """The cached s_d is fitted on the training points: another split (data.seed with data.holdout) or
    another file's contents under the same name must not reuse it."""
    import numpy as np

    def key(*overrides):
        cfg = load_config(None, ["trainer.name=score-gan", *overrides])
        return get_rule("score-gan")(cfg, make_dataset(cfg.data), torch.device("cpu"), F64).data_score_key()

    split = ["data.name=digits", "data.holdout=300"]
    assert key(*split, "data.seed=0") == key(*split, "data.seed=0") != key(*split, "data.seed=1")
    path = tmp_path / "pts.npz"
    np.savez(path, x=np.zeros((50, 2)))
    first = key("data.name=npz", f"data.path={path}")
    np.savez(path, x=np.ones((50, 2)))
    assert key("data.name=npz", f"data.path={path}") != first

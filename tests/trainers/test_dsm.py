"""The ``dsm`` trainer: EDM preconditioning identities, the denoiser loss against its Gaussian closed form,
a learned score against the exact one, the loop on digit images, an exact resume, samples of a 2-D toy."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan.checkpoint import load_checkpoint
from scoregan.config import ConfigError, load_config
from scoregan.data.base import MixtureDataset
from scoregan.experiment.loop import Trainer
from scoregan.experiment.runs import build_rule
from scoregan.scores import GaussianMixture
from scoregan.trainers.base import StepContext
from scoregan.trainers.dsm import EDMDenoiser, edm_loss, edm_preconditioning, edm_weight
from tests.helpers import F64, ROOT, gen, w2

DIGITS = ROOT / "configs/images/digits-dsm.yaml"
TOY = ROOT / "configs/toy/8gaussians-dsm.yaml"
TINY = ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "eval.n_samples=32",
        "eval.image_metrics=false", "train.batch_size=16", "model.unet.channels=8", "model.unet.groups=4",
        "model.unet.attention=false", "train.threads=1", "trainer.sample_steps=3"]


class _Zero(torch.nn.Module):
    """F ≡ 0 (with one unused parameter, so the module has a dtype)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, c):
        return torch.zeros_like(x)


def test_edm_preconditioning_matches_its_formulas_and_a_zero_network_denoises_by_c_skip():
    sd = 0.5
    sig = torch.logspace(-3, 2, 11, dtype=F64)
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sig, sd)
    assert c_skip.dtype == F64
    torch.testing.assert_close(c_skip, sd**2 / (sig**2 + sd**2))
    torch.testing.assert_close(c_out, sig * sd / (sig**2 + sd**2).sqrt())
    torch.testing.assert_close(c_in, 1 / (sig**2 + sd**2).sqrt())
    torch.testing.assert_close(c_noise, sig.log() / 4)
    torch.testing.assert_close(edm_weight(sig, sd), 1 / c_out**2)
    # unit input variance: Var(c_in (y + σ ε)) = 1 for Var y = σ_d²; unit target variance of F
    torch.testing.assert_close(c_in**2 * (sd**2 + sig**2), torch.ones_like(sig))

    D = EDMDenoiser(_Zero(), sd).to(F64)
    x, y, eps = (torch.randn(64, 5, generator=gen(i), dtype=F64) for i in range(3))
    for s in sig.tolist():
        cs = sd**2 / (s**2 + sd**2)
        torch.testing.assert_close(D(x, s), cs * x)
        # with F ≡ 0, D is the optimal denoiser of N(0, σ_d² I): its score is −x / (σ² + σ_d²)
        torch.testing.assert_close(D.score(x, s), -x / (s**2 + sd**2))
        lam = (s**2 + sd**2) / (s * sd) ** 2
        closed = lam * ((cs - 1) * y + cs * s * eps).pow(2).sum(1).mean()
        torch.testing.assert_close(edm_loss(D, y, torch.full((64,), s, dtype=F64), eps, sd), closed)


@pytest.mark.parametrize("sigma", [0.01, 0.3, 2.0, 30.0])
def test_the_loss_of_the_optimal_gaussian_denoiser_is_the_closed_form(sigma):
    """y ~ N(μ, s² I) in d dims: D*(x, σ) = (s² x + σ² μ)/(s² + σ²) reaches λ(σ) d s² σ²/(s² + σ²)."""
    d, s, sd, n = 3, 0.7, 0.5, 200_000
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    y = mu + s * torch.randn(n, d, generator=gen(1), dtype=F64)
    eps = torch.randn(n, d, generator=gen(2), dtype=F64)
    sig = torch.full((n,), sigma, dtype=F64)

    def d_star(x, sg):
        return (s**2 * x + sg[:, None] ** 2 * mu) / (s**2 + sg[:, None] ** 2)

    mc = float(edm_loss(d_star, y, sig, eps, sd))
    lam = (sigma**2 + sd**2) / (sigma * sd) ** 2
    per = lam * (d_star(y + sigma * eps, sig) - y).pow(2).sum(1)  # per-sample losses, for the standard error
    closed = lam * d * s**2 * sigma**2 / (s**2 + sigma**2)
    se = float(per.std()) / math.sqrt(n)
    assert abs(mc - closed) < 4 * se, (mc, closed, se)
    # any other denoiser does worse (here: the one of N(μ, (1.1 s)² I))
    s1 = 1.1 * s
    worse = float(edm_loss(lambda x, sg: (s1**2 * x + sg[:, None] ** 2 * mu) / (s1**2 + sg[:, None] ** 2), y, sig, eps, sd))
    assert worse > mc


def test_a_trained_mlp_denoiser_recovers_the_score_of_a_perturbed_gaussian():
    mu, s, sigma = torch.tensor([[1.0, -0.5]]), 0.6, 0.5
    data = MixtureDataset("gaussian", GaussianMixture(mu, s), {})
    cfg = load_config(None, ["trainer.name=dsm", "model.conditional=mlp", "trainer.net.hidden=[64, 64]",
                             "trainer.ema=0", "train.batch_size=256", "optim.lr_g=2e-3", "optim.beta1=0.9"])
    torch.manual_seed(0)
    rule = build_rule(cfg, data, torch.device("cpu"))
    data_rng, noise_rng = gen(1), gen(2)
    for k in range(400):
        rule.step(StepContext(k + 1, 256, data, data_rng, noise_rng, torch.device("cpu"), torch.float32))
    x = mu + math.sqrt(s**2 + sigma**2) * torch.randn(2000, 2, generator=gen(3))
    with torch.no_grad():
        got = rule.score(x, sigma)
    exact = -(x - mu) / (s**2 + sigma**2)
    rel = float((got - exact).norm(dim=1).mean() / exact.norm(dim=1).mean())
    assert rel < 0.2, rel


def test_the_dsm_trainer_trains_on_digit_images_and_samples_with_heun(tmp_path):
    cfg = load_config(DIGITS, [*TINY, "train.steps=3"])
    tr = Trainer(cfg, tmp_path)
    res = tr.fit()
    assert res.step == 3 and set(tr.rule.modules) == {"denoiser", "denoiser_ema"}
    x = tr.rule.sample(10, torch.Generator().manual_seed(0))
    assert x.shape == (10, 64) and torch.isfinite(x).all()
    assert tr.rule.last_nfe == 2 * 3 - 1
    s = tr.rule.score(x, 0.5)
    assert s.shape == (10, 64) and torch.isfinite(s).all()
    assert tr.rule.velocity_field(torch.Generator()) is None  # d ≠ 2


def test_the_dsm_trainer_resumes_bit_identically(tmp_path):
    run = [*TINY, "train.checkpoint_every=3", "train.eval_every=6"]
    Trainer(load_config(DIGITS, [*run, "train.steps=6"]), tmp_path / "straight").fit()
    Trainer(load_config(DIGITS, [*run, "train.steps=3"]), tmp_path / "cut").fit()
    Trainer(load_config(DIGITS, [*run, "train.steps=6"]), tmp_path / "cut", resume=True).fit()
    a, b = (load_checkpoint(tmp_path / d / "checkpoints/last.pt") for d in ("straight", "cut"))
    assert a["step"] == b["step"] == 6
    for net, params in a["rule"]["modules"].items():
        for k, v in params.items():
            assert torch.equal(v, b["rule"]["modules"][net][k]), f"{net}.{k}"
    for k, v in a["rule"]["optimizers"]["denoiser"]["state"].items():
        assert torch.equal(v["exp_avg"], b["rule"]["optimizers"]["denoiser"]["state"][k]["exp_avg"])


def test_samples_of_the_8_gaussians_approach_the_target(tmp_path):
    cfg = load_config(TOY, ["tracking.mode=disabled", "train.progress=false", "eval.figures=false",
                            "eval.n_samples=200", "train.steps=600", "train.eval_every=600",
                            "train.checkpoint_every=600", "trainer.net.hidden=[64, 64, 64]", "trainer.ema=0.99",
                            "optim.lr_g=2e-3", "train.threads=1"])
    tr = Trainer(cfg, tmp_path)
    tr.fit()
    rule, n = tr.rule, 1000
    target = tr.data.sample(n, generator=gen(11)).double()
    noise = cfg.trainer.sigma_max * torch.randn(n, 2, generator=gen(12), dtype=F64)
    w2_noise = w2(noise, target)
    # the best isotropic Gaussian fit of the target (mean, per-coordinate std): what a blurry sampler gives
    w2_gauss = w2(target.mean(0) + target.std() * torch.randn(n, 2, generator=gen(13), dtype=F64), target)
    x = rule.sample(n, torch.Generator().manual_seed(0)).double()
    assert rule.last_nfe == 2 * cfg.trainer.sample_steps - 1
    w2_heun = w2(x, target)
    assert torch.isfinite(x).all() and w2_heun < 0.1 * w2_noise and w2_heun < 0.6 * w2_gauss, (w2_heun, w2_noise,
                                                                                               w2_gauss)
    field = rule.velocity_field(gen(0))  # the figures' field: D(x, σ_d) − x, pointing at the modes
    v = field(target[:100])
    assert v.shape == (100, 2) and v.dtype == F64 and field.label.startswith("D(x")
    for sampler in ("sde", "pc"):
        rule.tcfg.sampler = sampler
        y = rule.sample(n, torch.Generator().manual_seed(0)).double()
        assert torch.isfinite(y).all() and rule.last_nfe > 0
        assert w2(y, target) < 0.2 * w2_noise, sampler


@pytest.mark.parametrize("lo, hi", [(3.0, 1.0), (2.0, 2.0)])
def test_sigma_min_must_be_below_sigma_max(lo, hi):
    with pytest.raises(ConfigError, match="trainer.sigma_min"):
        load_config(None, ["trainer.name=dsm", f"trainer.sigma_min={lo}", f"trainer.sigma_max={hi}"])
    with pytest.raises(ConfigError, match="trainer.sigma_min"):
        load_config(DIGITS, [f"trainer.sigma_min={lo}", f"trainer.sigma_max={hi}"])

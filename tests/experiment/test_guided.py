"""Discriminator-guided Langevin sampling from a trained run (scoregan.experiment.guided): each
trainer's link, and the documented chains in latent and data space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scoregan.sampling import (
    DiscriminatorGuidance,
    langevin,
    latent_langevin,
)
from tests.helpers import gen

F64 = torch.float64




# ------------------------------------------------------------------------------------- MALA


# ------------------------------------------------------------------------------- trained runs
TINY_RUN = ["tracking.mode=disabled", "train.progress=false", "train.device=cpu", "train.steps=20",
            "model.generator.hidden=[16]", "model.discriminator.hidden=[16]", "train.batch_size=32",
            "eval.n_samples=100", "eval.figures=false"]

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from scoregan import api

    run_dir = tmp_path_factory.mktemp("runs") / "nsgan"
    api.train("configs/toy/8gaussians-nsgan.yaml", overrides=TINY_RUN, run_dir=run_dir)
    return run_dir


def test_langevin_from_run_reads_each_discriminator_through_its_trainers_link(tmp_path):
    """LSGAN: D = p_d/(p_d + p_g), read with the probability link; with trainer.ema the chain starts
    from the moving-average generator that `scoregan sample` draws with; critics are noted; a
    feature-map discriminator (mmd-gan) is refused by name."""
    from scoregan import api
    from scoregan.experiment.guided import langevin_from_run
    from scoregan.experiment.runs import load_run

    runs = {}
    for name, extra in (("lsgan", ["trainer.ema=0.9"]), ("hinge", []), ("mmd-gan", ["trainer.feature_dim=4"]),
                        ("gmmn", [])):
        runs[name] = tmp_path / name
        api.train("configs/toy/8gaussians-nsgan.yaml",
                  overrides=[*TINY_RUN, f"trainer.name={name}", "train.steps=5", *extra], run_dir=runs[name])
    rep = langevin_from_run(runs["lsgan"], n=32, steps=3, step_size=0.01, seed=4, metrics=False)
    run = load_run(runs["lsgan"])
    assert rep["link"] == "probability"
    assert torch.equal(rep["initial"], run.sample(32, seed=4))  # G_ema's draws
    with torch.no_grad():
        assert not torch.equal(run.generator(torch.randn(32, 2, generator=gen(4))), rep["initial"])
    eps = torch.finfo(torch.float32).eps
    with torch.no_grad():
        d = run.discriminator(rep["samples"]).reshape(-1).clamp(eps, 1 - eps)
    assert rep["logit_after"] == pytest.approx(torch.log(d / (1 - d)).mean().item(), rel=1e-5)
    assert "not a log-ratio" in langevin_from_run(runs["hinge"], n=8, steps=1, step_size=0.01, metrics=False)["note"]
    with pytest.raises(ValueError, match="mmd-gan.*not a scalar critic") as err:
        langevin_from_run(runs["mmd-gan"], n=8, steps=1, step_size=0.01)
    assert "\n" not in str(err.value)  # one line
    rep = langevin_from_run(runs["gmmn"], n=8, steps=1, step_size=0.01, metrics=False)  # no network: its witness
    assert rep["guidance"] == "kernel witness" and "link" not in rep


@pytest.mark.parametrize("space", ["latent", "data"])
def test_langevin_from_run_is_the_documented_chain(tiny_run, tmp_path, space):
    from scoregan.experiment.guided import langevin_from_run
    from scoregan.experiment.runs import load_run
    from scoregan.scores import BankScore as KDEScore
    from scoregan.scores import scott_bandwidth

    out = tmp_path / "guided.npz"
    n, steps, h, lam, seed = 64, 10, 0.05, 2.0, 3
    rep = langevin_from_run(tiny_run, n=n, steps=steps, step_size=h, guidance_scale=lam, space=space, seed=seed,
                            out=out)
    # the same chain written out by hand from the run's networks
    run = load_run(tiny_run)
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, run.latent_dim, generator=g)
    with torch.no_grad():
        x0 = run.generator(z0)
    if space == "latent":
        z, x = latent_langevin(z0, run.generator, run.discriminator, steps=steps, step_size=h, guidance_scale=lam,
                               generator=g)
        assert torch.equal(rep["latents"], z)
    else:
        with torch.no_grad():
            bank = run.generator(torch.randn(2048, run.latent_dim, generator=g))
        bw = scott_bandwidth(bank)
        x = langevin(x0, score=KDEScore(bank), guidance=DiscriminatorGuidance(run.discriminator), sigmas=bw,
                     steps_per_level=steps, step_size=h * bw**2, guidance_scale=lam, generator=g)
        assert rep["bandwidth"] == pytest.approx(bw) and rep["eta"] == pytest.approx(h * bw**2)
    assert torch.equal(rep["initial"], x0) and torch.equal(rep["samples"], x)
    assert torch.equal(run.sample(n, seed=seed), x0)  # the draws of `scoregan sample --seed`
    disc = DiscriminatorGuidance(run.discriminator)
    assert rep["logit_before"] == pytest.approx(disc.value(x0).mean().item())
    assert rep["logit_after"] == pytest.approx(disc.value(x).mean().item())
    assert rep["guidance"] == "discriminator" and rep["eval"] == "cheap"
    for key in ("hq_fraction", "modes_covered", "sliced_w2", "mmd2", "energy", "fd"):
        assert f"{key}_before" in rep and f"{key}_after" in rep
    assert not any(k.startswith("w2_") for k in rep)  # exact W2 only with metrics="full"
    arrays = np.load(out)
    assert np.array_equal(arrays["x"], x.numpy()) and np.array_equal(arrays["x0"], x0.numpy())
    assert ("z" in arrays) == (space == "latent")
    assert out.with_suffix(".json").is_file() and out.with_suffix(".png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="space"):
        langevin_from_run(tiny_run, n=8, steps=1, step_size=0.01, space="pixel")


def test_langevin_from_run_evaluates_cheaply_by_default(tiny_run):
    """Default: the cheap metrics (no exact W2); "full" adds w2_*; "none" computes none."""
    from scoregan.experiment.guided import langevin_from_run

    kw = {"n": 48, "steps": 1, "step_size": 0.01, "seed": 1}
    cheap, full = langevin_from_run(tiny_run, **kw), langevin_from_run(tiny_run, metrics="full", **kw)
    none = langevin_from_run(tiny_run, metrics="none", **kw)
    assert "w2_before" not in cheap and full["w2_before"] > 0 and full["w2_after"] > 0
    for key in ("sliced_w2", "mmd2", "energy", "fd", "hq_fraction"):  # same draws: same values
        assert cheap[f"{key}_after"] == full[f"{key}_after"]
        assert f"{key}_before" not in none
    assert (cheap["eval"], full["eval"], none["eval"]) == ("cheap", "full", "none")
    with pytest.raises(ValueError, match="metrics"):
        langevin_from_run(tiny_run, metrics="w2", **kw)


# --------------------------------------------------------------------- particle-flow trainers
@pytest.fixture(scope="module")
def kernel_flow_run(tmp_path_factory):
    from scoregan import api

    run_dir = tmp_path_factory.mktemp("runs") / "kernel-flow"
    api.train("configs/toy/8gaussians-kernel-flow.yaml", overrides=[*TINY_RUN, "model.generator.hidden=[16]"],
              run_dir=run_dir)
    return run_dir


@pytest.mark.parametrize("space", ["latent", "data"])
def test_kernel_flow_run_is_guided_by_its_witness(kernel_flow_run, space):
    """One step by hand: the witness D̂ = mean_j k(·, y_j) − mean_i k(·, x_i) of the run's kernel, y the
    data bank (seed + 3), x the current particles, its gradient the MMD flow's velocity
    (flows.ipm_velocity); latent: z + η(−z + λ J_Gᵀ ∇D̂(G(z))) + √(2η)ξ; data: x + η(ŝ_g + λ∇D̂) + √(2η)ξ,
    then Tweedie's x + h²(ŝ_g + λ∇D̂) with the ensemble at the new x."""
    from scoregan import flows
    from scoregan.experiment.guided import langevin_from_run
    from scoregan.experiment.runs import load_run
    from scoregan.sampling import KernelGuidance
    from scoregan.scores import empirical_score, scott_bandwidth

    n, h, lam, seed, m = 40, 0.05, 3.0, 2, 300
    rep = langevin_from_run(kernel_flow_run, n=n, steps=1, step_size=h, guidance_scale=lam, space=space, seed=seed,
                            reference_size=m)
    run = load_run(kernel_flow_run)
    G, kernel = run.sampling_generator, run.rule.kernel
    y = run.data.sample(m, generator=torch.Generator().manual_seed(seed + 3))
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, run.latent_dim, generator=g)
    with torch.no_grad():
        x0 = G(z0)

    def witness_grad(x):
        return flows.ipm_velocity(x, kernel, y, x)

    if space == "latent":
        zg = z0.clone().requires_grad_(True)
        (jt,) = torch.autograd.grad(G(zg), zg, grad_outputs=witness_grad(x0))  # J_Gᵀ ∇D̂(G(z0))
        z1 = z0 + h * (-z0 + lam * jt) + math.sqrt(2 * h) * torch.randn(z0.shape, generator=g)
        assert torch.allclose(rep["latents"], z1, atol=1e-5)
        with torch.no_grad():
            x = G(z1)
    else:
        with torch.no_grad():
            bank = G(torch.randn(2048, run.latent_dim, generator=g))
        bw = scott_bandwidth(bank)
        eta = h * bw**2
        x1 = x0 + eta * (empirical_score(x0, bank, bw) + lam * witness_grad(x0))
        x1 = x1 + math.sqrt(2 * eta) * torch.randn(x0.shape, generator=g)
        x = x1 + bw**2 * (empirical_score(x1, bank, bw) + lam * witness_grad(x1))
        assert rep["bandwidth"] == pytest.approx(bw) and rep["eta"] == pytest.approx(eta)
    assert torch.equal(rep["initial"], x0) and torch.allclose(rep["samples"], x, atol=1e-5)
    assert rep["guidance"] == "kernel witness" and rep["kernel"] == "imq" and rep["reference_size"] == m
    assert "MMD gradient flow" in rep["note"] and "not a log-ratio" in rep["note"]
    assert rep["witness_before"] == pytest.approx(KernelGuidance(kernel, y).value(x0).mean().item(), rel=1e-5)
    assert "w2_before" not in rep and "sliced_w2_after" in rep


@pytest.fixture(scope="module")
def score_gan_run(tmp_path_factory):
    from scoregan import api
    from tests.helpers import SMALL_NETS

    run_dir = tmp_path_factory.mktemp("runs") / "score-gan"
    api.train("configs/toy/8gaussians-score-gan.yaml", overrides=[*TINY_RUN, *SMALL_NETS["score-gan"]],
              run_dir=run_dir)
    return run_dir


def test_score_gan_run_follows_its_data_score_in_data_space(score_gan_run, tmp_path):
    """By hand: x ← x + η s_d(x, σ) + √(2η)ξ (η = step_size·σ², σ = sigma_min), then x + σ² s_d(x, σ);
    the default space is data; latent space, a guidance scale and MALA are refused in one line."""
    from scoregan.experiment.guided import langevin_from_run
    from scoregan.experiment.runs import load_run

    n, h, seed, steps = 40, 0.2, 5, 2
    out = tmp_path / "sg.npz"
    rep = langevin_from_run(score_gan_run, n=n, steps=steps, step_size=h, seed=seed, out=out)
    run = load_run(score_gan_run)
    sigma = run.config.trainer.sigma_min
    s_d = run.rule.modules["data_score"]

    def score(x):
        with torch.no_grad():
            return s_d(x, torch.full((x.shape[0],), sigma))

    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, run.latent_dim, generator=g)
    with torch.no_grad():
        x = x0 = run.sampling_generator(z0)
    eta = h * sigma**2
    for _ in range(steps):
        x = x + eta * score(x) + math.sqrt(2 * eta) * torch.randn(x.shape, generator=g)
    x = x + sigma**2 * score(x)
    assert rep["space"] == "data" and rep["guidance"] == "data score" and rep["sigma"] == sigma
    assert rep["eta"] == pytest.approx(eta) and torch.equal(rep["initial"], x0)
    assert torch.allclose(rep["samples"], x, atol=1e-6) and not torch.equal(rep["samples"], x0)
    assert "logit_before" not in rep and "w2_before" not in rep and "hq_fraction_after" in rep
    assert out.with_suffix(".png").is_file() and '"guidance": "data score"' in out.with_suffix(".json").read_text()
    for kw, match in (({"space": "latent"}, "data space"), ({"guidance_scale": 2.0}, "guidance_scale"),
                      ({"mala": True}, "mala")):
        with pytest.raises(ValueError, match=match) as err:
            langevin_from_run(score_gan_run, n=8, steps=1, step_size=0.01, **kw)
        assert "\n" not in str(err.value)


def test_a_diverging_chain_writes_nothing(tmp_path):
    """sample --langevin never writes non-finite samples: a step size that blows up is one error line."""
    from scoregan.config import load_config
    from scoregan.experiment.guided import langevin_from_run
    from scoregan.experiment.loop import Trainer

    cfg = load_config(None, [*TINY_RUN, "trainer.name=nsgan"])
    Trainer(cfg, tmp_path / "run").fit()
    with pytest.raises(ValueError, match="refined samples are NaN or infinite: nothing written"):
        langevin_from_run(tmp_path / "run", n=16, steps=30, step_size=1e30, space="latent", out=tmp_path / "x.npz",
                          metrics=False)
    assert not (tmp_path / "x.npz").exists()

"""Discriminator-guided Langevin sampling from a trained run (scoregan.experiment.guided): each
trainer's link, and the documented chains in latent and data space."""

from __future__ import annotations

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
    for name, extra in (("lsgan", ["trainer.ema=0.9"]), ("hinge", []), ("mmd-gan", ["trainer.feature_dim=4"])):
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
    with pytest.raises(ValueError, match="mmd-gan.*not a scalar critic"):
        langevin_from_run(runs["mmd-gan"], n=8, steps=1, step_size=0.01)


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
    for key in ("hq_fraction", "modes_covered", "w2"):
        assert f"{key}_before" in rep and f"{key}_after" in rep
    arrays = np.load(out)
    assert np.array_equal(arrays["x"], x.numpy()) and np.array_equal(arrays["x0"], x0.numpy())
    assert ("z" in arrays) == (space == "latent")
    assert out.with_suffix(".json").is_file() and out.with_suffix(".png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="space"):
        langevin_from_run(tiny_run, n=8, steps=1, step_size=0.01, space="pixel")

"""Discriminator Guidance (scoregan.trainers.dg): the logistic optimum logit D* = log p_d^σ − log p_g^σ in
closed form, a tiny dg run on a tiny digits dsm run through the loop, its bit-identical resume (the pool
included), guided sampling from the CLI and the one-line refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from scoregan import api
from scoregan.checkpoint import load_checkpoint
from scoregan.cli import main
from scoregan.config import load_config
from scoregan.experiment.loop import Trainer
from scoregan.models import RatioNet, RatioUNet
from scoregan.scores import GaussianMixture
from scoregan.trainers.dg import dg_loss
from tests.helpers import ROOT

F64 = torch.float64
TINY = ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "eval.n_samples=16",
        "eval.image_metrics=false", "train.batch_size=16", "model.unet.channels=8", "model.unet.groups=4",
        "model.unet.attention=false", "train.threads=1"]
DG = ROOT / "configs/images/digits-dg.yaml"


def _dg_cfg(score_run, steps: int, *extra: str):
    return load_config(DG, [*TINY, f"trainer.score_run={score_run}", "trainer.pool=24", "trainer.sample_steps=2",
                            f"train.steps={steps}", "train.checkpoint_every=2", "train.eval_every=4", *extra])


def test_the_dg_loss_learns_the_closed_form_log_ratio_of_perturbed_mixtures():
    torch.manual_seed(0)
    p_d = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=F64), 0.3)
    p_g = GaussianMixture(torch.tensor([[-0.6, 0.5], [1.4, -0.3]], dtype=F64), 0.45)
    D = RatioNet(2, hidden=(64, 64), activation="silu").to(F64)
    opt = torch.optim.Adam(D.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(400):
        y, x = p_d.sample(256, generator=g), p_g.sample(256, generator=g)
        s = torch.exp(torch.empty(512, dtype=F64).uniform_(np.log(0.3), np.log(1.0), generator=g))
        eps = torch.randn(512, 2, dtype=F64, generator=g)
        loss = dg_loss(D, y, x, s[:256], s[256:], eps[:256], eps[256:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    sigma = 0.5
    pd, pg = p_d.perturbed(sigma), p_g.perturbed(sigma)
    pts = torch.cat([pd.sample(400, generator=g), pg.sample(400, generator=g)])
    exact = pd.log_prob(pts) - pg.log_prob(pts)
    with torch.no_grad():
        learned = D(pts, sigma)
    corr = torch.corrcoef(torch.stack([learned, exact]))[0, 1].item()
    assert corr > 0.9, corr
    assert (learned - exact).abs().median() < 0.3 * exact.abs().median() + 0.1
    # the guided score s_g + ∇D moves toward the data score s_d
    x = pts.clone().requires_grad_(True)
    grad = torch.autograd.grad(D(x, sigma).sum(), x)[0]
    guided_err = (pg.score(pts) + grad - pd.score(pts)).pow(2).sum(1).mean()
    plain_err = (pg.score(pts) - pd.score(pts)).pow(2).sum(1).mean()
    assert guided_err < 0.5 * plain_err, (guided_err.item(), plain_err.item())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dg")
    api.train(load_config(ROOT / "configs/images/digits-dsm.yaml",
                          [*TINY, "trainer.sample_steps=2", "train.steps=2", "train.eval_every=2",
                           "train.checkpoint_every=2"]), run_dir=root / "dsm")
    tr = Trainer(_dg_cfg(root / "dsm", 4), root / "dg")
    tr.fit()
    return root, tr


def test_a_dg_run_trains_through_the_loop_and_samples_guided(runs):
    root, tr = runs
    assert not tr.rule.has_generator and isinstance(tr.rule.D, RatioUNet)
    assert tr.rule.pool_x.shape == (24, 64) and torch.isfinite(tr.rule.pool_x).all()
    x = tr.rule.sample(6, torch.Generator().manual_seed(0))
    assert x.shape == (6, 64) and torch.isfinite(x).all() and tr.rule.last_nfe == 3
    ckpt = load_checkpoint(root / "dg/checkpoints/last.pt")
    assert ckpt["step"] == 4 and torch.equal(ckpt["rule"]["extra"]["pool"], tr.rule.pool_x)
    assert set(ckpt["rule"]["modules"]) == {"noise_discriminator"}  # the score model stays in its own run


def test_a_dg_run_resumes_bit_identically_pool_included(runs, tmp_path):
    root, _ = runs
    Trainer(_dg_cfg(root / "dsm", 2), tmp_path / "cut").fit()
    Trainer(_dg_cfg(root / "dsm", 4), tmp_path / "cut", resume=True).fit()
    a, b = (load_checkpoint(p / "checkpoints/last.pt") for p in (root / "dg", tmp_path / "cut"))
    assert a["step"] == b["step"] == 4
    assert torch.equal(a["rule"]["extra"]["pool"], b["rule"]["extra"]["pool"])
    for k, v in a["rule"]["modules"]["noise_discriminator"].items():
        assert torch.equal(v, b["rule"]["modules"]["noise_discriminator"][k]), k


def test_discriminator_guidance_from_the_cli(runs, tmp_path):
    root, _ = runs
    out, plain = tmp_path / "g.npz", tmp_path / "u.npz"
    base = ["sample", str(root / "dsm"), "--n", "6", "--sampler", "heun", "--steps", "3"]
    assert main([*base, "--out", str(out), "--guidance", "discriminator", "--guidance-run", str(root / "dg")]) == 0
    assert main([*base, "--out", str(plain)]) == 0
    x, u = np.load(out)["x"], np.load(plain)["x"]
    assert x.shape == (6, 1, 8, 8) and np.isfinite(x).all() and np.abs(x - u).max() > 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["nfe"] == 5 and report["guidance"] == "discriminator" and out.with_suffix(".png").is_file()


def test_refusals_are_one_line(runs, tmp_path, capsys):
    root, _ = runs
    gan = tmp_path / "gan"
    api.train(load_config(ROOT / "configs/toy/8gaussians-nsgan.yaml",
                          ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "train.steps=1",
                           "eval.n_samples=16", "model.generator.hidden=[8]", "model.discriminator.hidden=[8]"]),
              run_dir=gan)
    with pytest.raises(ValueError, match=r"a 'nsgan' run, not a score model \(trainer dsm\)"):
        Trainer(_dg_cfg(gan, 2), tmp_path / "bad")
    toy = load_config(None, ["trainer.name=dg", f"trainer.score_run={root / 'dsm'}", "tracking.mode=disabled"])
    with pytest.raises(ValueError, match="generates dimension 64, this data set has 2"):
        Trainer(toy, tmp_path / "bad2")
    other = tmp_path / "other-dsm"
    shutil.copytree(root / "dsm", other)
    out = str(tmp_path / "x.npz")
    cases = [([str(other), "--sampler", "heun", "--guidance", "discriminator", "--guidance-run", str(root / "dg")],
              f"trained against score run {str((root / 'dsm').resolve())!r}, not"),
             ([str(root / "dsm"), "--sampler", "heun", "--guidance-run", str(root / "dg")],
              "acts only with --guidance discriminator"),
             ([str(root / "dsm"), "--guidance-run", str(root / "dg")], "act with --sampler"),
             ([str(root / "dsm"), "--sampler", "heun", "--guidance", "discriminator"], "needs --guidance-run")]
    capsys.readouterr()
    for args, msg in cases:
        assert main(["sample", args[0], "--n", "4", "--out", out, *args[1:]]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err

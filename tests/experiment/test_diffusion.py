"""Diffusion sampling from a score-model run (scoregan.experiment.diffusion, `scoregan sample --sampler`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scoregan import api
from scoregan.cli import main
from scoregan.config import load_config
from scoregan.experiment.diffusion import diffusion_from_run
from tests.helpers import ROOT

TINY = ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "eval.n_samples=32",
        "eval.image_metrics=false", "train.batch_size=16", "model.unet.channels=8", "model.unet.groups=4",
        "model.unet.attention=false", "train.threads=1", "trainer.sample_steps=2", "train.steps=2",
        "train.eval_every=2", "train.checkpoint_every=2"]


@pytest.fixture(scope="module")
def dsm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dsm") / "run"
    api.train(load_config(ROOT / "configs/images/digits-dsm.yaml", TINY), run_dir=run)
    return run


@pytest.mark.parametrize("sampler,nfe", [("heun", 5), ("sde", 3), ("pc", 5), ("langevin", 4), ("ode", None)])
def test_every_sampler_from_the_cli_writes_images_a_figure_and_a_report(dsm_run, tmp_path, sampler, nfe):
    out = tmp_path / f"{sampler}.npz"
    assert main(["sample", str(dsm_run), "--n", "12", "--out", str(out), "--sampler", sampler, "--steps", "3"]) == 0
    x = np.load(out)["x"]
    assert x.shape == (12, 1, 8, 8) and np.isfinite(x).all()
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["nfe"] == (nfe or report["nfe"]) > 0 and report["sampler"] == sampler
    assert out.with_suffix(".png").is_file()


def test_kernel_guidance_is_deterministic_and_moves_the_samples(dsm_run):
    a, ra = diffusion_from_run(dsm_run, n=16, steps=3, guidance="kernel", guidance_scale=5.0, bank=64, seed=3)
    b, _ = diffusion_from_run(dsm_run, n=16, steps=3, guidance="kernel", guidance_scale=5.0, bank=64, seed=3)
    u, ru = diffusion_from_run(dsm_run, n=16, steps=3, guidance="none", seed=3)
    assert (a == b).all() and (a - u).abs().max() > 1e-3
    assert ra["nfe"] == ru["nfe"] == 5 and ra["bank"] == 64 and ru["bank"] == 0


def test_kernel_noise_modes_differ_and_are_reported(dsm_run):
    xs = {}
    for mode in ("perturb", "bandwidth", "none"):
        xs[mode], r = diffusion_from_run(dsm_run, n=16, steps=3, guidance="kernel", guidance_scale=5.0, bank=64,
                                         seed=3, kernel_noise=mode)
        assert r["kernel_noise"] == mode
    assert (xs["perturb"] - xs["none"]).abs().max() > 1e-4 and (xs["bandwidth"] - xs["none"]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="--kernel-noise 'blur': choose from none, perturb, bandwidth"):
        diffusion_from_run(dsm_run, n=4, guidance="kernel", kernel_noise="blur")


@pytest.mark.parametrize("args,msg", [
    (["--kernel-noise", "none"], "--kernel-noise act with --sampler"),
    (["--sampler", "heun", "--guidance-scale", "-1"], "--guidance-scale -1.0: must be a finite number >= 0"),
    (["--sampler", "heun", "--guidance", "kernel", "--bank", "100000"], "--bank 100000: the data set has"),
    (["--sampler", "heun", "--steps", "0"], "--steps must be >= 1, got 0"),
    (["--guidance", "kernel"], "--kernel-noise act with --sampler"),
    (["--sampler", "heun", "--langevin"], "belong to GAN refinement"),
])
def test_bad_options_get_one_line(dsm_run, tmp_path, capsys, args, msg):
    assert main(["sample", str(dsm_run), "--n", "4", "--out", str(tmp_path / "x.npz"), *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_a_gan_run_is_refused(tmp_path, capsys):
    gan = tmp_path / "gan"
    api.train(load_config(ROOT / "configs/toy/8gaussians-nsgan.yaml",
                          ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "train.steps=2",
                           "eval.n_samples=32", "model.generator.hidden=[8]", "model.discriminator.hidden=[8]"]),
              run_dir=gan)
    assert main(["sample", str(gan), "--n", "4", "--out", str(tmp_path / "x.npz"), "--sampler", "heun"]) == 2
    assert "needs a score-model run (trainer 'dsm')" in capsys.readouterr().err

"""Every trainer trains on images (configs/images/digits-*.yaml, shrunk): conv generators and
discriminators, U-Net score and velocity networks, flat (N, C·H·W) particles; a conv trainer and a
U-Net trainer resume bit-identically."""

from __future__ import annotations

import pytest
import torch

from scoregan.checkpoint import load_checkpoint
from scoregan.config import load_config
from scoregan.experiment.loop import Trainer
from scoregan.experiment.tracking import read_metrics
from scoregan.objectives.kernels import mmd2 as kernel_mmd2
from scoregan.models import DCGANDiscriminator, DCGANGenerator, ScoreUNet, VelocityUNet
from tests.helpers import ROOT

CONFIGS = sorted((ROOT / "configs/images").glob("digits-*.yaml"))
TINY = ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "eval.n_samples=32",
        "eval.image_metrics=false", "train.batch_size=16", "model.conv.width=8", "model.unet.channels=8",
        "model.unet.groups=4", "model.unet.attention=false", "train.threads=1", "train.log_every=1"]
# score-gan's digits config reads its s_d from a dsm run (tests/trainers/test_score_gan.py trains one); here it
# fits its own U-Net s_d, the path of the other data sets' configs
PER_TRAINER = {"score-gan": ["trainer.data_score=network", "trainer.score_run=null", "trainer.generator_score_init=random",
                             "trainer.data_score_steps=4", "trainer.score_warmup=2", "trainer.data_score_cache=null"],
               "cfm": ["trainer.solver=euler", "trainer.ode_steps=4"], "dsm": ["trainer.sample_steps=2"],
               "ot-cfm": ["trainer.solver=euler", "trainer.ode_steps=4"]}


def _cfg(path, *extra):
    trainer = path.stem.removeprefix("digits-")
    return load_config(path, [*TINY, *PER_TRAINER.get(trainer, []), *extra])


def test_there_is_an_image_config_for_every_trainer_on_every_dataset():
    names = {p.stem.removeprefix("digits-") for p in CONFIGS}
    assert names == {"nsgan", "sgan", "lsgan", "hinge", "fgan", "wgan-gp", "mmd-gan", "gmmn", "score-gan",
                     "kernel-flow", "cfm", "ot-cfm", "dsm", "dg"}
    for ds in ("mnist", "cifar10"):
        assert {p.stem.removeprefix(f"{ds}-") for p in (ROOT / "configs/images").glob(f"{ds}-*.yaml")} == names
        for p in (ROOT / "configs/images").glob(f"{ds}-*.yaml"):
            load_config(p)  # validates (files are checked when the data set is built)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_trainer_trains_on_digit_images(path, tmp_path):
    if path.stem == "digits-dg":
        pytest.skip("dg trains on a trained dsm run's samples (trainer.score_run): tests/trainers/test_dg.py")
    cfg = _cfg(path, "train.steps=3", "train.eval_every=3", "train.checkpoint_every=3")
    tr = Trainer(cfg, tmp_path)
    res = tr.fit()
    assert tr.data.image_shape == (1, 8, 8) and res.step == 3
    nets = {type(m) for m in tr.rule.modules.values()}
    if tr.rule.has_generator:
        assert DCGANGenerator in nets
    if cfg.trainer.name in ("nsgan", "sgan", "lsgan", "hinge", "fgan", "wgan-gp", "mmd-gan"):
        assert DCGANDiscriminator in nets
    if cfg.trainer.name == "score-gan":
        assert ScoreUNet in nets
    if cfg.trainer.name in ("cfm", "ot-cfm"):
        assert VelocityUNet in nets
    x = tr.rule.sample(10, torch.Generator().manual_seed(0))
    assert x.shape == (10, 64) and torch.isfinite(x).all()


@pytest.mark.parametrize("trainer", ["wgan-gp", "cfm"])
def test_a_conv_and_a_unet_trainer_resume_bit_identically(trainer, tmp_path):
    path = ROOT / f"configs/images/digits-{trainer}.yaml"
    cfg = _cfg(path, "train.steps=6", "train.checkpoint_every=3", "train.eval_every=6")
    Trainer(cfg, tmp_path / "straight").fit()
    cut = _cfg(path, "train.steps=3", "train.checkpoint_every=3", "train.eval_every=6")
    Trainer(cut, tmp_path / "cut").fit()
    Trainer(cfg, tmp_path / "cut", resume=True).fit()
    a, b = (load_checkpoint(tmp_path / d / "checkpoints/last.pt") for d in ("straight", "cut"))
    assert a["step"] == b["step"] == 6
    for net, params in a["rule"]["modules"].items():
        for k, v in params.items():
            assert torch.equal(v, b["rule"]["modules"][net][k]), f"{net}.{k}"


def test_kernel_flow_in_a_random_conv_feature_space_moves_towards_the_data(tmp_path):
    """feature_map = random_conv: the pulled-back witness gradient is a descent direction of the
    feature-space MMD² between the generated batch and the data."""
    cfg = _cfg(ROOT / "configs/images/digits-kernel-flow.yaml", "trainer.feature_map=random_conv",
               "trainer.feature_dim=32", "train.steps=1")
    tr = Trainer(cfg, tmp_path)
    rule = tr.rule
    g = torch.Generator().manual_seed(0)
    y = tr.data.sample(64, g)
    x = torch.rand(64, 64, generator=g) * 2 - 1
    v = rule.velocity(x, y)
    assert v.shape == x.shape and v.abs().max() > 0

    def mmd2(p):
        with torch.no_grad():
            return float(kernel_mmd2(rule.kernel, rule.phi(y), rule.phi(p), unbiased=False))

    eps = 1e-2 / v.norm(dim=1, keepdim=True).max()
    assert mmd2(x + eps * v) < mmd2(x)


def test_diagnostics_measure_a_conv_generator_and_discriminator(tmp_path):
    """Steepness (the generator Jacobian's top singular value²) and the discriminator-gradient statistics
    on the DCGAN pair: finite, positive, logged like on the toys."""
    cfg = _cfg(ROOT / "configs/images/digits-nsgan.yaml", "train.steps=4", "diagnostics.every=2",
               "diagnostics.batch=16", "diagnostics.iters=8", "data.holdout=100")
    tr = Trainer(cfg, tmp_path)
    tr.fit()
    rows = read_metrics(tmp_path, "diagnostics")
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        assert r["steepness_median"] > 0 and r["dgrad_fake_median"] > 0


def test_sample_and_eval_of_an_image_run(tmp_path):
    """``api.sample`` writes image runs' samples as (n, C, H, W) (readable back as an npz image data set)
    and ``api.evaluate`` reports the image metrics of the run's config."""
    from scoregan import api
    from scoregan.data import npz_images_dataset

    cfg = _cfg(ROOT / "configs/images/digits-gmmn.yaml", "train.steps=2", "eval.image_metrics=true",
               "eval.n_samples=64")
    api.train(cfg, run_dir=tmp_path / "run")
    x = api.sample(tmp_path / "run", n=20, out=tmp_path / "s.npz")
    assert x.shape == (20, 64)
    back = npz_images_dataset(str(tmp_path / "s.npz"))
    assert back.image_shape == (1, 8, 8) and torch.allclose(back.points, x)
    assert (tmp_path / "s.png").is_file()
    m = api.evaluate(tmp_path / "run", n=64)
    assert {"img_fd", "img_kid", "img_kid_se", "img_precision", "img_recall"} <= set(m) and m["img_fd"] > 0


@pytest.mark.parametrize("space", ["latent", "data"])
def test_discriminator_guided_langevin_refines_a_conv_gan(tmp_path, space):
    """``scoregan sample RUN --langevin --space latent|data`` on a DCGAN run: the chain moves the samples,
    writes them as images and reports the discriminator's mean logit before and after."""
    import json

    import numpy as np

    from scoregan import api
    from scoregan.cli import main

    api.train(_cfg(ROOT / "configs/images/digits-nsgan.yaml", "train.steps=3"), run_dir=tmp_path / "run")
    out = tmp_path / "refined.npz"
    assert main(["sample", str(tmp_path / "run"), "--n", "16", "--out", str(out), "--langevin", "--space", space,
                 "--steps", "5", "--no-eval"]) == 0
    arrays = np.load(out)
    assert arrays["x"].shape == (16, 1, 8, 8) and np.isfinite(arrays["x"]).all()
    assert np.abs(arrays["x"].reshape(16, -1) - arrays["x0"].reshape(16, -1)).max() > 1e-4
    assert ("z" in arrays) == (space == "latent")
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["space"] == space and report["steps"] == 5

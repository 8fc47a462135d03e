"""The score-matching GAN (scoregan.trainers.score_gan): its target is x + η σ² w(r)(s_d − s_g), its noise
levels, the data score fitted once and cached, the batch generator score."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan import flows
from scoregan.config import load_config
from scoregan.schema import ConfigError
from scoregan.data import make_dataset
from scoregan.trainers import get_rule
from tests.helpers import (
    F64,
    capture_perturbation,
    capture_regression,
    make_ctx,
    rule_for,
)


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


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04" + b"\x00" * 40])
def test_a_corrupt_data_score_cache_is_refitted_with_a_warning_and_replaced(tmp_path, content):
    """A corrupt cache file is no UnpicklingError (whose text advises weights_only=False): a warning names
    the file, s_d is fitted afresh, and the file is replaced by a good one (atomically: no temp file left)."""
    cache = ["trainer.data_score_cache=" + str(tmp_path), "trainer.data_score_steps=20"]
    rule, cfg, data = rule_for("score-gan", *cache)
    path = rule.data_score_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match=f"data-score cache '{path}' is unreadable.*refitting s_d") as rec:
        logs = rule.fit_data_score()
    assert len(rec) == 1 and "weights_only" not in str(rec[0].message) and "\n" not in str(rec[0].message)
    assert logs["data_score_cached"] == 0.0
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    state = torch.load(path, weights_only=True)
    again, _, _ = rule_for("score-gan", *cache)
    assert again.fit_data_score() == {"data_score_loss": state["loss"], "data_score_cached": 1.0}
    for k, v in rule.s_d.state_dict().items():
        assert torch.equal(v, again.s_d.state_dict()[k])


@pytest.mark.parametrize("progress", [True, False])
def test_the_data_score_fit_shows_a_progress_bar_when_asked(progress, capsys):
    rule, _, _ = rule_for("score-gan", "trainer.data_score_steps=5", f"train.progress={str(progress).lower()}")
    rule.fit_data_score()
    err = capsys.readouterr().err
    assert ("data score s_d" in err) == progress, err


def test_the_fitted_data_score_is_in_the_checkpoint_so_a_run_needs_no_cache(tmp_path):
    """s_d is module "data_score" of the rule's state: a rule restored from it (no cache at all) takes its
    next step without refitting and with the same s_d."""
    rule, cfg, data = rule_for("score-gan", "trainer.data_score_steps=15")
    rule.step(make_ctx(cfg, data))
    state = rule.state_dict()
    assert set(state["modules"]["data_score"]) == set(rule.s_d.state_dict())
    other, cfg2, data2 = rule_for("score-gan", "trainer.data_score_steps=15", "trainer.data_score_seed=7")
    other.load_state_dict(state)
    logs = other.step(make_ctx(cfg2, data2, step=2))
    assert "data_score_cached" not in logs and "data_score_loss" not in logs  # no fit, no cache read
    for k, v in rule.s_d.state_dict().items():
        assert torch.equal(v, other.s_d.state_dict()[k])


@pytest.mark.parametrize("extra", [[], ["trainer.generator_score=batch", "trainer.generator_score_batch=32"]])
def test_velocity_field_is_the_training_velocity_at_one_noise_level(extra):
    """The figure's field equals λ(σ) w(r) (s_d − s_g) of the rule's own networks at σ = sigma_min."""
    rule, cfg, data = rule_for("score-gan", "trainer.divergence=kl", *extra)
    assert rule.velocity_field(torch.Generator().manual_seed(0)) is None  # nothing fitted yet
    rule.step(make_ctx(cfg, data))
    field = rule.velocity_field(torch.Generator().manual_seed(3))
    x = torch.randn(20, data.dim, generator=torch.Generator().manual_seed(4), dtype=F64)
    sigma = torch.full((20,), cfg.trainer.sigma_min, dtype=F64)
    centres = None
    if rule.s_g is None:
        z = torch.randn(32, cfg.model.latent_dim, generator=torch.Generator().manual_seed(3), dtype=F64)
        centres = rule.G(z).detach()
    with torch.no_grad():
        sd, sg = rule.data_score(x, sigma), rule.generator_score(None, x, sigma, centres)
        log_r = rule.ratio(x, sigma) if rule.ratio is not None else torch.zeros(20, dtype=F64)
    expected = flows.fgan_velocity(sd, sg, log_r, rule.div, rule.loss) * rule.sigma_weight(sigma)[:, None]
    assert torch.allclose(field(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("init", ["data", "random"])
def test_generator_score_can_start_from_the_fitted_data_score(tmp_path, init):
    """DMD's initialisation: s_g := s_d once s_d is fitted; with a vanishing learning rate one step leaves it there."""
    rule, cfg, data = rule_for("score-gan", f"trainer.data_score_cache={tmp_path}", "trainer.data_score_steps=30",
                               f"trainer.generator_score_init={init}", "trainer.score_warmup=0",
                               "trainer.score_lr=1e-12")
    rule.step(make_ctx(cfg, data))
    gap = max((v - rule.s_g.state_dict()[k]).abs().max().item() for k, v in rule.s_d.state_dict().items()
              if v.is_floating_point())
    assert (gap < 1e-6) if init == "data" else (gap > 1e-2)


def test_generator_score_init_from_data_needs_both_score_networks():
    with pytest.raises(ConfigError, match="trainer.generator_score_init = 'data' needs trainer.data_score = "
                                          "'network' or 'run' and trainer.generator_score = 'network', got "
                                          "'network' and 'batch'"):
        load_config("configs/toy/8gaussians-score-gan.yaml",
                    ["trainer.generator_score_init=data", "trainer.generator_score=batch"])


def test_a_dsm_run_serves_as_the_data_score_and_seeds_the_generator_score(tmp_path):
    """``data_score: run``: s_d is the trained dsm run's score (frozen, not in this run's checkpoint);
    ``generator_score_init: data`` starts s_g as a trainable copy of it; a resume continues bit-identically."""
    from scoregan import api
    from scoregan.checkpoint import load_checkpoint
    from scoregan.experiment.loop import Trainer
    from scoregan.experiment.runs import load_run
    from tests.helpers import ROOT

    tiny = ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "eval.n_samples=16",
            "eval.image_metrics=false", "train.batch_size=16", "model.unet.channels=8", "model.unet.groups=4",
            "model.unet.attention=false", "train.threads=1", "model.conv.width=8"]
    api.train(load_config(ROOT / "configs/images/digits-dsm.yaml",
                          [*tiny, "trainer.sample_steps=2", "train.steps=2", "train.eval_every=2"]),
              run_dir=tmp_path / "dsm")
    teacher = load_run(tmp_path / "dsm").rule
    sg = ["trainer.data_score=run", f"trainer.score_run={tmp_path / 'dsm'}", "trainer.generator_score_init=data",
          "trainer.score_warmup=0", "trainer.score_lr=1e-12", "train.checkpoint_every=2", "train.eval_every=4"]
    cfg = load_config(ROOT / "configs/images/digits-score-gan.yaml", [*tiny, *sg, "train.steps=4"])
    tr = Trainer(cfg, tmp_path / "sg")
    rule = tr.rule
    x, sigma = torch.randn(5, 64), torch.full((5,), 0.3)
    with torch.no_grad():
        assert torch.allclose(rule.data_score(x, sigma), teacher.score(x, sigma), atol=1e-6)
        assert torch.allclose(rule.s_g(x, sigma), teacher.score(x, sigma), atol=1e-6)  # the copy, before training
    tr.fit()
    state = load_checkpoint(tmp_path / "sg" / "checkpoints" / "last.pt")
    assert not any("data_score" in k for k in state["rule"]["modules"])
    with torch.no_grad():  # s_d stays the teacher's
        assert torch.allclose(rule.data_score(x, sigma), teacher.score(x, sigma), atol=1e-6)
    # one run of 4 steps equals 2 + resume + 2
    cfg2 = load_config(ROOT / "configs/images/digits-score-gan.yaml", [*tiny, *sg, "train.steps=2"])
    Trainer(cfg2, tmp_path / "sg2").fit()
    Trainer(load_config(ROOT / "configs/images/digits-score-gan.yaml", [*tiny, *sg, "train.steps=4"]),
            tmp_path / "sg2", resume=True).fit()
    a = load_checkpoint(tmp_path / "sg" / "checkpoints" / "last.pt")["rule"]["modules"]["generator"]
    b = load_checkpoint(tmp_path / "sg2" / "checkpoints" / "last.pt")["rule"]["modules"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_score_run_goes_with_data_score_run():
    with pytest.raises(ConfigError, match="trainer.score_run = 'runs/x' goes with trainer.data_score = 'run'"):
        load_config("configs/toy/8gaussians-score-gan.yaml", ["trainer.score_run=runs/x"])

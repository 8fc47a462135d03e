"""Evaluation against the target and its held-out points (scoregan.experiment.evaluation)."""

from __future__ import annotations

import pytest
import torch

from scoregan.config import ConfigError, load_config
from scoregan.data import make_dataset


def _data(name, **kw):
    return make_dataset(load_config(None, [f"data.name={name}", *[f"data.{k}={v}" for k, v in kw.items()]]).data)


def test_evaluation_adds_heldout_distances_for_a_split_set():
    """evaluate_generator on a data set with held-out points reports the distances to them too,
    equal to toy_report against them; a sampler that returns exactly the held-out set is at W2 0
    from it and not from the training part."""
    from scoregan.experiment.evaluation import evaluate_generator
    from scoregan.metrics import toy_report

    d = _data("digits", holdout=300)

    def heldout_sampler(n, g):
        return d.heldout[torch.randperm(d.heldout.shape[0], generator=torch.Generator().manual_seed(5))[:n]]

    metrics, samples, _ = evaluate_generator(heldout_sampler, d, n=300, seed=0)
    direct = toy_report(samples, d.heldout, generator=torch.Generator().manual_seed(3))
    for k in ("w2", "sliced_w2", "mmd2", "energy", "fd"):
        assert metrics[f"{k}_heldout"] == pytest.approx(direct[k], rel=1e-9)
    assert metrics["w2_heldout"] == pytest.approx(0.0, abs=1e-6) and metrics["w2"] > 1.0
    assert metrics["fd_heldout"] == pytest.approx(0.0, abs=1e-6) and metrics["fd"] > 0.1
    from scoregan.config import EVAL_STOPPING_SIGNALS
    from scoregan.schema import IMAGE_STOPPING_SIGNALS

    # every evaluation signal of early stopping is reported (the image ones on image data sets)
    assert set(EVAL_STOPPING_SIGNALS) - set(IMAGE_STOPPING_SIGNALS) <= set(metrics)
    assert "w2_heldout" not in evaluate_generator(heldout_sampler, _data("digits"), n=64, seed=0)[0]
    only_fd = evaluate_generator(heldout_sampler, d, n=300, seed=0, distances=("fd",))[0]
    assert set(only_fd) == {"fd", "fd_heldout"} and only_fd["fd_heldout"] == metrics["fd_heldout"]


def test_image_data_get_classifier_feature_metrics_against_the_heldout_images():
    """On digit images, a sampler returning the held-out images themselves is at the floor (FD 0,
    precision = recall = 1); uniform noise is far from it. Exactly image_report's values."""
    from scoregan.experiment.evaluation import evaluate_generator
    from scoregan.metrics import image_report

    d = _data("digits", layout="image", holdout=300)

    def heldout_sampler(n, g):
        return d.heldout[:n]

    def noise_sampler(n, g):
        return torch.rand(n, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1

    same = evaluate_generator(heldout_sampler, d, n=300, seed=0, distances=(), image_metrics=True)[0]
    assert same["img_fd"] == pytest.approx(0.0, abs=1e-6)
    assert same["img_precision"] == 1.0 and same["img_recall"] == 1.0
    noise, samples, _ = evaluate_generator(noise_sampler, d, n=300, seed=0, distances=(), image_metrics=True)
    assert noise["img_fd"] > 50.0 and noise["img_kid"] > 10 * max(same["img_kid"], same["img_kid_se"])
    direct = image_report(samples, d.heldout, dataset=d, seed=2)
    assert noise["img_fd"] == pytest.approx(direct["fd"], rel=1e-9) and noise["img_kid"] == pytest.approx(direct["kid"])
    assert "img_fd" not in evaluate_generator(noise_sampler, d, n=64, seed=0, distances=("fd",))[0]


def test_eval_distances_config_is_checked_against_the_stopping_signal():
    cfg = load_config(None, ["data.name=digits", "data.holdout=300", "eval.distances=[fd]",
                             "early_stopping.enabled=true", "early_stopping.metric=fd_heldout"])
    assert cfg.eval.distances == ["fd"]
    assert load_config(None, []).eval.distances == ["w2", "sliced_w2", "mmd2", "energy", "fd"]
    from scoregan.config import EVAL_DISTANCES
    from scoregan.metrics import TOY_DISTANCES

    assert EVAL_DISTANCES == TOY_DISTANCES  # the config's names are the report's
    with pytest.raises(ConfigError, match=r"early_stopping.metric = 'w2_heldout'.*eval.distances = \['fd'\].*'w2'"):
        load_config(None, ["data.name=digits", "data.holdout=300", "eval.distances=[fd]",
                           "early_stopping.enabled=true", "early_stopping.metric=w2_heldout"])
    with pytest.raises(ConfigError, match=r"eval.distances\[1\] = 'fid': allowed values"):
        load_config(None, ["eval.distances=[fd, fid]"])
    with pytest.raises(ConfigError, match=r"eval.distances = \['fd', 'fd'\]: a distance is listed twice"):
        load_config(None, ["eval.distances=[fd, fd]"])

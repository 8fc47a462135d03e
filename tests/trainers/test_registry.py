"""The trainer registry: every rule registered with a typed config, a shipped config per trainer and
target, config errors that name the field."""

from __future__ import annotations

import pytest

from scoregan.config import ConfigError, load_config
from scoregan.trainers import TRAINERS
from tests.helpers import (
    ISSUE_TRAINERS,
    ROOT,
    config_path,
)


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

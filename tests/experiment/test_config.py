"""Configs: typed loading, overrides, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoregan.config import ConfigError, load_config, to_dict

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.train.steps >= 1 and cfg.train.batch_size >= 1
    assert load_config(None, [f"{k}={v}" for k, v in []]) is not None


def test_required_fields_exist_and_override():
    cfg = load_config(ROOT / "configs/toy/8gaussians-nsgan.yaml",
                      ["train.steps=17", "train.seed=3", "train.batch_size=32", "train.checkpoint_every=5",
                       "tracking.mode=disabled", "model.generator.hidden=[8, 9]", "optim.lr_g=1e-3"])
    assert (cfg.train.steps, cfg.train.seed, cfg.train.batch_size, cfg.train.checkpoint_every) == (17, 3, 32, 5)
    assert cfg.tracking.mode == "disabled"
    assert cfg.model.generator.hidden == [8, 9]
    assert cfg.optim.lr_g == pytest.approx(1e-3)
    assert isinstance(cfg.optim.lr_g, float)


def test_trainer_section_is_typed_by_the_rule():
    cfg = load_config(ROOT / "configs/toy/8gaussians-wgan-gp.yaml")
    assert cfg.trainer.name == "wgan-gp" and cfg.trainer.n_critic == 5 and cfg.trainer.gp_weight == 10.0
    with pytest.raises(ConfigError, match=r"trainer\.gp_wieght.*did you mean 'trainer\.gp_weight'"):
        load_config(ROOT / "configs/toy/8gaussians-wgan-gp.yaml", ["trainer.gp_wieght=1"])


def test_typo_suggests_closest_key():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.step=10"])
    msg = str(e.value)
    assert "'train.step'" in msg and "did you mean 'train.steps'" in msg


@pytest.mark.parametrize("override, field, fragment", [
    ("train.batch_size=-5", "train.batch_size", ">= 1"),
    ("train.batch_size=abc", "train.batch_size", "integer"),
    ("train.steps=1.5", "train.steps", "integer"),
    ("optim.lr_g=0", "optim.lr_g", "> 0"),
    ("optim.beta1=2", "optim.beta1", "< 1"),
    ("optim.beta2=1.0", "optim.beta2", "must be < 1"),  # Adam needs β < 1
    ("model.generator.hidden=[64, 0]", "model.generator.hidden[1]", ">= 1"),
    ("tracking.mode=sometimes", "tracking.mode", "'offline'"),
    ("train.dtype=float16", "train.dtype", "'float32'"),
    ("trainer.name=nsgna", "trainer.name", "did you mean 'nsgan'"),
    ("data.name=8gausians", "data.name", "did you mean '8gaussians'"),
    ("data.noise=0.1", "data.noise", "not used by dataset '8gaussians'"),
    ("data.std=-1", "data.std", "> 0"),
    ("train.device=tpu", "train.device", "'cuda:N'"),
    ("model.generator.hidden=3", "model.generator.hidden", "list"),
])
def test_bad_values_name_field_and_value(override, field, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/toy/8gaussians-nsgan.yaml", [override])
    msg = str(e.value)
    assert field in msg and fragment in msg


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does-not-exist.yaml"):
        load_config(tmp_path / "does-not-exist.yaml")
    with pytest.raises(ConfigError, match=r"data\.path = '.*missing\.npz': no such file"):
        load_config(None, ["data.name=npz", f"data.path={tmp_path / 'missing.npz'}"])


def test_extends_merges_and_roundtrips(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("name: base\ntrain: {steps: 10, batch_size: 8}\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nname: child\ntrain: {steps: 20}\n")
    cfg = load_config(child)
    assert (cfg.name, cfg.train.steps, cfg.train.batch_size) == ("child", 20, 8)
    import yaml

    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(to_dict(cfg)))
    assert to_dict(load_config(again)) == to_dict(cfg)


def test_extends_loops_and_exponent_integers(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends: chain loops"):
        load_config(tmp_path / "a.yaml")
    assert load_config(None, ["train.steps=1e3"]).train.steps == 1000


@pytest.mark.parametrize("trainer, overrides, match", [
    ("cfm", ["diagnostics.every=10"], "has no generator network"),
    ("kernel-flow", ["diagnostics.every=10", "early_stopping.enabled=true", "early_stopping.metric=combined"],
     "has no scalar one"),
    ("mmd-gan", ["diagnostics.every=10", "early_stopping.enabled=true", "early_stopping.metric=dgrad_ratio"],
     "has no scalar one"),
])
def test_diagnostics_need_what_they_measure(trainer, overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [f"trainer.name={trainer}", *overrides])
    load_config(None, [f"trainer.name={trainer}", "diagnostics.every=10"] if trainer != "cfm" else [])

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


NSGAN = ROOT / "configs/toy/8gaussians-nsgan.yaml"


@pytest.mark.parametrize("override, message", [
    ("trainer.name=[nsgan]", "trainer.name = ['nsgan']: expected a string naming a trainer"),
    ("model.latent_dim=10000000", "model.latent_dim = 10000000: must be <= 4096"),
    ("train.threads=100000", "train.threads = 100000: must be <= 1024"),
    ("model.generator.hidden=[64, 2000000]", "model.generator.hidden[1] = 2000000: must be <= 8192"),
    ("model.discriminator.hidden=[" + ", ".join(["8"] * 65) + "]", "model.discriminator.hidden = [8, 8, 8, 8"),
    ("model.discriminator.hidden=[" + ", ".join(["8"] * 65) + "]", "at most 64 entries, got 65"),
    ("train.batch_size=1e9", "train.batch_size = 1000000000: must be <= 1048576"),
    ("optim.lr_g=.inf", "optim.lr_g = inf: must be a finite number"),
    ("optim.weight_decay=.inf", "optim.weight_decay = inf: must be a finite number"),
    ("optim.weight_decay=.nan", "optim.weight_decay = nan: must be a finite number"),
    ("early_stopping.threshold=.nan", "early_stopping.threshold = nan: must be a finite number"),
    ("data.radius=.inf", "data.radius = inf: must be a finite number"),
    ("data.std=-.inf", "data.std = -inf: must be a finite number"),
    ("optim.lr_d=1e400", "optim.lr_d = inf: must be a finite number"),
    ("train.seed=1e30", "train.seed = 1e30: out of range (an integer field must fit 64 bits"),
    ("train.seed=9223372036854775808", "train.seed = 9223372036854775808: out of range"),
    ("eval.seed=-1", "eval.seed = -1: must be >= 0"),
    ("tracking.project=''", "tracking.project = '': must not be empty"),
    ("tracking.entity=' '", "tracking.entity = ' ': must not be empty"),
    ("name=''", "name = '': must not be empty"),
])
def test_bad_inputs_are_one_line_naming_field_and_value(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(NSGAN, [override])
    msg = str(e.value)
    assert message in msg and "\n" not in msg, msg


def test_bounds_accept_their_limits():
    cfg = load_config(NSGAN, ["train.seed=9223372036854775807", "model.latent_dim=4096", "train.threads=1024",
                              "model.generator.hidden=[8192]", "optim.weight_decay=0"])
    assert cfg.train.seed == 2**63 - 1 and cfg.model.latent_dim == 4096


@pytest.mark.parametrize("files, load, message", [
    ({"c.yaml": "trainer:\n  name: [nsgan]\n"}, "c.yaml", "trainer.name = ['nsgan']: expected a string"),
    ({"c.yaml": "extends: 42\n"}, "c.yaml", "config file '{d}/c.yaml': extends = 42: expected the path"),
    ({"c.yaml": "extends: [base.yaml]\n"}, "c.yaml", "extends = ['base.yaml']: expected the path"),
    ({"c.yaml": "extends: sub\n", "sub/x.yaml": "name: x\n"}, "c.yaml", "config file '{d}/sub' is a directory"),
    ({"c.yaml": b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00"}, "c.yaml", "config file '{d}/c.yaml' is not a text file"),
    ({"c.yaml": "extends: base.yaml\n", "base.yaml": b"\x89PNG\r\n\x1a\n\xff\x00"}, "c.yaml",
     "config file '{d}/base.yaml' is not a text file"),
    ({"c.yaml": ""}, "c.yaml", "config file '{d}/c.yaml' is empty"),
    ({"c.yaml": "# nothing but a comment\n"}, "c.yaml", "config file '{d}/c.yaml' is empty"),
    ({"c.yaml": "extends: base.yaml\n", "base.yaml": "\n"}, "c.yaml", "config file '{d}/base.yaml' is empty"),
    ({"c.yaml": "train: {steps: [1, 2\n"}, "c.yaml", "config file '{d}/c.yaml' is not valid YAML: "),
    ({"c.yaml": "- 1\n- 2\n"}, "c.yaml", "config file '{d}/c.yaml' must hold a mapping of sections, got list"),
    ({"sub/x.yaml": "name: x\n"}, "sub", "config file '{d}/sub' is a directory, not a YAML file"),
])
def test_config_files_that_cannot_be_read_are_named(tmp_path, files, load, message):
    for name, content in files.items():
        f = tmp_path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / load)
    msg = str(e.value)
    assert message.format(d=tmp_path) in msg and "\n" not in msg, msg


def test_changing_data_name_drops_the_previous_datasets_fields(tmp_path):
    """The base of 8gaussians-nsgan sets radius/std/n_modes; --set data.name=npz drops them (not the ones
    an override sets), so an npz file can be trained from any shipped config."""
    import numpy as np

    pts = tmp_path / "pts.npz"
    np.savez(pts, x=np.zeros((20, 2)))
    cfg = load_config(NSGAN, ["data.name=npz", f"data.path={pts}"])
    assert (cfg.data.name, cfg.data.path, cfg.data.radius, cfg.data.std, cfg.data.n_modes) == \
        ("npz", str(pts), None, None, None)
    cfg = load_config(NSGAN, ["data.name=25gaussians", "data.std=0.1"])  # set by an override: kept
    assert (cfg.data.radius, cfg.data.std, cfg.data.n_modes) == (None, 0.1, None)
    with pytest.raises(ConfigError, match=r"data\.radius = 5\.0 is not used by dataset 'swiss_roll'"):
        load_config(NSGAN, ["data.name=swiss_roll", "data.radius=5.0"])
    same = load_config(NSGAN, ["data.name=8gaussians"])  # the same dataset: nothing dropped
    assert (same.data.radius, same.data.n_modes) == (5.0, 8)
    with pytest.raises(ConfigError, match=r"data\.path = '.*missing\.npz': no such file"):
        load_config(NSGAN, ["data.name=npz", f"data.path={tmp_path / 'missing.npz'}"])


def test_the_embedded_defaults_are_the_kernel_flow_job():
    """load_config(None) resolves to configs/toy/8gaussians-kernel-flow.yaml but for its name (and data
    fields left null, whose dataset defaults are the file's values)."""
    from scoregan.data import make_dataset

    default = to_dict(load_config(None))
    shipped = to_dict(load_config(ROOT / "configs/toy/8gaussians-kernel-flow.yaml"))
    assert default["trainer"]["name"] == "kernel-flow"
    assert make_dataset(load_config(None).data).params() == make_dataset(load_config(
        ROOT / "configs/toy/8gaussians-kernel-flow.yaml").data).params()
    for d in (default, shipped):
        d.pop("name")
        for k in ("radius", "std", "n_modes"):
            d["data"].pop(k)
    assert default == shipped
    # a trainer field set without a name keeps the rest of the default job's trainer
    cfg = load_config(None, ["trainer.kernel=gaussian"])
    assert (cfg.trainer.name, cfg.trainer.kernel, cfg.trainer.ema) == ("kernel-flow", "gaussian", 0.995)
    assert load_config(None, ["trainer.name=nsgan"]).trainer.ema == 0.0  # naming a rule: its own defaults


def test_an_unbiased_mmd_needs_two_points_per_batch():
    """configs/toy/8gaussians-gmmn.yaml --set train.batch_size=1 ended with NaN weights; now refused up front."""
    with pytest.raises(ConfigError, match="train.batch_size = 1: the unbiased MMD² of trainer 'gmmn' needs at least 2"):
        load_config(ROOT / "configs/toy/8gaussians-gmmn.yaml", ["train.batch_size=1"])
    load_config(ROOT / "configs/toy/8gaussians-gmmn.yaml", ["train.batch_size=1", "trainer.unbiased=false"])

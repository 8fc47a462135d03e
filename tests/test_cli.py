"""The command line as a user meets it: help texts, runs, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scoregan.cli import main

ROOT = Path(__file__).resolve().parents[1]
NSGAN = str(ROOT / "configs/toy/8gaussians-nsgan.yaml")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "scoregan.cli", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("cmd", ["train", "eval", "sample"])
def test_help_texts(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: scoregan " + cmd in out and len(out) > 300


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", NSGAN, "--run-dir", str(d), "--no-progress", "--set", "tracking.mode=disabled",
                 "--set", "train.steps=30", "--set", "train.eval_every=30", "--set", "eval.n_samples=300",
                 "--set", "model.generator.hidden=[32, 32]", "--set", "model.discriminator.hidden=[32, 32]"])
    assert code == 0
    return d


def test_train_writes_the_run_directory(run_dir):
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "figures/samples_final.png", "figures/curves.png"):
        assert (run_dir / name).is_file(), name


def test_eval_json_has_the_documented_keys(run_dir, capsys):
    assert main(["eval", str(run_dir), "--n", "300", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("w2", "sliced_w2", "mmd2", "energy", "modes_covered", "n_modes", "hq_fraction"):
        assert k in out
    assert out["n_modes"] == 8 and 0 <= out["hq_fraction"] <= 1 and out["w2"] > 0


def test_sample_writes_npz_and_figure(run_dir, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", str(run_dir), "--n", "123", "--out", str(out)]) == 0
    x = np.load(out)["x"]
    assert x.shape == (123, 2) and np.isfinite(x).all()
    assert out.with_suffix(".png").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["train", NSGAN, "--set", "train.step=10"], "did you mean 'train.steps'"),
    (["train", NSGAN, "--set", "train.batch_size=-4"], "train.batch_size = -4"),
    (["train", "configs/nope.yaml"], "configs/nope.yaml"),
    (["train", "--set", "data.name=npz", "--set", "data.path=/no/such/file.npz"], "/no/such/file.npz"),
    (["eval", "/no/such/run"], "/no/such/run"),
])
def test_errors_are_one_clear_line(args, fragment):
    r = _run(*args)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_corrupted_checkpoint_via_cli(run_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    ck = broken / "checkpoints/last.pt"
    ck.write_bytes(ck.read_bytes()[:100])
    r = _run("eval", str(broken))
    assert r.returncode == 2 and "last.pt" in r.stderr and "corrupted or truncated" in r.stderr
    assert "Traceback" not in r.stderr


def test_sample_refuses_langevin_options_without_langevin_and_non_npz_out(run_dir, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", str(run_dir), "--n", "8", "--out", str(out), "--mala", "--steps", "7"]) == 2
    err = capsys.readouterr().err
    assert "--steps, --mala only act with --langevin" in err and not out.exists()
    assert main(["sample", str(run_dir), "--n", "8", "--out", str(tmp_path / "s.txt")]) == 2
    assert "out must be an .npz path" in capsys.readouterr().err and not (tmp_path / "s.txt.npz").exists()


def test_checkpoint_of_the_wrong_shape_names_the_network_and_the_shapes(run_dir, tmp_path, capsys):
    import shutil

    import yaml

    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    cfg = yaml.safe_load((bad / "config.yaml").read_text())
    cfg["model"]["discriminator"]["hidden"] = [8, 8]
    (bad / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["sample", str(bad), "--n", "8", "--out", str(tmp_path / "g.npz"), "--langevin", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "does not match its config.yaml" in err and "size mismatch for" in err and "[8, 2]" in err, err


def test_sample_langevin_refines_with_the_discriminator(run_dir, tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(["sample", str(run_dir), "--n", "64", "--out", str(out), "--langevin", "--steps", "5",
                 "--step-size", "0.01"]) == 0
    f = np.load(out)
    assert f["x"].shape == (64, 2) and np.isfinite(f["x"]).all()
    assert not np.allclose(f["x"], f["x0"])  # the chain moved the generator's samples


def test_resume_refuses_a_config_or_run_dir_and_says_when_nothing_is_left(run_dir, tmp_path, capsys):
    assert main(["train", "configs/toy/8gaussians-nsgan.yaml", "--resume", str(run_dir)]) == 2
    assert "drop the CONFIG argument and --run-dir" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert "nothing to train: the run is already at step 30" in capsys.readouterr().out


def test_sample_langevin_on_a_kernel_flow_run_uses_its_witness_and_cheap_metrics(tmp_path, capsys):
    d = tmp_path / "kf"
    assert main(["train", str(ROOT / "configs/toy/8gaussians-kernel-flow.yaml"), "--run-dir", str(d), "--no-progress",
                 "--set", "tracking.mode=disabled", "--set", "train.steps=10", "--set", "eval.n_samples=64",
                 "--set", "eval.figures=false", "--set", "model.generator.hidden=[16]"]) == 0
    out = tmp_path / "kf.npz"
    assert main(["sample", str(d), "--n", "64", "--out", str(out), "--langevin", "--steps", "3"]) == 0
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["guidance"] == "kernel witness" and rep["eval"] == "cheap" and "mmd2_after" in rep
    assert not any(k.startswith("w2_") for k in rep)
    assert main(["sample", str(d), "--n", "64", "--out", str(out), "--langevin", "--steps", "1", "--eval"]) == 0
    assert "w2_after" in json.loads(out.with_suffix(".json").read_text())
    assert main(["sample", str(d), "--n", "8", "--out", str(out), "--no-eval"]) == 2
    assert "--eval only act with --langevin" in capsys.readouterr().err


@pytest.fixture
def a_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    return f


@pytest.mark.parametrize("args, fragment", [
    (["train", NSGAN, "--run-dir", "{f}"], "--run-dir '{f}': exists and is not a directory"),
    (["train", NSGAN, "--run-dir", "{f}/run"], "--run-dir '{f}/run': cannot be created: '{f}' is a file"),
    (["sample", "/no/such/run", "--n", "4", "--out", "{d}"], "--out '{d}': is a directory; give a file path"),
    (["sample", "/no/such/run", "--n", "4", "--out", "{f}/sub/x.npz"], "cannot be created: '{f}' is a file"),
    (["bench", "toy", "--json", "{f}/r.json"], "--json '{f}/r.json': cannot be created: '{f}' is a file"),
    (["bench", "toy", "--json", "{d}"], "--json '{d}': is a directory"),
    (["eval", "/no/such/run", "--seed", "-1"], "scoregan eval: error: --seed must be in [0, 2**63), got -1"),
    (["sample", "/no/such/run", "--n", "4", "--out", "{d}/x.npz", "--seed", "-1"], "--seed must be in [0, 2**63)"),
    (["train", "--set", "trainer.name=[nsgan]"], "trainer.name = ['nsgan']: expected a string naming a trainer"),
    (["train", "--set", "optim.lr_g=.inf"], "optim.lr_g = inf: must be a finite number"),
    (["train", "--set", "data.radius=.inf"], "data.radius = inf: must be a finite number"),
    (["train", "--set", "train.seed=1e30"], "train.seed = 1e30: out of range"),
    (["train", "--set", "tracking.project=''"], "tracking.project = '': must not be empty"),
    (["train", "--set", "model.latent_dim=10000000"], "model.latent_dim = 10000000: must be <= 4096"),
    (["train", "{d}"], "config file '{d}' is a directory"),
    (["train", "{f}.yaml"], "config file '{f}.yaml' is empty"),
    (["train", NSGAN, "--set", "data.name=npz", "--set", "data.path={d}/x.npz"], "data.path = '{d}/x.npz': no such file"),
])
def test_bad_paths_seeds_and_configs_are_one_line_before_any_work(args, fragment, tmp_path, a_file, capsys):
    (tmp_path / "a_file.yaml").write_text("")
    fill = {"f": str(a_file), "d": str(tmp_path)}
    before = sorted(tmp_path.rglob("*"))
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err
    assert fragment.format(**fill) in err and len(err.strip().splitlines()) == 1, err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_the_epilog_names_the_default_job(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "embedded defaults: kernel flow-matching GAN on 8 Gaussians" in capsys.readouterr().out

"""A diverged run stops and keeps its last good weights (scoregan.experiment.finite and the loop):
non-finite losses or weights are never checkpointed, eval and sample refuse non-finite weights, the
final checkpoint is on disk before the final evaluation, and a run killed before its first checkpoint
resumes from its config.yaml."""

from __future__ import annotations

import math

import pytest
import torch

import scoregan.experiment.finite as finite
from scoregan import api
from scoregan.checkpoint import CheckpointError, load_checkpoint, save_atomic
from scoregan.cli import main
from scoregan.config import load_config
from scoregan.experiment.finite import NonFiniteGuard, TrainingDiverged, nonfinite_log, nonfinite_state
from scoregan.experiment.loop import Trainer
from scoregan.experiment.runs import load_run
from tests.helpers import ROOT

NSGAN = ROOT / "configs/toy/8gaussians-nsgan.yaml"


def _tiny(tiny_overrides, *extra):
    return load_config(NSGAN, [*tiny_overrides, "train.steps=30", "train.checkpoint_every=5", "train.eval_every=1000",
                               "train.log_every=1", *extra])


def test_a_diverging_run_stops_naming_the_step_and_keeps_its_last_finite_checkpoint(tmp_path, tiny_overrides):
    cfg = load_config(NSGAN, ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "train.steps=60",
                              "train.checkpoint_every=5", "optim.lr_g=1e3", "optim.lr_d=1e3"])  # README's case
    with pytest.raises(TrainingDiverged, match=r"training diverged at step (\d+): loss_[dg] = (nan|inf|-inf).*"
                                               r"the checkpoint of step \d+ is intact") as err:
        Trainer(cfg, tmp_path).fit()
    assert "\n" not in str(err.value)
    ckpt = load_checkpoint(tmp_path / "checkpoints/last.pt")
    assert 0 < ckpt["step"] < int(err.value.args[0].split("step ")[1].split(":")[0])
    run = load_run(tmp_path)  # the kept checkpoint loads, with finite weights
    assert not nonfinite_state(run.rule)
    assert torch.isfinite(run.sample(64)).all()


def test_the_cli_exits_non_zero_with_one_line(tmp_path, capsys):
    code = main(["train", str(NSGAN), "--run-dir", str(tmp_path / "r"), "--no-progress", "--set", "tracking.mode=disabled",
                 "--set", "optim.lr_g=1e3", "--set", "optim.lr_d=1e3", "--set", "train.checkpoint_every=5",
                 "--set", "train.steps=60", "--set", "eval.figures=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "training diverged at step" in err


def test_a_non_finite_state_is_never_written_over_a_checkpoint(tmp_path, tiny_overrides):
    tr = Trainer(_tiny(tiny_overrides), tmp_path)
    tr.step = 3
    tr.save_checkpoint()
    before = (tmp_path / "checkpoints/last.pt").read_bytes()
    with torch.no_grad():
        next(tr.rule.modules["generator"].parameters())[0, 0] = math.nan
    tr.step = 4
    with pytest.raises(TrainingDiverged, match="step 4: non-finite generator"):
        tr.save_checkpoint()
    assert (tmp_path / "checkpoints/last.pt").read_bytes() == before
    tr.tracker.close()


def test_skip_undoes_a_non_finite_step_and_gives_up_after_too_many(tmp_path, tiny_overrides, monkeypatch):
    tr = Trainer(_tiny(tiny_overrides, "train.nonfinite=skip", "train.steps=8"), tmp_path)
    real_step = tr.rule.step
    state_before = {}

    def flaky(ctx):
        if ctx.step == 4:
            state_before.update({k: v.clone() for k, v in tr.rule.modules["generator"].state_dict().items()})
            real_step(ctx)
            with torch.no_grad():  # the update itself went wrong
                for p in tr.rule.modules["generator"].parameters():
                    p.fill_(math.inf)
            return {"loss_d": 0.1, "loss_g": 0.2}
        return real_step(ctx)

    monkeypatch.setattr(tr.rule, "step", flaky)
    res = tr.fit()
    assert res.step == 8 and tr.guard.skipped == 1 and not nonfinite_state(tr.rule)
    rows = [r for r in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"nonfinite"' in r]
    assert len(rows) == 1 and '"step": 4' in rows[0]

    guard = NonFiniteGuard(tr.rule, "skip")
    monkeypatch.setattr(finite, "MAX_CONSECUTIVE_SKIPS", 3)
    for step in (1, 2):
        guard.before_step()
        assert guard.after_step(step, {"loss": math.nan}) == "loss = nan"
    guard.before_step()
    with pytest.raises(TrainingDiverged, match="3 consecutive steps up to step 3"):
        guard.after_step(3, {"loss": math.nan})


def test_nonfinite_helpers_name_what_is_wrong():
    assert nonfinite_log({"a": 1.0, "b": math.inf}) == "b = inf" and nonfinite_log({"a": 1.0}) is None
    with pytest.raises(ValueError, match="train.nonfinite = 'ignore'"):
        NonFiniteGuard(None, "ignore")


def test_the_final_checkpoint_is_on_disk_before_the_final_evaluation(tmp_path, tiny_overrides, monkeypatch):
    tr = Trainer(_tiny(tiny_overrides, "train.steps=7", "train.checkpoint_every=100"), tmp_path)

    def broken(*a, **k):
        raise RuntimeError("the evaluation failed")

    monkeypatch.setattr(tr, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        tr.fit()
    assert load_checkpoint(tmp_path / "checkpoints/last.pt")["step"] == 7


def _poison(run_dir):
    ckpt = load_checkpoint(run_dir / "checkpoints/last.pt")
    first = next(iter(ckpt["rule"]["modules"]["generator"]))
    ckpt["rule"]["modules"]["generator"][first].fill_(math.nan)
    save_atomic(ckpt, run_dir / "checkpoints/last.pt")
    return first


def test_eval_and_sample_refuse_non_finite_weights(tmp_path, tiny_overrides, capsys):
    Trainer(_tiny(tiny_overrides, "train.steps=5"), tmp_path / "r").fit()
    name = _poison(tmp_path / "r")
    with pytest.raises(CheckpointError, match=f"non-finite weights \\(generator.{name}"):
        load_run(tmp_path / "r")
    for cmd in (["eval", str(tmp_path / "r")], ["sample", str(tmp_path / "r"), "--n", "10", "--out", str(tmp_path / "x.npz")]):
        assert main(cmd) == 2
        assert "non-finite weights" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_sample_never_writes_non_finite_samples(tmp_path, tiny_overrides, monkeypatch):
    Trainer(_tiny(tiny_overrides, "train.steps=5"), tmp_path / "r").fit()
    from scoregan.experiment.runs import Run

    monkeypatch.setattr(Run, "sample", lambda self, n, seed=0: torch.full((n, 2), math.nan))
    with pytest.raises(ValueError, match="10 of 10 samples .* are NaN or infinite: nothing written"):
        api.sample(tmp_path / "r", n=10, out=tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_eval_refuses_a_config_yaml_that_does_not_match_its_checkpoint(tmp_path, tiny_overrides):
    Trainer(_tiny(tiny_overrides, "train.steps=5"), tmp_path / "r").fit()
    cfg_path = tmp_path / "r/config.yaml"
    text = cfg_path.read_text()
    cfg_path.write_text(text.replace("name: nsgan", "name: sgan"))
    with pytest.raises(CheckpointError, match="names trainer 'sgan' but its checkpoint was written by 'nsgan'"):
        load_run(tmp_path / "r")
    edited = text.replace("activation: relu", "activation: tanh", 1)  # same shapes, another network
    assert edited != text
    cfg_path.write_text(edited)
    with pytest.raises(CheckpointError, match="model.generator.activation = 'tanh' in config.yaml, 'relu' in the "
                                              "checkpoint"):
        load_run(tmp_path / "r")


def test_a_run_killed_before_its_first_checkpoint_resumes_from_its_config(tmp_path, tiny_overrides):
    cfg = _tiny(tiny_overrides, "train.steps=6")
    Trainer(cfg, tmp_path / "r").tracker.close()  # the directory and config.yaml exist, no checkpoint yet
    assert (tmp_path / "r/config.yaml").is_file() and not (tmp_path / "r/checkpoints").exists()
    res = api.train(resume=tmp_path / "r")
    assert res.step == 6 and load_checkpoint(tmp_path / "r/checkpoints/last.pt")["step"] == 6

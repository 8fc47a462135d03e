"""The training loop: exact resume, atomic checkpoints, clear failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scoregan.checkpoint import CheckpointError, load_checkpoint, save_atomic
from scoregan.config import load_config
from scoregan.experiment.callbacks import StopAtStep
from scoregan.experiment.loop import Trainer
from scoregan.experiment.runs import load_run

ROOT = Path(__file__).resolve().parents[2]

CONFIGS = {"nsgan": ROOT / "configs/toy/8gaussians-nsgan.yaml", "wgan-gp": ROOT / "configs/toy/8gaussians-wgan-gp.yaml"}

def _cfg(name, tiny, *extra):
    return load_config(CONFIGS[name], [*tiny, "train.steps=20", "train.checkpoint_every=5", "train.eval_every=10",
                                       "train.log_every=1", *extra])


def _rows(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]

class _CtrlC(StopAtStep):
    def on_step_end(self, trainer, logs):
        if trainer.step == self.stop_step:
            raise KeyboardInterrupt


def test_resume_truncates_lines_logged_after_the_checkpoint(tmp_path, tiny_overrides):
    cfg = _cfg("nsgan", tiny_overrides)
    Trainer(cfg, tmp_path / "a").fit()
    Trainer(cfg, tmp_path / "b", callbacks=[StopAtStep(10)]).fit()
    with open(tmp_path / "b/metrics.jsonl", "a") as f:  # lines a killed run wrote after step 10
        f.write(json.dumps({"step": 11, "kind": "train", "loss_d": 123.0}) + "\n")
        f.write('{"step": 12, "kind": "tr')  # cut mid-line by the kill
    Trainer(cfg, tmp_path / "b", resume=True).fit()
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")


def test_sigkill_leaves_a_loadable_checkpoint(tmp_path):
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "scoregan.cli", "train", str(CONFIGS["nsgan"]), "--run-dir", str(run), "--no-progress",
           "--set", "tracking.mode=disabled", "--set", "train.steps=1000000", "--set", "train.checkpoint_every=1",
           "--set", "train.eval_every=1000000", "--set", "model.generator.hidden=[16]",
           "--set", "model.discriminator.hidden=[16]", "--set", "train.batch_size=16"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoints/last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.1)
    time.sleep(1.0)  # let it overwrite the checkpoint many times
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    step = load_checkpoint(ckpt)["step"]
    assert step >= 1
    assert not any(p.suffix == ".tmp" and p.stat().st_size > 0 and False for p in ckpt.parent.iterdir())
    cfg = load_config(run / "config.yaml", ["train.steps=" + str(step + 3), "train.eval_every=1000"])
    res = Trainer(cfg, run, resume=True).fit()
    assert res.step == step + 3


def test_corrupted_and_truncated_checkpoints_are_named(tmp_path):
    good = tmp_path / "good.pt"
    save_atomic({"step": 1, "rule": {"modules": {}}}, good)
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(os.urandom(256))
    for name in ("trunc.pt", "garbage.pt"):
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a scoregan checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_checkpoints_are_weights_only(tmp_path, tiny_overrides):
    cfg = _cfg("wgan-gp", tiny_overrides, "train.steps=5")
    Trainer(cfg, tmp_path).fit()
    ck = torch.load(tmp_path / "checkpoints/last.pt", weights_only=True)  # no pickled code
    assert ck["step"] == 5 and ck["trainer"] == "wgan-gp"
    run = load_run(tmp_path)
    assert run.step == 5 and run.discriminator is not None
    assert run.sample(7).shape == (7, 2)


def test_seed_determines_the_run(tmp_path, tiny_overrides):
    a = Trainer(_cfg("nsgan", tiny_overrides, "train.steps=5"), tmp_path / "a").fit()
    b = Trainer(_cfg("nsgan", tiny_overrides, "train.steps=5"), tmp_path / "b").fit()
    c = Trainer(_cfg("nsgan", tiny_overrides, "train.steps=5", "train.seed=1"), tmp_path / "c").fit()
    assert a.metrics == b.metrics and a.metrics != c.metrics


def test_float64_runs(tmp_path, tiny_overrides):
    res = Trainer(_cfg("nsgan", tiny_overrides, "train.steps=3", "train.dtype=float64"), tmp_path).fit()
    run = load_run(tmp_path)
    assert next(run.generator.parameters()).dtype == torch.float64 and res.step == 3


def test_a_fresh_run_never_overwrites_an_existing_one(tmp_path, tiny_overrides):
    cfg = _cfg("nsgan", tiny_overrides, "train.steps=2")
    Trainer(cfg, tmp_path).fit()
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a run: continue it with --resume"):
        Trainer(cfg, tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_config_sections_turn_on_diagnostics_and_early_stopping(tmp_path, tiny_overrides):
    cfg = _cfg("nsgan", tiny_overrides, "train.steps=10", "diagnostics.every=5", "diagnostics.batch=32",
               "early_stopping.enabled=true")
    Trainer(cfg, tmp_path).fit()
    kinds = [r["kind"] for r in _rows(tmp_path)]
    assert kinds.count("diagnostics") == 2 and "early_stopping" in kinds
    assert (tmp_path / "checkpoints/best.pt").is_file()
    from scoregan.config import ConfigError

    with pytest.raises(ConfigError, match="early_stopping.metric = 'combined' needs diagnostics"):
        _cfg("nsgan", tiny_overrides, "early_stopping.enabled=true")


def test_a_resume_that_does_not_fit_leaves_the_run_as_it_was(tmp_path, tiny_overrides):
    cfg = _cfg("nsgan", tiny_overrides, "train.steps=2")
    Trainer(cfg, tmp_path).fit()
    before = {p: (tmp_path / p).read_bytes() for p in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt")}
    with pytest.raises(CheckpointError, match=r"does not fit the config .*size mismatch"):
        Trainer(load_config(tmp_path / "config.yaml", ["model.generator.hidden=[8]"]), tmp_path, resume=True)
    assert {p: (tmp_path / p).read_bytes() for p in before} == before
    assert Trainer(load_config(tmp_path / "config.yaml", ["train.steps=4"]), tmp_path, resume=True).fit().step == 4


def test_ctrl_c_says_whether_the_run_can_continue(tmp_path, tiny_overrides):
    from scoregan.experiment.loop import TrainingInterrupted

    cfg = _cfg("nsgan", tiny_overrides, "train.checkpoint_every=3")
    with pytest.raises(TrainingInterrupted, match=f"step 2; no checkpoint was written yet: scoregan train --resume "
                                                  f"{tmp_path / 'a'} starts it over"):
        Trainer(cfg, tmp_path / "a", callbacks=[_CtrlC(2)]).fit()
    assert Trainer(cfg, tmp_path / "a").fit().step == 20  # the fresh command starts it over too
    with pytest.raises(TrainingInterrupted, match=f"step 7; the checkpoint of step 6 .*--resume {tmp_path / 'b'}"):
        Trainer(cfg, tmp_path / "b", callbacks=[_CtrlC(7)]).fit()


def test_api_train_applies_overrides_to_a_loaded_config(tmp_path, tiny_overrides):
    from scoregan import api

    result = api.train(_cfg("nsgan", tiny_overrides), overrides=["train.steps=3"], run_dir=tmp_path)
    assert result.step == 3 and load_config(tmp_path / "config.yaml").train.steps == 3


def test_run_directories_hold_absolute_paths_and_keep_their_best_checkpoint(tmp_path, tiny_overrides, monkeypatch):
    import numpy as np

    from scoregan import api

    monkeypatch.chdir(tmp_path)
    np.savez("points.npz", x=np.random.default_rng(0).normal(size=(500, 2)))
    Trainer(load_config(None, [*tiny_overrides, "train.steps=2", "data.name=npz", "data.path=points.npz"]), "run").fit()
    assert load_config("run/config.yaml").data.path == str(tmp_path / "points.npz")
    ckpts = tmp_path / "run/checkpoints"
    (ckpts / "best.pt").write_bytes((ckpts / "last.pt").read_bytes())
    monkeypatch.chdir(ROOT)  # elsewhere: the run still finds its data
    api.train(resume=tmp_path / "run", overrides=["train.steps=4"])
    assert api.evaluate(tmp_path / "run")["step"] == 4
    assert api.evaluate(tmp_path / "run", checkpoint="best")["step"] == 2


def test_a_run_stopped_early_stays_stopped_on_resume_unless_asked(tmp_path, tiny_overrides):
    rule = ["early_stopping.enabled=true", "early_stopping.metric=w2", "early_stopping.rule=threshold",
            "early_stopping.threshold=-100", "early_stopping.patience=1", "train.eval_every=5", "train.steps=40"]
    first = Trainer(_cfg("nsgan", tiny_overrides, *rule), tmp_path).fit()
    assert first.stopped_early and first.step == 10
    again = Trainer(load_config(tmp_path / "config.yaml"), tmp_path, resume=True).fit()
    assert again.step == 10 and again.stopped_early and again.metrics == {}
    on = Trainer(load_config(tmp_path / "config.yaml", ["early_stopping.enabled=false"]), tmp_path, resume=True).fit()
    assert on.step == 40 and not on.stopped_early


def test_bf16_autocast_trains_close_to_fp32_and_compile_is_for_cuda(tmp_path, tiny_overrides):
    """train.precision=bf16 runs the steps under bfloat16 autocast (float32 weights): finite losses, and after
    a few steps the weights stay within bfloat16's precision of the float32 run's."""
    cfg = _cfg("nsgan", tiny_overrides, "train.steps=5", "train.eval_every=1000")
    Trainer(cfg, tmp_path / "fp32").fit()
    cfg16 = _cfg("nsgan", tiny_overrides, "train.steps=5", "train.eval_every=1000", "train.precision=bf16")
    Trainer(cfg16, tmp_path / "bf16").fit()
    a = load_checkpoint(tmp_path / "fp32/checkpoints/last.pt")["rule"]["modules"]["generator"]
    b = load_checkpoint(tmp_path / "bf16/checkpoints/last.pt")["rule"]["modules"]["generator"]
    assert all(v.dtype == torch.float32 for v in b.values())
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert 0 < diff < 0.05  # the bf16 path is taken (it differs) and stays close (5 Adam steps of 2e-4)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="train.compile = true compiles the networks for CUDA"):
            Trainer(_cfg("nsgan", tiny_overrides, "train.compile=true"), tmp_path / "c")

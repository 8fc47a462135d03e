"""Pre-emption (scoregan.experiment.preemption): SIGTERM / SIGUSR1 write a checkpoint at the current
step and exit with code 75; ``--resume-if-exists`` starts or continues a run, bit-identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from scoregan import api
from scoregan.checkpoint import load_checkpoint
from scoregan.config import ConfigError, load_config
from scoregan.experiment.callbacks import Callback
from scoregan.experiment.loop import Trainer
from scoregan.experiment.preemption import PREEMPTED_EXIT_CODE, TrainingPreempted
from tests.helpers import ROOT

NSGAN = ROOT / "configs/toy/8gaussians-nsgan.yaml"
SMALL = ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "model.generator.hidden=[16]",
         "model.discriminator.hidden=[16]", "train.batch_size=32", "eval.n_samples=64", "train.steps=24",
         "train.checkpoint_every=10", "train.eval_every=8", "train.log_every=1"]


class SignalAt(Callback):
    """Sends the process a signal at the end of step ``step``, as a cluster would mid-run."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_step_end(self, trainer, logs):
        if trainer.step == self.step:
            os.kill(os.getpid(), self.signum)


def _same_run(a, b):
    ca, cb = load_checkpoint(a / "checkpoints/last.pt"), load_checkpoint(b / "checkpoints/last.pt")
    assert ca["step"] == cb["step"]
    for net, params in ca["rule"]["modules"].items():
        for k, v in params.items():
            assert torch.equal(v, cb["rule"]["modules"][net][k]), f"{net}.{k}"
    for opt, state in ca["rule"]["optimizers"].items():
        for pid, st in state["state"].items():
            assert torch.equal(st["exp_avg_sq"], cb["rule"]["optimizers"][opt]["state"][pid]["exp_avg_sq"])
    rows = [[json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
    assert rows[0] == rows[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_checkpoints_the_current_step_and_the_resume_is_bit_identical(tmp_path, signum):
    cfg = load_config(NSGAN, SMALL)
    Trainer(cfg, tmp_path / "straight").fit()
    with pytest.raises(TrainingPreempted, match=f"{signal.Signals(signum).name} at step 13: the checkpoint of step 13"):
        Trainer(cfg, tmp_path / "cut", callbacks=[SignalAt(13, signum)]).fit()
    assert load_checkpoint(tmp_path / "cut/checkpoints/last.pt")["step"] == 13  # not the step-10 checkpoint
    assert signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler)  # handlers restored
    assert api.train(NSGAN, overrides=SMALL, run_dir=tmp_path / "cut", resume_if_exists=True).step == 24
    _same_run(tmp_path / "straight", tmp_path / "cut")


def test_resume_if_exists_refuses_another_config(tmp_path):
    api.train(NSGAN, overrides=SMALL, run_dir=tmp_path / "r", resume_if_exists=True)
    with pytest.raises(ConfigError, match="holds a run of another config: optim.lr_g = 0.001 in the given config"):
        api.train(NSGAN, overrides=[*SMALL, "optim.lr_g=1e-3"], run_dir=tmp_path / "r", resume_if_exists=True)


def _sigterm_after_progress(cmd, cwd, rows_file, min_rows):
    """Start ``cmd``, SIGTERM it once ``rows_file`` has more than ``min_rows`` lines; (exit code, stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if rows_file.exists() and len(rows_file.read_text().splitlines()) > min_rows:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60), proc.stderr.read().decode().strip()


@pytest.mark.slow
def test_the_command_line_exits_75_on_sigterm_and_the_same_command_continues(tmp_path):
    run = tmp_path / "run"
    sets = [*[o for o in SMALL if not o.startswith(("train.steps", "train.checkpoint_every", "train.eval_every"))],
            "train.steps=100000", "train.checkpoint_every=100000", "train.eval_every=100000"]
    cmd = [sys.executable, "-m", "scoregan", "train", str(NSGAN), "--run-dir", str(run), "--resume-if-exists",
           "--no-progress", *[x for o in sets for x in ("--set", o)]]
    code, err = _sigterm_after_progress(cmd, tmp_path, run / "metrics.jsonl", 5)
    assert code == PREEMPTED_EXIT_CODE and err.count("\n") == 0 and "pre-empted by SIGTERM at step" in err
    step = load_checkpoint(run / "checkpoints/last.pt")["step"]
    assert step > 5
    code, err = _sigterm_after_progress(cmd, tmp_path, run / "metrics.jsonl", step + 5)  # the same command again
    assert code == PREEMPTED_EXIT_CODE
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] > step + 5  # it continued from the checkpoint

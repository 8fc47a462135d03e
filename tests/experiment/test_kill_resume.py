"""A killed job resumes with the same command and loses nothing: SIGKILL during start-up, before the
first checkpoint and mid-training, each followed by the same ``--resume-if-exists`` command;
metrics.jsonl then holds every logged step once and the last offline wandb segment every row of it
(bench/kill_resume.py runs the same drill with 20 random kills)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, wandb_history

pytestmark = pytest.mark.slow


def _wait_for(path, proc, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline and not path.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def test_sigkill_anywhere_then_the_same_command_loses_nothing(tmp_path):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    fresh = [sys.executable, "-m", "scoregan", "train", str(ROOT / "configs/toy/8gaussians-nsgan.yaml"), "--run-dir",
             str(run), "--no-progress", "--set", "train.steps=400", "--set", "train.checkpoint_every=20",
             "--set", "train.log_every=10", "--set", "train.eval_every=1000", "--set", "tracking.mode=offline",
             "--set", "eval.figures=false", "--set", "model.generator.hidden=[32]",
             "--set", "model.discriminator.hidden=[32]", "--set", "train.batch_size=32", "--resume-if-exists"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}, "WANDB_SILENT": "true",
           "WANDB_BASE_URL": "http://127.0.0.1:9"}  # a job of its own, not attached to this process's wandb service
    env.pop("WANDB_MODE", None)

    def start(cmd):
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def kill(proc):
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    proc = start(fresh)  # 1: killed while Python is still importing: nothing written
    time.sleep(0.3)
    kill(proc)
    assert not (run / "config.yaml").exists()
    proc = start(fresh)  # 2: killed once config.yaml exists, before the first checkpoint
    _wait_for(run / "config.yaml", proc)
    kill(proc)
    proc = start(fresh)  # 3: the same command continues it; killed after a checkpoint
    _wait_for(run / "checkpoints/last.pt", proc)
    time.sleep(0.5)
    kill(proc)
    proc = start(fresh)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-500:]

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(10, 401, 10))
    expected = [(r["step"], r["kind"]) for r in rows]
    missing = []
    for segment in (run / "wandb").glob("offline-run-*/*.wandb"):  # one segment per process that got that far
        logged = {(h["step"], k.split("/")[0]) for h in wandb_history(segment) for k in h if "/" in k}
        missing.append(len([e for e in expected if e not in logged]))
    assert min(missing) == 0  # the last segment replayed metrics.jsonl and logged the rest: every row

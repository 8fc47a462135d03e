"""Exact resume for every update rule: a run stopped at a checkpoint and resumed ends bit-identical to
an uninterrupted one (networks, optimiser states, the rule's extra state, every logged line)."""

from __future__ import annotations

import json

import pytest
import torch

from scoregan.checkpoint import load_checkpoint
from scoregan.config import load_config
from scoregan.experiment.callbacks import StopAtStep
from scoregan.experiment.loop import Trainer
from tests.helpers import FAST, SMALL_NETS

RESUME_CASES = {
    "nsgan": [], "sgan": [], "lsgan": [], "hinge": [], "wgan-gp": [], "fgan": ["trainer.divergence=pearson"],
    "gmmn": [], "mmd-gan": ["trainer.n_critic=2"],
    "kernel-flow": ["trainer.bank_size=64", "trainer.kernel=coulomb", "trainer.inner_steps=2"],
    "score-gan": ["trainer.divergence=kl", "trainer.sigma_mode=schedule"],  # ratio network included
    "score-gan/batch": ["trainer.generator_score=batch", "trainer.generator_score_batch=32", "trainer.ema=0.9"],
    "cfm": ["trainer.sigma=0.1", "trainer.solver=euler", "trainer.ode_steps=4"],
    "ot-cfm": ["trainer.ema=0.9", "trainer.solver=euler", "trainer.ode_steps=4"],
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_bit_identical(tmp_path, case):
    name = case.split("/")[0]
    cfg = load_config(None, [f"trainer.name={name}", *FAST, *SMALL_NETS.get(name, []), *RESUME_CASES[case],
                             "train.steps=6", "train.checkpoint_every=3", "train.eval_every=3", "train.log_every=1"])
    Trainer(cfg, tmp_path / "straight").fit()
    first = Trainer(cfg, tmp_path / "resumed", callbacks=[StopAtStep(3)]).fit()
    assert first.step == 3 and first.stopped_early
    Trainer(cfg, tmp_path / "resumed", resume=True).fit()
    a = load_checkpoint(tmp_path / "straight/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "resumed/checkpoints/last.pt")
    assert a["step"] == b["step"] == 6
    a, b = a["rule"], b["rule"]
    assert set(a["modules"]) == set(b["modules"])
    for net, params in a["modules"].items():
        for k, v in params.items():
            assert torch.equal(v, b["modules"][net][k]), f"{net}.{k} differs after resume"
    for opt, state in a["optimizers"].items():
        for pid, st in state["state"].items():
            assert torch.equal(st["exp_avg"], b["optimizers"][opt]["state"][pid]["exp_avg"]), f"{opt} Adam state"
    for key, v in a["extra"].items():
        assert torch.equal(v, b["extra"][key]) if isinstance(v, torch.Tensor) else v == b["extra"][key]
    rows = [[json.loads(r) for r in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("straight", "resumed")]
    assert rows[0] == rows[1]  # losses and evaluations, line for line
    assert sum(r["kind"] == "eval" for r in rows[0]) == 2

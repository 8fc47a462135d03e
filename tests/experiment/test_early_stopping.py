"""The diagnostics and early-stopping callbacks: the rule on synthetic signals, logging, cost,
checkpoint ``best``, and exact resume with the loop."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from scoregan.checkpoint import load_checkpoint
from scoregan.config import ConfigError, load_config
from scoregan.experiment.callbacks import StopAtStep
from scoregan.experiment.early_stopping import EarlyStopping, callbacks_from_config
from scoregan.experiment.loop import Trainer
from scoregan.experiment.monitor import DiagnosticsCallback
from scoregan.schema import DiagnosticsConfig, EarlyStoppingConfig, _convert

ROOT = Path(__file__).resolve().parents[2]

NSGAN = ROOT / "configs/toy/8gaussians-nsgan.yaml"

TIMING = {"time_diag_s", "time_step_s", "diag_cost_steps", "diag_overhead"}

class FakeTracker:
    def __init__(self):
        self.rows = []

    def log(self, step, values, kind="train"):
        self.rows.append({"step": step, "kind": kind, **values})

class FakeTrainer:
    """What the early-stopping rule touches: step, tracker, save_checkpoint, should_stop."""

    def __init__(self):
        self.step = 0
        self.tracker = FakeTracker()
        self.saved: list[tuple[str, int]] = []
        self.should_stop = False

    def save_checkpoint(self, name="last"):
        self.saved.append((name, self.step))

def _feed(es: EarlyStopping, trace: list[float], every: int = 10) -> FakeTrainer:
    tr = FakeTrainer()
    for i, value in enumerate(trace):
        tr.step = (i + 1) * every
        es.observe(tr, value)
        if tr.should_stop:
            break
    return tr

def _refine_then_collapse(turn: int, n: int, seed: int = 0) -> list[float]:
    """log-signal falling by 0.05 per measurement until ``turn``, rising by 0.08 after, noise 0.02."""
    g = torch.Generator().manual_seed(seed)
    noise = 0.02 * torch.randn(n, generator=g, dtype=torch.float64)
    return [math.exp((-0.05 * i if i <= turn else -0.05 * turn + 0.08 * (i - turn)) + float(noise[i])) for i in range(n)]

def _cfg(tiny, steps=100):
    # a high learning rate: the combined signal rises, falls and rises again within 100 steps
    return load_config(NSGAN, [*tiny, f"train.steps={steps}", "train.checkpoint_every=10", "train.eval_every=1000",
                               "optim.lr_g=5e-3", "optim.lr_d=5e-3",
                               "train.log_every=5", "model.generator.hidden=[16, 16]",
                               "model.discriminator.hidden=[16, 16]", "train.batch_size=32", "eval.n_samples=64"])

def _callbacks(action="continue"):
    diag = DiagnosticsCallback(DiagnosticsConfig(every=4, batch=32))
    es = EarlyStopping(EarlyStoppingConfig(enabled=True, metric="combined", smoothing=0.5, patience=2, rise=0.3,
                                           action=action), diag)
    return [diag, es]

def _rows(run_dir, kind):
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows if r["kind"] == kind]

def _tiny_digits_rule(tiny_overrides, *overrides):
    """A tiny NS-GAN on digits with an early-stopping rule (action continue) built from the config."""
    return load_config(None, [*tiny_overrides, "trainer.name=nsgan", "data.name=digits", "model.latent_dim=4",
                              "train.checkpoint_every=10",
                              "train.batch_size=32", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]",
                              "early_stopping.enabled=true", "early_stopping.action=continue", *overrides])

def _straight(cfg, tmp_path):
    """Train ``cfg`` without interruption in tmp_path/straight; returns its early-stopping callback."""
    trainer = Trainer(cfg, tmp_path / "straight")
    trainer.fit()
    return next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))

def _resumed_like_straight(cfg, tmp_path, kinds, stop_at=20):
    """Train ``cfg`` in tmp_path/resumed, interrupted at ``stop_at`` and resumed (callbacks built
    from the config); assert its rows of each kind equal tmp_path/straight's. Returns the resumed
    run's early-stopping callback."""
    Trainer(cfg, tmp_path / "resumed", callbacks=[StopAtStep(stop_at)]).fit()
    resumed = Trainer(cfg, tmp_path / "resumed", resume=True)
    resumed.fit()
    for kind in kinds:
        assert _rows(tmp_path / "straight", kind) == _rows(tmp_path / "resumed", kind), kind
    return next(c for c in resumed.callbacks if isinstance(c, EarlyStopping))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refining_then_collapsing_trace_stops_near_the_turn(seed):
    turn = 40  # measurement index of the true minimum
    cfg = EarlyStoppingConfig(enabled=True, metric="combined", smoothing=0.5, patience=3, rise=0.1)
    es = EarlyStopping(cfg, DiagnosticsCallback(DiagnosticsConfig(every=10)))
    tr = _feed(es, _refine_then_collapse(turn, 100, seed))
    assert es.stop_step is not None and tr.should_stop
    turn_step = (turn + 1) * 10
    assert abs(es.best_step - turn_step) <= 30, (es.best_step, turn_step)  # within 3 measurements
    # rising by 0.08 a measurement, the smoothed signal clears best + 0.1 within a few measurements,
    # then patience 3 more: the stop comes soon after the turn, not at the end
    assert turn_step < es.stop_step <= turn_step + 120
    assert tr.saved[-1] == ("best", es.best_step)  # the checkpoint kept is the turn's
    stops = [r for r in tr.tracker.rows if "stop_step" in r]
    assert len(stops) == 1 and stops[0]["stop_step"] == es.stop_step and stops[0]["best_step"] == es.best_step


def test_fitting_bump_is_not_a_turn():
    """A rise first (the discriminator sharpening while fitting), a fall (refining), then a rise:
    the turn is the trough after the fall, not the start of the run."""
    logs = [0.05 * i for i in range(20)] + [1.0 - 0.04 * i for i in range(40)] + [-0.6 + 0.08 * i for i in range(30)]
    es = EarlyStopping(EarlyStoppingConfig(enabled=True, smoothing=0.5, patience=3, rise=0.1), DiagnosticsCallback())
    tr = _feed(es, [math.exp(v) for v in logs])
    trough_step = 60 * 10  # measurement index 59 (1-based 60)
    assert es.stop_step is not None and abs(es.best_step - trough_step) <= 20
    assert all(step >= 200 for name, step in tr.saved)  # nothing kept during the fitting rise
    phases = [r["phase"] for r in tr.tracker.rows if "phase" in r]
    assert phases[:20] == [0] * 20 and phases[-1] == 2 and sorted(phases) == phases  # 0 -> 1 -> 2, one way


def test_monotone_improving_rising_and_noisy_plateau_never_stop():
    g = torch.Generator().manual_seed(0)
    improving = [math.exp(-0.03 * i + 0.01 * float(torch.randn((), generator=g))) for i in range(200)]
    rising = [math.exp(0.03 * i + 0.01 * float(torch.randn((), generator=g))) for i in range(200)]
    plateau = [math.exp(0.04 * float(torch.randn((), generator=g))) for _ in range(200)]  # within the 0.1 band
    for trace in (improving, rising, plateau):
        es = EarlyStopping(EarlyStoppingConfig(enabled=True, metric="steepness", smoothing=0.5, patience=3, rise=0.1),
                           DiagnosticsCallback())
        tr = _feed(es, trace)
        assert es.stop_step is None and not tr.should_stop
    assert ("best", 2000) in _feed(EarlyStopping(EarlyStoppingConfig(smoothing=0.0), DiagnosticsCallback()),
                                   [math.exp(-i) for i in range(200)]).saved


def test_continue_action_freezes_the_decision_and_min_steps():
    trace = _refine_then_collapse(30, 60) + [1e-9] * 20  # a late "improvement" after the declared turn
    es = EarlyStopping(EarlyStoppingConfig(enabled=True, smoothing=0.5, patience=3, action="continue", min_steps=100),
                       DiagnosticsCallback())
    tr = _feed(es, trace)
    assert not tr.should_stop and es.stop_step is not None and es.kept_step == es.best_step
    assert all(step >= 100 for _, step in tr.saved)  # nothing saved before min_steps
    assert tr.saved[-1] == ("best", es.best_step) and es.best_step < es.stop_step < 600  # the late dip is ignored
    after = [r for r in tr.tracker.rows if r["step"] > es.stop_step]
    assert len(after) == len(trace) - es.stop_step // 10 and all(r["phase"] == 2 for r in after)  # still tracked
    assert len(es.history) == len(trace)


def test_completed_run_without_a_turn_keeps_its_final_checkpoint():
    es = EarlyStopping(EarlyStoppingConfig(enabled=True, smoothing=0.0), DiagnosticsCallback())
    tr = _feed(es, [math.exp(-0.1 * i) for i in range(30)])
    tr.cfg = SimpleNamespace(train=SimpleNamespace(steps=300))
    tr.step = 290  # interrupted before the end: nothing changes
    es.on_fit_end(tr)
    assert es.kept_step is None and tr.saved[-1] == ("best", 300)
    tr.step = 300
    tr.saved.clear()
    es.on_fit_end(tr)
    assert es.kept_step == 300 and tr.saved == [("best", 300)]


def test_eval_metric_signal_reads_on_eval():
    es = EarlyStopping(EarlyStoppingConfig(enabled=True, metric="w2", smoothing=0.0, patience=2, rise=0.05))
    tr = FakeTrainer()
    for step, w2 in zip(range(100, 900, 100), [3.0, 2.0, 1.0, 0.9, 1.2, 1.5, 1.6, 1.7]):
        tr.step = step
        es.on_eval(tr, {"w2": w2, "modes_covered": 8})
    assert es.best_step == 400 and es.stop_step == 600 and tr.should_stop


def test_config_sections_and_factory():
    from scoregan.config import DIAGNOSTIC_STOPPING_SIGNALS, EARLY_STOPPING_SIGNALS
    from scoregan.experiment.early_stopping import DIAGNOSTIC_SIGNALS, EVAL_SIGNALS

    # the config's choices and the callback's signal map name the same signals
    assert tuple(DIAGNOSTIC_SIGNALS) == DIAGNOSTIC_STOPPING_SIGNALS
    assert (*DIAGNOSTIC_SIGNALS, *EVAL_SIGNALS) == EARLY_STOPPING_SIGNALS
    assert callbacks_from_config(DiagnosticsConfig(every=0), EarlyStoppingConfig()) == []
    cbs = callbacks_from_config(DiagnosticsConfig(every=10), EarlyStoppingConfig(enabled=True))
    assert [type(c) for c in cbs] == [DiagnosticsCallback, EarlyStopping]
    assert cbs[0]._subscribers == [cbs[1]._on_diagnostics]
    assert [type(c) for c in callbacks_from_config(DiagnosticsConfig(every=0),
                                                   EarlyStoppingConfig(enabled=True, metric="w2"))] == [EarlyStopping]
    with pytest.raises(ValueError, match="diagnostics.every"):
        callbacks_from_config(DiagnosticsConfig(every=0), EarlyStoppingConfig(enabled=True, metric="combined"))
    # the dataclasses type-check through the config machinery (ranges and choices)
    ok = _convert(EarlyStoppingConfig, {"enabled": True, "patience": 4, "action": "continue"}, "early_stopping", {})
    assert ok.patience == 4 and ok.action == "continue"
    with pytest.raises(ConfigError, match="early_stopping.action"):
        _convert(EarlyStoppingConfig, {"action": "halt"}, "early_stopping", {})
    with pytest.raises(ConfigError, match="diagnostics.every"):
        _convert(DiagnosticsConfig, {"every": -1}, "diagnostics", {})
    with pytest.raises(ConfigError, match="early_stopping.smoothing"):
        _convert(EarlyStoppingConfig, {"smoothing": 1.5}, "early_stopping", {})


def test_callbacks_log_do_not_perturb_training_and_resume_exactly(tmp_path, tiny_overrides):
    cfg = _cfg(tiny_overrides)
    Trainer(cfg, tmp_path / "plain").fit()  # no callbacks
    straight_cbs = _callbacks()
    Trainer(cfg, tmp_path / "straight", callbacks=straight_cbs).fit()

    # diagnostics never change training: same final networks as without callbacks
    a = load_checkpoint(tmp_path / "plain/checkpoints/last.pt")["rule"]["modules"]
    b = load_checkpoint(tmp_path / "straight/checkpoints/last.pt")["rule"]["modules"]
    for net in a:
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k}"

    diag_rows = _rows(tmp_path / "straight", "diagnostics")
    assert [r["step"] for r in diag_rows] == list(range(4, 101, 4))
    full = [json.loads(line) for line in (tmp_path / "straight/metrics.jsonl").read_text().splitlines()]
    timed = [r for r in full if r["kind"] == "diagnostics" and "diag_overhead" in r]
    assert len(timed) == len(diag_rows) and all(r["diag_overhead"] > 0 for r in timed)
    es = straight_cbs[1]
    assert es.stop_step is not None, "the test settings should declare a turn"
    assert es.best_step > 60 and es.stop_step > 60, "the decision should come after the interruption below"
    assert [r["phase"] for r in _rows(tmp_path / "straight", "early_stopping") if "phase" in r][6:16].count(1) > 0
    best = load_checkpoint(tmp_path / "straight/checkpoints/best.pt")
    assert best["step"] == es.best_step == es.kept_step

    # interrupted at step 60 (while refining), then resumed with fresh callbacks: same rows, same decision
    interrupted = _callbacks()
    Trainer(cfg, tmp_path / "resumed", callbacks=[*interrupted, StopAtStep(60)]).fit()
    assert interrupted[1].phase == 1 and interrupted[1].stop_step is None
    resumed_cbs = _callbacks()
    Trainer(cfg, tmp_path / "resumed", resume=True, callbacks=resumed_cbs).fit()
    for kind in ("diagnostics", "early_stopping", "train"):
        assert _rows(tmp_path / "straight", kind) == _rows(tmp_path / "resumed", kind), kind
    assert (resumed_cbs[1].best_step, resumed_cbs[1].stop_step) == (es.best_step, es.stop_step)
    assert resumed_cbs[1].history == es.history
    assert load_checkpoint(tmp_path / "resumed/checkpoints/best.pt")["step"] == es.best_step


def test_stop_action_ends_the_run_at_the_turn(tmp_path, tiny_overrides):
    cbs = _callbacks(action="stop")
    result = Trainer(_cfg(tiny_overrides, steps=300), tmp_path / "run", callbacks=cbs).fit()
    assert result.stopped_early and result.step == cbs[1].stop_step < 300
    stops = [r for r in _rows(tmp_path / "run", "early_stopping") if "stop_step" in r]
    assert stops == [{"step": result.step, "kind": "early_stopping", "stop_step": result.step,
                      "best_step": cbs[1].best_step, "best_signal": cbs[1].best, "stopped": 1.0}]


def test_diagnostics_measure_the_sampled_ema_generator_or_the_trained_one(tmp_path, tiny_overrides):
    """With trainer.ema > 0, network = sampled measures G_ema (what samples and checkpoints are judged
    by), network = trained measures G; their steepness differs, and each equals a direct measurement."""
    from scoregan.diagnostics.steepness import spectral_norm_batch

    cfg = load_config(NSGAN, [*tiny_overrides, "train.steps=20", "train.checkpoint_every=20", "train.eval_every=1000",
                              "trainer.ema=0.5", "optim.lr_g=5e-3", "model.generator.hidden=[16, 16]",
                              "model.discriminator.hidden=[16, 16]", "train.batch_size=32", "eval.n_samples=64"])
    out = {}
    for network in ("sampled", "trained"):
        diag = DiagnosticsCallback(DiagnosticsConfig(every=20, batch=16, network=network))
        trainer = Trainer(cfg, tmp_path / network, callbacks=[diag])
        trainer.fit()
        name = "generator_ema" if network == "sampled" else "generator"
        direct = spectral_norm_batch(trainer.rule.modules[name], diag._z, iters=64, tol=1e-3, rng=diag.cfg.seed + 2)
        assert diag.last["steepness_median"] == pytest.approx(float(direct.sigma.median()), rel=1e-5)
        out[network] = diag.last["steepness_median"]
    assert abs(out["sampled"] - out["trained"]) > 1e-3 * out["trained"]
    with pytest.raises(ValueError, match="diagnostics.network"):
        DiagnosticsCallback(DiagnosticsConfig(network="ema"))


def test_threshold_rule_keeps_the_last_step_below_the_level():
    """rule = threshold on a ratio that hovers below 1, crosses 1.1 at a known step and stays above:
    the kept checkpoint is the last measurement whose smoothed log-signal was <= log-level, and a
    short excursion above the level (shorter than patience) does not stop the run."""
    trace = [0.95] * 10 + [1.3, 1.3] + [0.95] * 10 + [1.05 + 0.05 * i for i in range(20)]  # crosses 1.1 late
    cfg = EarlyStoppingConfig(enabled=True, metric="dgrad_ratio", rule="threshold", threshold=math.log(1.1),
                              smoothing=0.0, patience=3)
    es = EarlyStopping(cfg, DiagnosticsCallback(DiagnosticsConfig(every=10)))
    tr = _feed(es, trace)
    first_above = next(i for i, v in enumerate(trace) if i > 12 and v > 1.1)  # index 24: 1.15
    assert es.best_step == first_above * 10  # the last one below is index first_above − 1, at step 10·first_above
    assert es.stop_step == (first_above + 3) * 10 and tr.should_stop
    assert tr.saved[-1] == ("best", es.best_step)
    # the excursion of two measurements at 1.3 (indices 10, 11) was "rising" but not a turn
    assert all(r.get("stop_step") is None for r in tr.tracker.rows[:20])
    with pytest.raises(ValueError, match="rule"):
        EarlyStopping(EarlyStoppingConfig(enabled=True, metric="dgrad_ratio", rule="peak"),
                      DiagnosticsCallback(DiagnosticsConfig(every=10)))


def test_threshold_rule_with_a_signal_above_the_level_from_the_start():
    """No measurement after min_steps is below the level: the first one after min_steps is kept
    (saved), and the turn comes after patience measurements above."""
    cfg = EarlyStoppingConfig(enabled=True, metric="dgrad_ratio", rule="threshold", threshold=0.0,
                              smoothing=0.0, patience=3, min_steps=30)
    es = EarlyStopping(cfg, DiagnosticsCallback(DiagnosticsConfig(every=10)))
    tr = _feed(es, [0.9, 0.9] + [1.5] * 20)
    assert es.best_step == 30 and es.stop_step == 50 and tr.should_stop
    assert tr.saved == [("best", 30)]


def test_overfit_signal_is_read_linearly_and_needs_a_holdout(tmp_path, tiny_overrides):
    """overfit can be <= 0, so the rule reads it as it is (a log would fail); the threshold rule keeps
    the last step at or below the level. The config refuses overfit without held-out points, and a
    run with data.holdout logs the overfitting statistics."""
    cfg = EarlyStoppingConfig(enabled=True, metric="overfit", rule="threshold", threshold=0.1, smoothing=0.0,
                              patience=2)
    es = EarlyStopping(cfg, DiagnosticsCallback(DiagnosticsConfig(every=10)))
    tr = _feed(es, [-0.05, 0.02, 0.08, 0.05, 0.15, 0.2, 0.3])
    assert [h[1] for h in es.history[:2]] == [-0.05, 0.02]
    assert es.best_step == 40 and es.stop_step == 60 and tr.should_stop
    with pytest.raises(ConfigError, match=r"early_stopping.metric = 'overfit'.*data.holdout"):
        load_config(None, ["trainer.name=nsgan", "data.name=digits", "early_stopping.enabled=true",
                           "early_stopping.metric=overfit", "diagnostics.every=10"])
    run_cfg = load_config(None, [*tiny_overrides, "trainer.name=nsgan", "data.name=digits", "data.holdout=100",
                                 "model.latent_dim=4",
                                 "train.steps=20", "train.checkpoint_every=20", "train.eval_every=1000",
                                 "diagnostics.every=10", "diagnostics.batch=32", "early_stopping.enabled=true",
                                 "early_stopping.metric=overfit", "early_stopping.action=continue"])
    trainer = Trainer(run_cfg, tmp_path / "run")
    trainer.fit()
    rows = _rows(tmp_path / "run", "diagnostics")
    assert [r["step"] for r in rows] == [10, 20]
    for r in rows:
        assert math.isfinite(r["overfit"]) and r["dgrad_heldout_median"] > 0
        assert r["overfit"] == pytest.approx((r["critic_real"] - r["critic_heldout"])
                                             / (r["critic_real"] - r["critic_fake"]), rel=1e-9)
    assert [h[1] for h in trainer.callbacks[1].history] == [r["overfit"] for r in rows]


def test_overfit_rule_from_the_config_resumes_exactly(tmp_path, tiny_overrides):
    """digits with held-out points, the overfit threshold rule built from the config: a run stopped at
    step 20 and resumed logs the same diagnostics and signal rows and keeps the same checkpoint."""
    cfg = _tiny_digits_rule(tiny_overrides, "data.holdout=64", "train.steps=40", "train.eval_every=1000",
                            "eval.n_samples=64", "diagnostics.every=5", "diagnostics.batch=32",
                            "early_stopping.metric=overfit", "early_stopping.rule=threshold",
                            "early_stopping.threshold=-1", "early_stopping.patience=2", "early_stopping.min_steps=25")
    es = _straight(cfg, tmp_path)
    # every overfit value is above -1: the first measurement from min_steps on is kept, and it counts
    # as the first of the `patience` measurements above the level
    assert (es.best_step, es.stop_step) == (25, 30)
    resumed = _resumed_like_straight(cfg, tmp_path, ("diagnostics", "early_stopping"))
    assert (resumed.best_step, resumed.stop_step) == (25, 30)
    assert load_checkpoint(tmp_path / "resumed/checkpoints/best.pt")["step"] == 25


def test_linear_eval_signals_are_read_as_they_are():
    """mmd2 and energy are unbiased estimates that can be <= 0: the rule reads them as they are (a
    log would clamp every negative value to the same number); w2 and fd through their log."""
    es = EarlyStopping(EarlyStoppingConfig(enabled=True, metric="mmd2_heldout", smoothing=0.0, patience=2, rise=0.0))
    tr = FakeTrainer()
    for step, v in zip(range(100, 800, 100), [0.05, 0.01, -0.004, -0.002, 0.003, 0.004, 0.5]):
        tr.step = step
        es.on_eval(tr, {"mmd2_heldout": v, "mmd2": 1.0})
    assert [h[1] for h in es.history] == [0.05, 0.01, -0.004, -0.002, 0.003, 0.004, 0.5]
    assert (es.best_step, es.stop_step) == (300, 500)
    fd = EarlyStopping(EarlyStoppingConfig(enabled=True, metric="fd_heldout", smoothing=0.0))
    tr.step = 100
    fd.on_eval(tr, {"fd_heldout": 2.5})
    assert fd.history[0][1] == pytest.approx(math.log(2.5), rel=1e-15)


def test_heldout_validation_rule_from_the_config_keeps_the_lowest_evaluation_and_resumes(tmp_path, tiny_overrides):
    """Validation early stopping on digits: every evaluation's Fréchet distance to the held-out points
    feeds the trough rule; best.pt is the evaluation with the lowest one before the declared turn,
    an interrupted and resumed run logs the same rows and keeps the same checkpoint, and the config
    refuses a held-out signal without held-out points."""
    with pytest.raises(ConfigError, match=r"early_stopping.metric = 'fd_heldout'.*data.holdout"):
        load_config(None, ["data.name=digits", "early_stopping.enabled=true", "early_stopping.metric=fd_heldout"])
    cfg = _tiny_digits_rule(tiny_overrides, "data.holdout=100", "train.steps=60", "train.eval_every=5",
                            "eval.n_samples=128", "eval.figures=false", "optim.lr_g=3e-2", "optim.lr_d=3e-2",
                            "early_stopping.metric=fd_heldout", "early_stopping.rule=trough", "early_stopping.rise=0",
                            "early_stopping.smoothing=0", "early_stopping.patience=2")
    es = _straight(cfg, tmp_path)
    evals = _rows(tmp_path / "straight", "eval")
    assert [r["step"] for r in evals] == list(range(5, 61, 5))
    assert [h[1] for h in es.history] == pytest.approx([math.log(r["fd_heldout"]) for r in evals], rel=1e-12)
    assert es.stop_step is not None, "the test settings should declare a turn"
    # the kept step: the lowest fd_heldout after the first measurement (fitting) up to the turn
    upto = [r for r in evals if 5 < r["step"] <= es.stop_step]
    assert es.kept_step == min(upto, key=lambda r: r["fd_heldout"])["step"]
    assert load_checkpoint(tmp_path / "straight/checkpoints/best.pt")["step"] == es.kept_step
    resumed = _resumed_like_straight(cfg, tmp_path, ("eval", "early_stopping"))
    assert (resumed.kept_step, resumed.stop_step) == (es.kept_step, es.stop_step)

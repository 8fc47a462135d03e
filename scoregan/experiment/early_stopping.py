"""Early stopping at the turn from refining to collapsing (docs/theory.md §8).

:class:`EarlyStopping` watches one signal s_t at each measurement (``metric``):

* ``"combined"`` (default): s = log median_i c_i = log of the median latent-sensitivity bound;
* ``"steepness"``: s = log median σ₁;  ``"dgrad_fake"``: s = log median ‖∇ₓ v(G(z))‖;
* ``"dgrad_ratio"``: s = log(median ‖∇ₓ v‖ on real points / median ‖∇ₓ v‖ on G(z)). When p_g = p_d
  the discriminator cannot tell the two sets apart, so any statistic of it, this one included, has
  the same distribution on both: s ≈ 0. It turns positive when real points sit where the
  discriminator is steep and generated ones do not: modes the generator dropped, or training points
  the discriminator memorised;
* ``"overfit"``: s = the overfitting ratio itself (not its log: it can be ≤ 0). 0 while the
  discriminator treats unseen real points like the training points, 1 once it treats them like
  generated ones. On a finite training set the discriminator memorises its points and the generator,
  pushed along ∇ₓ v, follows it towards copies of them: the quality reached so far decays;
* the periodic evaluation's distances, read at every evaluation (``train.eval_every``) instead:
  ``"w2"``, ``"sliced_w2"``, ``"fd"`` (s = their log), ``"mmd2"``, ``"energy"`` (s = the value:
  unbiased estimates, which can be ≤ 0). Against fresh target samples they are an oracle baseline;
  as ``"<name>_heldout"``, against the points ``data.holdout`` kept out of training, they are
  classic validation early stopping, which needs no target sampler, only a held-out split.

The rule. Smooth with an exponential moving average, s̄_t = β s̄_{t−1} + (1 − β) s_t (β =
``smoothing``, s̄ starts at the first value); measurements before ``min_steps`` only feed the EMA.
The rule then walks through the three phases, one way only:

1. fitting: s̄ may rise (the discriminator sharpens while the particles are pushed towards the
   data); track its running peak. Refining starts once s̄ has fallen ``rise`` below the peak.
2. refining: track the trough (lowest s̄) and save its checkpoint as ``checkpoints/best.pt`` each
   time it improves. A measurement with s̄ > trough + ``rise`` is "rising" (s is a log, so
   ``rise`` is relative: 0.1 ≈ 10 %); one back within the band resets the count, so a noisy
   plateau never stops training, nor does a signal that keeps improving.
3. collapsing: after ``patience`` consecutive rising measurements the turn is declared at the
   trough. A row (kind ``"early_stopping"``) records the stop step, the trough's step and signal;
   ``best.pt`` stays as it is (the decision is frozen), and training stops (``action="stop"``) or
   goes on (``action="continue"``, e.g. to compare with the final checkpoint).

``rule = "threshold"`` replaces the three phases by a level: after ``min_steps``, every measurement
with s̄ ≤ ``threshold`` is the kept one (saved as ``best.pt``; when none is, the first measurement
after ``min_steps``); ``patience`` consecutive measurements above it declare the turn, at the last one
below. With ``dgrad_ratio`` and threshold 0 this reads "stop
once the discriminator is steeper at the data than at the samples, and keep the last checkpoint
where it was not".

A run that completes its steps without a declared turn keeps its final checkpoint as ``best.pt``
(the rule saw no collapse). Every measurement is logged (kind ``"early_stopping"``: signal,
smoothed, peak, trough, its step, the rising count and the phase 0/1/2).

Which signal to use, measured against the oracle's quality curve, is in
docs/results/three_phases/README.md and docs/theory.md §8. The rule's state is saved in every
checkpoint, so a resumed run produces the same rows and the same decision as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

from scoregan._checks import check_choice

from scoregan.experiment.callbacks import Callback, LoopState
from scoregan.experiment.monitor import DiagnosticsCallback
from scoregan.schema import EVAL_STOPPING_SIGNALS, DiagnosticsConfig, EarlyStoppingConfig

__all__ = ["DIAGNOSTIC_SIGNALS", "EVAL_SIGNALS", "LINEAR_SIGNALS", "EarlyStopping", "callbacks_from_config"]

# early-stopping signal -> the diagnostics key whose log it watches
DIAGNOSTIC_SIGNALS = {"combined": "combined_median", "steepness": "steepness_median", "dgrad_fake": "dgrad_fake_median",
                      "dgrad_ratio": "dgrad_ratio", "overfit": "overfit"}
# read as they are (they may be <= 0); every other signal through its log
LINEAR_SIGNALS = ("overfit", "mmd2", "energy", "mmd2_heldout", "energy_heldout", "img_kid")
EVAL_SIGNALS = EVAL_STOPPING_SIGNALS
FITTING, REFINING, COLLAPSING = 0, 1, 2  # the phases as the rule sees them


class EarlyStopping(Callback):
    """The early-stopping rule of the module docstring.

    Args:
        cfg: the rule's settings.
        source: the :class:`DiagnosticsCallback` whose rows feed the diagnostic signals (needed for
            ``combined``, ``steepness`` and ``dgrad_fake``; the eval signals read ``on_eval``).

    State (also after the fit): ``phase`` (0 fitting, 1 refining, 2 collapsing), ``best_step`` (the
    trough: the kept checkpoint while refining, the turn once declared), ``stop_step`` (when the
    turn was declared, else None), ``kept_step`` (the step of ``best.pt``: the turn, or the final
    step of a completed run without a turn), ``history`` (list of (step, signal, smoothed)).
    """

    def __init__(self, cfg: EarlyStoppingConfig | None = None, source: DiagnosticsCallback | None = None):
        self.cfg = cfg or EarlyStoppingConfig()
        check_choice("metric", self.cfg.metric, (*DIAGNOSTIC_SIGNALS, *EVAL_SIGNALS))
        check_choice("action", self.cfg.action, ("stop", "continue"))
        check_choice("rule", self.cfg.rule, ("trough", "threshold"))
        if not 0 <= self.cfg.smoothing < 1:
            raise ValueError(f"smoothing must lie in [0, 1), got {self.cfg.smoothing!r}")
        self.diagnostic = self.cfg.metric in DIAGNOSTIC_SIGNALS
        if self.diagnostic:
            if source is None:
                raise ValueError(f"EarlyStopping(metric={self.cfg.metric!r}) needs a DiagnosticsCallback as source "
                                 "(diagnostics.every > 0)")
            source.subscribe(self._on_diagnostics)
        self.smoothed: float | None = None
        self.peak: float | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.phase = FITTING
        self.rising = 0
        self.stop_step: int | None = None
        self.kept_step: int | None = None
        self.history: list[tuple[int, float, float]] = []

    def on_fit_start(self, trainer: LoopState) -> None:
        """A resumed run that this rule stopped stays stopped (``early_stopping.enabled=false`` or
        ``action=continue`` trains it on)."""
        if self.cfg.action == "stop" and self.stop_step is not None and trainer.step == self.stop_step:
            trainer.should_stop = True

    # -- signal sources ------------------------------------------------------------------------
    def _on_diagnostics(self, trainer: LoopState, row: dict[str, float]) -> None:
        self.observe(trainer, row[DIAGNOSTIC_SIGNALS[self.cfg.metric]])

    def on_eval(self, trainer: LoopState, metrics: dict[str, Any]) -> None:
        if not self.diagnostic and self.cfg.metric in metrics:
            self.observe(trainer, float(metrics[self.cfg.metric]))

    # -- the rule ------------------------------------------------------------------------------
    def update(self, step: int, value: float) -> str:
        """Feed one raw (positive) value measured at ``step``; returns what happened:
        ``"warmup"`` (before min_steps), ``"fitting"``, ``"best"`` (a new trough: save it),
        ``"rising"``, ``"flat"``, ``"turn"`` (the turn is declared now) or ``"collapsing"``
        (declared earlier: the decision is frozen, the signal is still tracked)."""
        c = self.cfg
        if not math.isfinite(value):
            s = math.inf
        else:
            s = value if c.metric in LINEAR_SIGNALS else math.log(max(value, 1e-300))
        self.smoothed = s if self.smoothed is None else c.smoothing * self.smoothed + (1 - c.smoothing) * s
        self.history.append((step, s, self.smoothed))
        if self.stop_step is not None:
            return "collapsing"
        if step < c.min_steps:
            return "warmup"
        if c.rule == "threshold":
            return self._threshold_rule(step)
        if self.phase == FITTING:
            if self.peak is None or self.smoothed > self.peak:
                self.peak = self.smoothed
            if self.smoothed > self.peak - c.rise or self.smoothed == self.peak:
                return "fitting"
            self.phase = REFINING  # fell by `rise` below its peak: refining has begun
        if self.best is None or self.smoothed < self.best:
            self.best, self.best_step, self.rising = self.smoothed, step, 0
            return "best"
        if self.smoothed > self.best + c.rise:
            self.rising += 1
            if self.rising >= c.patience:
                self.stop_step, self.kept_step, self.phase = step, self.best_step, COLLAPSING
                return "turn"
            return "rising"
        self.rising = 0
        return "flat"

    def _threshold_rule(self, step: int) -> str:
        """rule = threshold: below the level, each measurement is the new kept one ("best"); above it
        for ``patience`` measurements in a row, the turn is declared at the last one below."""
        c = self.cfg
        self.phase = REFINING
        if self.smoothed <= c.threshold or self.best_step is None:
            # below the level; or the first measurement after min_steps, kept so that a signal that
            # is above the level from the start still has a checkpoint to fall back on
            fresh = self.smoothed <= c.threshold
            self.best, self.best_step = self.smoothed, step
            self.rising = 0 if fresh else 1
            return "best"
        self.rising += 1
        if self.rising >= c.patience:
            self.stop_step, self.kept_step, self.phase = step, self.best_step, COLLAPSING
            return "turn"
        return "rising"

    def observe(self, trainer: LoopState, value: float) -> None:
        event = self.update(trainer.step, value)
        nan = math.nan
        trainer.tracker.log(trainer.step, {
            "signal": self.history[-1][1], "smoothed": self.smoothed, "phase": self.phase,
            "peak": nan if self.peak is None else self.peak, "best": nan if self.best is None else self.best,
            "best_step": -1 if self.best_step is None else self.best_step, "rising": self.rising}, kind="early_stopping")
        if event == "best" and self.cfg.save_best:
            trainer.save_checkpoint("best")
        if event == "turn":
            trainer.tracker.log(trainer.step, {"stop_step": trainer.step, "best_step": self.best_step,
                                               "best_signal": self.best, "stopped": float(self.cfg.action == "stop")},
                                kind="early_stopping")
            if self.cfg.action == "stop":
                trainer.should_stop = True

    def on_fit_end(self, trainer: LoopState) -> None:
        """A run that completed its steps without a turn keeps its final checkpoint as ``best``."""
        if self.stop_step is None and trainer.step >= trainer.cfg.train.steps:
            self.kept_step = trainer.step
            if self.cfg.save_best:
                trainer.save_checkpoint("best")

    def state_dict(self) -> dict[str, Any]:
        return {"smoothed": self.smoothed, "peak": self.peak, "best": self.best, "best_step": self.best_step,
                "phase": self.phase, "rising": self.rising, "stop_step": self.stop_step, "kept_step": self.kept_step,
                "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.smoothed, self.peak, self.best = state["smoothed"], state["peak"], state["best"]
        self.best_step, self.phase, self.rising = state["best_step"], int(state["phase"]), int(state["rising"])
        self.stop_step, self.kept_step = state["stop_step"], state["kept_step"]
        self.history = [(int(a), float(b), float(c)) for a, b, c in state["history"]]


def callbacks_from_config(diagnostics: DiagnosticsConfig, early_stopping: EarlyStoppingConfig) -> list[Callback]:
    """The callbacks a config asks for: a :class:`DiagnosticsCallback` when ``diagnostics.every > 0``
    and an :class:`EarlyStopping` fed by it when ``early_stopping.enabled`` (the diagnostic signals
    need ``diagnostics.every > 0``: a ValueError names the fields otherwise)."""
    out: list[Callback] = []
    diag = DiagnosticsCallback(diagnostics) if diagnostics.every > 0 else None
    if diag is not None:
        out.append(diag)
    if early_stopping.enabled:
        if early_stopping.metric in DIAGNOSTIC_SIGNALS and diag is None:
            raise ValueError(f"early_stopping.metric = {early_stopping.metric!r} needs diagnostics "
                             f"(diagnostics.every = {diagnostics.every}; set it > 0)")
        out.append(EarlyStopping(early_stopping, diag))
    return out

"""Loop callbacks: periodic gradient diagnostics, and early stopping at the turn to collapse.

:class:`DiagnosticsCallback` measures, every ``every`` steps, on a FIXED seeded batch (the same
latents z (B, k) and the same real points every time, so the numbers compare across steps), the
generator that samples come from (``network = "sampled"``: the EMA copy when the trainer keeps one,
which is what a checkpoint is judged by) or the one being trained (``"trained"``):

* ``steepness_*``: statistics of σ₁(z_i) = ‖J_G(z_i)‖₂ (:mod:`scoregan.diagnostics.steepness`);
* ``dgrad_real_*``, ``dgrad_fake_*``: statistics of ‖∇ₓ v‖ on the real points and on G(z);
* ``align_fake_*``: for mixture targets, cos(∇ₓ v, nearest mode − x) on G(z);
* with held-out points (``data.holdout`` > 0, a finite data set): the median critic values
  ``critic_real``, ``critic_heldout``, ``critic_fake``, the gradient statistics ``dgrad_heldout_*``
  and ``overfit`` = (m_train − m_held out) / (m_train − m_generated) of those medians
  (:func:`overfitting_stats`);
* ``combined_*``: statistics of the per-latent product c_i = σ₁(z_i) · ‖∇ₓ v(G(z_i))‖, a bound on
  the sensitivity of the discriminator's verdict to the latent: ‖∇_z v(G(z_i))‖ = ‖J_iᵀ ∇ₓ v‖ ≤ c_i;
* its own cost: ``time_diag_s``, the median training-step time since the last measurement
  ``time_step_s``, ``diag_cost_steps`` = their ratio, and ``diag_overhead`` = that ratio / every,
  the fraction of training time the diagnostics add.

Rows go to ``metrics.jsonl`` and wandb with ``kind="diagnostics"``. The measurement uses its own
random generators and evaluates the networks in eval mode without touching their parameters or
buffers, so a run with diagnostics trains exactly like one without.

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

Which signal (``recipes/three_phases.py`` measures each against the oracle's quality curve).
``combined`` operationalises the three-phase picture of GAN training: the discriminator sharpens
while it pushes the particles, flattens at them while they are refined into the modes, and the
product with the steepness turns upward once G stretches latent neighbourhoods across the gaps
between modes. In the recipe's NS-SGAN runs it does not hold: the best quality comes near the PEAK of
the product, and the collapse that follows comes with a falling product (particles pile into fewer
modes, where both factors stay small). What does track the turn is the discriminator's verdict on
real points it has and has not trained on: ``dgrad_ratio`` on a target sampled afresh (it crosses
1 at the quality optimum: threshold 0 on its log) and, less well, ``overfit`` on a finite set (it
rises until about the quality optimum and then plateaus, at 0.09–0.20 depending on the seed, so a
fixed level catches the optimum in some runs only). On a finite set, validation on the held-out
points (``fd_heldout`` with the trough rule) is what the recipe uses. All the statistics are
logged so other signals can be replayed.

Both callbacks keep their state in ``state_dict`` (saved in every checkpoint), so a resumed run
produces the same rows and the same decision as an uninterrupted one.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from scoregan._checks import check_choice
from scoregan.config import EVAL_STOPPING_SIGNALS, DiagnosticsConfig, EarlyStoppingConfig
from scoregan.diagnostics.gradients import discriminator_gradient, mode_alignment
from scoregan.diagnostics.steepness import batch_stats, eval_mode, spectral_norm_batch
from scoregan.trainers.callbacks import Callback

if TYPE_CHECKING:
    from scoregan.trainers.loop import Trainer

__all__ = ["DIAGNOSTIC_SIGNALS", "EVAL_SIGNALS", "DiagnosticsCallback", "DiagnosticsConfig", "EarlyStopping",
           "EarlyStoppingConfig", "callbacks_from_config", "compute_diagnostics"]

# early-stopping signal -> the diagnostics key whose log it watches
DIAGNOSTIC_SIGNALS = {"combined": "combined_median", "steepness": "steepness_median", "dgrad_fake": "dgrad_fake_median",
                      "dgrad_ratio": "dgrad_ratio", "overfit": "overfit"}
# read as they are (they may be <= 0); every other signal through its log
LINEAR_SIGNALS = ("overfit", "mmd2", "energy", "mmd2_heldout", "energy_heldout")
EVAL_SIGNALS = EVAL_STOPPING_SIGNALS
FITTING, REFINING, COLLAPSING = 0, 1, 2  # the phases as the rule sees them


def compute_diagnostics(generator: Callable[[torch.Tensor], torch.Tensor],
                        discriminator: Callable[[torch.Tensor], torch.Tensor] | None, z: torch.Tensor,
                        real: torch.Tensor | None = None, *, means: torch.Tensor | None = None,
                        heldout: torch.Tensor | None = None, iters: int = 64, tol: float = 1e-3,
                        method: str = "lanczos", rng: torch.Generator | int | None = None) -> dict[str, float]:
    """One measurement on latents z (B, k) and real points (B', d): the ``steepness_*``, and with a
    discriminator the ``dgrad_*``, ``combined_*`` (with mixture ``means`` the ``align_fake_*``; with
    ``real`` and held-out points (B'', d) the ``critic_*``, ``dgrad_heldout_*`` and ``overfit``)
    statistics described in the module docstring, plus ``steepness_iters``."""
    res = spectral_norm_batch(generator, z, iters=iters, tol=tol, method=method, rng=rng)
    row = {**batch_stats(res.sigma, "steepness_"), "steepness_iters": float(res.iters),
           "steepness_residual_max": float(res.residual.max())}
    if discriminator is None:
        return row
    with eval_mode(generator), torch.no_grad():  # eval mode: no spectral-norm or BatchNorm buffer updates
        fake = generator(z)
    g_fake = discriminator_gradient(discriminator, fake)
    n_fake = g_fake.norm(dim=1)
    row.update(batch_stats(n_fake, "dgrad_fake_"))
    if real is not None:
        row.update(batch_stats(discriminator_gradient(discriminator, real).norm(dim=1), "dgrad_real_"))
        row["dgrad_ratio"] = row["dgrad_real_median"] / max(row["dgrad_fake_median"], 1e-300)
    row.update(batch_stats(res.sigma * n_fake, "combined_"))
    if real is not None and heldout is not None:
        row.update(overfitting_stats(discriminator, real, heldout, fake))
    if means is not None:
        cos = mode_alignment(g_fake, fake, means)
        row.update(batch_stats(cos, "align_fake_"))
        row["align_fake_pos"] = float((cos > 0).to(torch.float64).mean())
    return row


def overfitting_stats(discriminator: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                      heldout: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """The discriminator on training points (B, d), held-out points (B', d) and generated ones:
    the median critic values ``critic_real``, ``critic_heldout``, ``critic_fake`` (m_·), the
    gradient-norm statistics ``dgrad_heldout_*``, and the overfitting ratio

        overfit = (m_train − m_held out) / (m_train − m_generated),

    0 while the critic treats unseen real points like the training points, 1 once it treats them
    like generated ones. It is invariant to shifts and positive scalings of v, so it reads the same
    for logits, f-GAN critics and IPM witnesses. Medians rather than means: a memorising
    discriminator puts a few training points far out, and the median ignores them."""
    with eval_mode(discriminator), torch.no_grad():  # eval mode: no spectral-norm buffer updates
        m_real, m_held, m_fake = (discriminator(x).reshape(-1).to(torch.float64).median().item()
                                  for x in (real, heldout, fake))
    gap = m_real - m_fake
    row = {"critic_real": m_real, "critic_heldout": m_held, "critic_fake": m_fake,
           "overfit": (m_real - m_held) / gap if gap != 0 else math.nan}
    row.update(batch_stats(discriminator_gradient(discriminator, heldout).norm(dim=1), "dgrad_heldout_"))
    return row


class DiagnosticsCallback(Callback):
    """Log :func:`compute_diagnostics` every ``cfg.every`` steps (see the module docstring).

    ``subscribe(fn)`` registers ``fn(trainer, row)``, called after each measurement (that is how
    :class:`EarlyStopping` reads the signals, whatever the callbacks' order). ``last`` is the last
    row (without the timing keys) and ``last_step`` its step.
    """

    def __init__(self, cfg: DiagnosticsConfig | None = None):
        self.cfg = cfg or DiagnosticsConfig()
        check_choice("diagnostics.network", self.cfg.network, ("sampled", "trained"))
        self._subscribers: list[Callable[[Trainer, dict[str, float]], None]] = []
        self._z: torch.Tensor | None = None
        self._real: torch.Tensor | None = None
        self._means: torch.Tensor | None = None
        self._heldout: torch.Tensor | None = None
        self._t_last: float | None = None
        self._step_times: list[float] = []
        self.last: dict[str, float] = {}
        self.last_step = 0

    def subscribe(self, fn: Callable[[Trainer, dict[str, float]], None]) -> None:
        self._subscribers.append(fn)

    def on_fit_start(self, trainer: Trainer) -> None:
        mods = trainer.rule.modules
        if "generator" not in mods:
            raise ValueError(f"DiagnosticsCallback needs a 'generator' network; trainer {trainer.cfg.trainer.name!r} "
                             f"has {sorted(mods)}")
        c = self.cfg
        k = trainer.cfg.model.latent_dim
        self._z = torch.randn(c.batch, k, generator=torch.Generator().manual_seed(c.seed), dtype=torch.float64)
        self._z = self._z.to(device=trainer.device, dtype=trainer.dtype)
        self._real = trainer.data.sample(c.batch, generator=torch.Generator().manual_seed(c.seed + 1))
        self._real = self._real.to(device=trainer.device, dtype=trainer.dtype)
        mix = trainer.data.mixture
        self._means = None if mix is None else mix.means.to(device=trainer.device, dtype=trainer.dtype)
        held = trainer.data.heldout  # up to `batch` of the held-out points, the same ones every time
        self._heldout = None if held is None else held[:c.batch].to(device=trainer.device, dtype=trainer.dtype)
        self._t_last, self._step_times = None, []

    def measure(self, trainer: Trainer) -> dict[str, float]:
        """One measurement of the trainer's current networks on the fixed batch."""
        if self._z is None:
            self.on_fit_start(trainer)
        mods = trainer.rule.modules
        c = self.cfg
        gen = mods.get("generator_ema", mods["generator"]) if c.network == "sampled" else mods["generator"]
        disc = mods.get("discriminator") if trainer.rule.discriminator_link else None
        return compute_diagnostics(gen, disc, self._z, self._real, means=self._means,
                                   heldout=self._heldout, iters=c.iters, tol=c.tol, method=c.method, rng=c.seed + 2)

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        now = time.perf_counter()
        if self._t_last is not None:
            self._step_times.append(now - self._t_last)
        if self.cfg.every > 0 and trainer.step % self.cfg.every == 0:
            t0 = time.perf_counter()
            row = self.measure(trainer)
            spent = time.perf_counter() - t0
            self.last, self.last_step = dict(row), trainer.step
            timing = {"time_diag_s": spent}
            if self._step_times:
                step_s = statistics.median(self._step_times)
                timing.update(time_step_s=step_s, diag_cost_steps=spent / step_s,
                              diag_overhead=spent / (step_s * self.cfg.every))
            self._step_times = []
            trainer.tracker.log(trainer.step, {**row, **timing}, kind="diagnostics")
            for fn in self._subscribers:
                fn(trainer, row)
        self._t_last = time.perf_counter()  # after our own work: step times exclude it

    def state_dict(self) -> dict[str, Any]:
        return {"last": dict(self.last), "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last = dict(state.get("last", {}))
        self.last_step = int(state.get("last_step", 0))


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

    def on_fit_start(self, trainer: Trainer) -> None:
        """A resumed run that this rule stopped stays stopped (``early_stopping.enabled=false`` or
        ``action=continue`` trains it on)."""
        if self.cfg.action == "stop" and self.stop_step is not None and trainer.step == self.stop_step:
            trainer.should_stop = True

    # -- signal sources ------------------------------------------------------------------------
    def _on_diagnostics(self, trainer: Trainer, row: dict[str, float]) -> None:
        self.observe(trainer, row[DIAGNOSTIC_SIGNALS[self.cfg.metric]])

    def on_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
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

    def observe(self, trainer: Trainer, value: float) -> None:
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

    def on_fit_end(self, trainer: Trainer) -> None:
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

"""The diagnostics callback: gradient diagnostics every ``diagnostics.every`` steps, logged.

:class:`DiagnosticsCallback` measures, every ``every`` steps, on a FIXED seeded batch (the same
latents z (B, k) and the same real points every time, so the numbers compare across steps), the
generator that samples come from (``network = "sampled"``: the EMA copy when the trainer keeps one,
which is what a checkpoint is judged by) or the one being trained (``"trained"``), the statistics of
:func:`scoregan.diagnostics.measure.compute_diagnostics`, plus its own cost: ``time_diag_s``, the
median training-step time since the last measurement ``time_step_s``, ``diag_cost_steps`` = their
ratio, and ``diag_overhead`` = that ratio / every, the fraction of training time the diagnostics add.

Rows go to ``metrics.jsonl`` and wandb with ``kind="diagnostics"``. The measurement uses its own
random generators and evaluates the networks in eval mode without touching their parameters or
buffers, so a run with diagnostics trains exactly like one without.

Its state (the last row) is saved in every checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from scoregan._checks import check_choice
from scoregan.diagnostics.measure import compute_diagnostics
from scoregan.experiment.callbacks import Callback, LoopState
from scoregan.schema import DiagnosticsConfig

__all__ = ["DiagnosticsCallback"]


class DiagnosticsCallback(Callback):
    """Log :func:`compute_diagnostics` every ``cfg.every`` steps (module docstring).

    ``subscribe(fn)`` registers ``fn(trainer, row)``, called after each measurement (that is how
    :class:`EarlyStopping` reads the signals, whatever the callbacks' order). ``last`` is the last
    row (without the timing keys) and ``last_step`` its step.
    """

    def __init__(self, cfg: DiagnosticsConfig | None = None):
        self.cfg = cfg or DiagnosticsConfig()
        check_choice("diagnostics.network", self.cfg.network, ("sampled", "trained"))
        self._subscribers: list[Callable[[LoopState, dict[str, float]], None]] = []
        self._z: torch.Tensor | None = None
        self._real: torch.Tensor | None = None
        self._means: torch.Tensor | None = None
        self._heldout: torch.Tensor | None = None
        self._t_last: float | None = None
        self._step_times: list[float] = []
        self.last: dict[str, float] = {}
        self.last_step = 0

    def subscribe(self, fn: Callable[[LoopState, dict[str, float]], None]) -> None:
        self._subscribers.append(fn)

    def on_fit_start(self, trainer: LoopState) -> None:
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

    def measure(self, trainer: LoopState) -> dict[str, float]:
        """One measurement of the trainer's current networks on the fixed batch."""
        if self._z is None:
            self.on_fit_start(trainer)
        mods = trainer.rule.modules
        c = self.cfg
        gen = mods.get("generator_ema", mods["generator"]) if c.network == "sampled" else mods["generator"]
        disc = mods.get("discriminator") if trainer.rule.discriminator_link else None
        return compute_diagnostics(gen, disc, self._z, self._real, means=self._means,
                                   heldout=self._heldout, iters=c.iters, tol=c.tol, method=c.method, rng=c.seed + 2)

    def on_step_end(self, trainer: LoopState, logs: dict[str, float]) -> None:
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

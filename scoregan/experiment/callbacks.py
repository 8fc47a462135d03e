"""Callbacks: hooks into the loop for diagnostics, early stopping and custom logging.

A callback sees the loop through :class:`LoopState` (what :class:`scoregan.experiment.loop.Trainer`
offers). Its ``state_dict`` goes into every checkpoint, so a resumed run continues its callbacks
exactly. Set ``trainer.should_stop = True`` to end training after the current step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from scoregan.data import Dataset
from scoregan.experiment.tracking import Tracker
from scoregan.schema import ExperimentConfig
from scoregan.trainers import UpdateRule


class LoopState(Protocol):
    """What a callback may read and set on the loop."""

    cfg: ExperimentConfig
    run_dir: Path
    rule: UpdateRule
    data: Dataset
    device: torch.device
    dtype: torch.dtype
    step: int
    should_stop: bool
    tracker: Tracker

    def save_checkpoint(self, name: str = "last") -> Path: ...


class Callback:
    """Base class; every hook is optional."""

    def on_fit_start(self, trainer: LoopState) -> None: ...

    def on_step_end(self, trainer: LoopState, logs: dict[str, float]) -> None: ...

    def on_eval(self, trainer: LoopState, metrics: dict[str, Any]) -> None: ...

    def on_fit_end(self, trainer: LoopState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StopAtStep(Callback):
    """Stop after ``step`` steps (used to simulate an interrupted run in tests and recipes)."""

    def __init__(self, step: int):
        self.stop_step = step

    def on_step_end(self, trainer: LoopState, logs: dict[str, float]) -> None:
        if trainer.step >= self.stop_step:
            trainer.should_stop = True

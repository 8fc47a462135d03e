"""Callbacks: hooks into the loop for diagnostics, early stopping and custom logging.

A callback's ``state_dict`` goes into every checkpoint, so a resumed run continues its callbacks
exactly. Set ``trainer.should_stop = True`` to end training after the current step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scoregan.trainers.loop import Trainer


class Callback:
    """Base class; every hook is optional."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None: ...

    def on_eval(self, trainer: Trainer, metrics: dict[str, Any]) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StopAtStep(Callback):
    """Stop after ``step`` steps (used to simulate an interrupted run in tests and recipes)."""

    def __init__(self, step: int):
        self.stop_step = step

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if trainer.step >= self.stop_step:
            trainer.should_stop = True

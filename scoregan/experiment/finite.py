"""Divergence guard of the loop: no non-finite state ever reaches a checkpoint.

Every step's logged losses are checked (a handful of floats); the networks, buffers and optimiser
states before each checkpoint (one pass over the parameters). What happens at the first non-finite
value is ``train.nonfinite``:

- ``stop`` (default): the run ends with :class:`TrainingDiverged`, one line naming the step and the
  quantity; nothing is saved, so ``checkpoints/last.pt`` keeps the last finite state;
- ``skip``: the step is undone (the rule's state from before it is restored, as mixed-precision loss
  scalers skip an overflowing step) and training goes on; it costs a copy of the networks and
  optimisers per step, and :data:`MAX_CONSECUTIVE_SKIPS` skipped steps in a row stop the run.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from scoregan.trainers import UpdateRule

#: consecutive skipped steps after which ``train.nonfinite = skip`` gives up
MAX_CONSECUTIVE_SKIPS = 100


class TrainingDiverged(ValueError):
    """A loss, weight or optimiser state became NaN or infinite; the message names the step and what."""


def nonfinite_log(logs: dict[str, float]) -> str | None:
    """The first logged quantity that is not a finite number, as ``"name = value"``, else None."""
    for k, v in logs.items():
        if isinstance(v, (int, float)) and not math.isfinite(v):
            return f"{k} = {v}"
    return None


def _tensors(obj: Any, prefix: str):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix and not prefix.endswith((" ", ".")) else f"{prefix}{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}")


def nonfinite_state(rule: UpdateRule) -> list[str]:
    """Names of the rule's floating tensors (networks, buffers, optimiser states, extra state) holding a
    NaN or an infinity."""
    state = rule.state_dict()
    named = [*_tensors(state["modules"], ""), *_tensors(state["optimizers"], "optimizer "),
             *_tensors(state.get("extra", {}), "extra.")]
    return [name for name, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def describe(names: list[str], limit: int = 3) -> str:
    """``a, b, c and 21 more`` for a list of tensor names."""
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")


class NonFiniteGuard:
    """Applies ``train.nonfinite`` around each step of ``rule`` (module docstring)."""

    def __init__(self, rule: UpdateRule, policy: str):
        if policy not in ("stop", "skip"):
            raise ValueError(f"train.nonfinite = {policy!r}: allowed values are 'stop', 'skip'")
        self.rule, self.policy = rule, policy
        self.skipped = self.consecutive = 0
        self._snapshot: dict[str, Any] | None = None

    def before_step(self) -> None:
        if self.policy == "skip":
            self._snapshot = copy.deepcopy(self.rule.state_dict())

    def after_step(self, step: int, logs: dict[str, float]) -> str | None:
        """None when the step is kept; else what was non-finite (the step was undone). Raises
        :class:`TrainingDiverged` under ``stop``, or after too many skips in a row."""
        bad = nonfinite_log(logs)
        if bad is None and self.policy == "skip":
            names = nonfinite_state(self.rule)
            bad = f"{describe(names)} (non-finite after the update)" if names else None
        if bad is None:
            self.consecutive = 0
            return None
        if self.policy == "stop":
            raise TrainingDiverged(f"training diverged at step {step}: {bad}")
        self.rule.load_state_dict(self._snapshot)
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive >= MAX_CONSECUTIVE_SKIPS:
            raise TrainingDiverged(f"training diverged: {self.consecutive} consecutive steps up to step {step} were "
                                   f"non-finite and skipped (last: {bad})")
        return bad

    def check_state(self, step: int) -> None:
        """Before a checkpoint: TrainingDiverged naming the non-finite tensors, if any."""
        names = nonfinite_state(self.rule)
        if names:
            raise TrainingDiverged(f"training diverged by step {step}: non-finite {describe(names)} "
                                   f"({len(names)} tensors)")

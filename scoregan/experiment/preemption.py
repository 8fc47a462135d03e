"""Pre-emption: SIGTERM and SIGUSR1 end a run with a checkpoint at the current step.

Clusters pre-empt jobs by sending SIGTERM (SLURM: then SIGKILL after a grace period; ``--signal=USR1@T``
sends SIGUSR1 T seconds before the end of the allotted time). While :meth:`Trainer.fit` runs, either
signal finishes the current step (its logging, evaluation and checkpoint if due), writes
``checkpoints/last.pt`` at that step and leaves with :class:`TrainingPreempted`; the command line exits
with :data:`PREEMPTED_EXIT_CODE`. The same command with ``--resume-if-exists`` (or ``--resume RUN``)
continues it exactly. Handlers are installed only in the main thread and restored afterwards.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

#: exit code of ``scoregan train`` after a pre-emption signal (EX_TEMPFAIL: try again later)
PREEMPTED_EXIT_CODE = 75
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


class TrainingPreempted(Exception):
    """SIGTERM / SIGUSR1 during training; the checkpoint of the current step was written."""


class PreemptionWatch:
    """Context manager recording the first pre-emption signal in :attr:`received` (its name)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

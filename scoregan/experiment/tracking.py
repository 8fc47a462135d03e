"""Experiment tracking: a local ``metrics.jsonl`` always, and wandb (offline by default).

wandb runs in the mode the config names: ``offline`` (files under the run directory, no network),
``online`` (falls back to offline with a warning when the service cannot be reached in time) or
``disabled``; a ``WANDB_MODE=disabled`` environment variable turns it off whatever the config says
(as wandb's own convention has it). Tracking never blocks a run and never crashes it: a wandb failure turns wandb off
and the JSONL log carries on.

``metrics.jsonl`` is the source of truth. A run killed and resumed continues the same wandb run (the id
in ``wandb_id.txt``), and each start replays the rows of ``metrics.jsonl`` kept so far into it: a killed
process loses what wandb had buffered (an offline ``.wandb`` file of a process killed early holds only
its header), so after any number of kills the newest wandb segment holds every logged step.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
import warnings
from pathlib import Path
from typing import Any

from scoregan.schema import ExperimentConfig, to_dict


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class Tracker:
    """Log scalars and figures for one run; ``resume_step`` truncates lines logged after it."""

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, *, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        if resume_step is not None:
            truncate_metrics(self.path, resume_step)
        self._file = open(self.path, "a", buffering=1)
        self.wandb = None
        if cfg.tracking.mode != "disabled" and os.environ.get("WANDB_MODE", "").lower() != "disabled":
            self.wandb = _start_wandb(cfg, self.run_dir)
            if self.wandb is not None:
                self._replay()

    def _replay(self) -> None:
        """Log every row already in metrics.jsonl to wandb (the rows a resumed run keeps)."""
        for row in read_metrics(self.run_dir):
            step, kind = row.pop("step"), row.pop("kind", "train")
            self._wandb_log(step, row, kind)

    def _wandb_log(self, step: int, values: dict[str, Any], kind: str) -> None:
        self._safe(lambda: self.wandb.log({"step": step, **{f"{kind}/{k}": v for k, v in values.items()}}))

    def log(self, step: int, values: dict[str, Any], kind: str = "train") -> None:
        row = {"step": step, "kind": kind, **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self._wandb_log(step, values, kind)

    def log_figure(self, step: int, name: str, path: str | Path) -> None:
        if self.wandb is not None:
            import wandb

            self._safe(lambda: self.wandb.log({"step": step, f"figures/{name}": wandb.Image(str(path))}))

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb is not None:
            self._safe(lambda: self.wandb.summary.update({k: _plain(v) for k, v in values.items()}))

    def close(self) -> None:
        self._file.close()
        if self.wandb is not None:
            self._safe(lambda: self.wandb.finish())
            self.wandb = None

    def _safe(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # tracking must never take a run down
            warnings.warn(f"wandb failed ({type(exc).__name__}: {exc}); continuing with metrics.jsonl only")
            self.wandb = None


class NullTracker:
    """The tracker of ranks other than 0 under torchrun: logs nothing (rank 0 logs for the run)."""

    wandb = None

    def log(self, step: int, values: dict[str, Any], kind: str = "train") -> None: ...

    def log_figure(self, step: int, name: str, path: str | Path) -> None: ...

    def summary(self, values: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after ``step`` (a run killed after its last checkpoint logged them)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill
    path.write_text("".join(k + "\n" for k in keep))


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` (optionally only one ``kind``: train, eval, ...)."""
    rows = []
    p = Path(run_dir) / "metrics.jsonl"
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if kind is None or row.get("kind") == kind:
                rows.append(row)
    return rows


#: seconds wandb.init may take before an online run falls back to offline
INIT_TIMEOUT_S = 30.0
#: seconds to wait for the wandb service of a killed process to release the run id ("run ID ... is in use")
IN_USE_WAIT_S = 30.0


def _start_wandb(cfg: ExperimentConfig, run_dir: Path):
    """A wandb run for ``run_dir`` (its id kept in wandb_id.txt), or None with a warning. ``online``
    falls back to ``offline`` when the service cannot be reached within :data:`INIT_TIMEOUT_S`."""
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb
    except Exception as exc:
        warnings.warn(f"wandb is not importable ({exc}); tracking with metrics.jsonl only")
        return None
    id_file = run_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
    id_file.write_text(run_id)
    kw = dict(project=cfg.tracking.project, entity=cfg.tracking.entity, name=run_dir.name, id=run_id,
              dir=str(run_dir), config=to_dict(cfg), tags=list(cfg.tracking.tags), resume="allow")
    modes = [cfg.tracking.mode] + (["offline"] if cfg.tracking.mode == "online" else [])
    deadline = time.monotonic() + IN_USE_WAIT_S
    while modes:
        mode = modes[0]
        try:
            settings = wandb.Settings(init_timeout=INIT_TIMEOUT_S, silent=True, console="off")
            run = wandb.init(mode=mode, settings=settings, **kw)
            run.define_metric("*", step_metric="step")
            return run
        except Exception as exc:
            try:  # a failed init leaves the run id claimed by wandb's service: shut it down before retrying
                wandb.teardown()
            except Exception:
                pass
            if "in use" in str(exc) and time.monotonic() < deadline:
                time.sleep(1.0)  # the service of a killed process still holds the id until it notices
                continue
            warnings.warn(f"wandb.init(mode={mode!r}) failed ({type(exc).__name__}: {exc})")
            modes.pop(0)
    return None

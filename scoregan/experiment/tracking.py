"""Experiment tracking: a local ``metrics.jsonl`` always, and wandb (offline by default).

wandb runs in the mode the config names: ``offline`` (files under the run directory, no network),
``online`` (falls back to offline with a warning when the service cannot be reached in time) or
``disabled``; a ``WANDB_MODE=disabled`` environment variable turns it off whatever the config says
(as wandb's own convention has it). Tracking never blocks a run and never crashes it: a wandb failure turns wandb off
and the JSONL log carries on.
"""

from __future__ import annotations

import json
import math
import os
import secrets
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
            self.wandb = _start_wandb(cfg, self.run_dir, resume=resume_step is not None)

    def log(self, step: int, values: dict[str, Any], kind: str = "train") -> None:
        row = {"step": step, "kind": kind, **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self._safe(lambda: self.wandb.log({"step": step, **{f"{kind}/{k}": v for k, v in values.items()}}))

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


def _start_wandb(cfg: ExperimentConfig, run_dir: Path, *, resume: bool):
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
    for mode in ([cfg.tracking.mode] + (["offline"] if cfg.tracking.mode == "online" else [])):
        try:
            run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=30, silent=True, console="off"), **kw)
            run.define_metric("*", step_metric="step")
            return run
        except Exception as exc:
            warnings.warn(f"wandb.init(mode={mode!r}) failed ({type(exc).__name__}: {exc})")
    return None

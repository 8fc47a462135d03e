"""The one training loop every trainer variant runs in.

Seeding, device and dtype, the progress bar, logging (metrics.jsonl + wandb), periodic evaluation
and figures, atomic checkpoints with every RNG state, exact resume and callbacks live here once;
a variant supplies only its :class:`~scoregan.trainers.UpdateRule` (docs/theory.md §9).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scoregan._dist import broadcast_module_, broadcast_object, mean_over_ranks
from scoregan.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from scoregan.data import make_dataset
from scoregan.experiment.callbacks import Callback
from scoregan.experiment.config import absolute_paths, dump_config
from scoregan.experiment.distributed import setup
from scoregan.experiment.early_stopping import callbacks_from_config
from scoregan.experiment.evaluation import evaluate_generator
from scoregan.experiment.finite import NonFiniteGuard, TrainingDiverged
from scoregan.experiment.preemption import PreemptionWatch, TrainingPreempted
from scoregan.experiment.runs import build_rule, load_rule_state
from scoregan.experiment.tracking import NullTracker, Tracker, read_metrics
from scoregan.plotting import plot_curves, plot_samples
from scoregan.schema import ExperimentConfig, to_dict
from scoregan.trainers import StepContext, UpdateRule

CHECKPOINT = Path("checkpoints") / "last.pt"
PREEMPT_KEY = "_preempt"  # rides along with the losses in the per-step all-reduce


@dataclass
class FitResult:
    run_dir: Path
    step: int
    metrics: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False


class Trainer:
    """Train ``cfg`` into ``run_dir``; ``resume=True`` continues from ``run_dir``'s last checkpoint.

    On the CPU a resumed run is bit-identical to an uninterrupted one: the checkpoint holds the
    networks, the optimisers, the rule's extra state, the callbacks' states and every RNG state,
    and the data, noise and evaluation draws each come from their own generator.
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
                 callbacks: list[Callback] | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        # the config's own callbacks (diagnostics, early stopping) first, then the caller's
        self.callbacks = [*callbacks_from_config(cfg.diagnostics, cfg.early_stopping), *(callbacks or [])]
        self.ranks, self.device = setup(cfg.train.device)
        if cfg.train.batch_size % self.ranks.world_size:
            raise ValueError(f"train.batch_size = {cfg.train.batch_size} (the global batch) does not split evenly over "
                             f"{self.ranks.world_size} processes")
        self.dtype = getattr(torch, cfg.train.dtype)
        ckpt = None
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ValueError(f"run directory {str(self.run_dir)!r} is a file; choose another --run-dir")
        if resume and (self.run_dir / CHECKPOINT).exists():
            ckpt = load_checkpoint(self.run_dir / CHECKPOINT)  # fail before building anything
        elif (self.run_dir / CHECKPOINT).exists():
            raise ValueError(f"run directory {str(self.run_dir)!r} already holds a run: continue it with "
                             f"--resume {self.run_dir}, or choose another --run-dir")
        if self.device.type == "cpu" and cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)  # many threads on tiny matmuls only spin
        seed = cfg.train.seed
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        self.data = make_dataset(cfg.data)
        self.rule: UpdateRule = build_rule(cfg, self.data, self.device)
        self.guard = NonFiniteGuard(self.rule, cfg.train.nonfinite)
        self.data_rng = torch.Generator().manual_seed(seed + 1)
        self.noise_rng = torch.Generator(device=self.device).manual_seed(seed + 2)
        self.step = 0
        self.checkpoint_step: int | None = None  # the step checkpoints/last.pt holds
        self.should_stop = False
        if ckpt is not None:
            self._restore(ckpt)
        for module in self.rule.modules.values():  # every rank starts from rank 0's networks
            broadcast_module_(module)
        if cfg.train.compile:
            if self.device.type != "cuda":
                raise ValueError(f"train.compile = true compiles the networks for CUDA; this run is on {self.device}: "
                                 "drop it (the CPU path runs eagerly)")
            for module in self.rule.modules.values():
                module.compile()  # in place: parameter names, hence checkpoints, are unchanged
        absolute_paths(cfg)  # the run directory is then usable from any working directory
        self.tracker: Tracker | NullTracker = NullTracker()
        if self.ranks.main:  # only now, with the networks built and the checkpoint loaded, is the directory
            # (re)written: a config that cannot run, or a resume whose overrides do not fit, leaves it as it was
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "figures").mkdir(exist_ok=True)
            if ckpt is None:  # a run stopped before its first checkpoint is started over
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
            dump_config(cfg, self.run_dir / "config.yaml")
            self.tracker = Tracker(cfg, self.run_dir, resume_step=self.step if ckpt is not None else None)

    # -- checkpoints ---------------------------------------------------------------------------
    def _generators(self) -> dict[str, torch.Generator]:
        return {"data": self.data_rng, "noise": self.noise_rng}

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "step": self.step,
            "trainer": self.cfg.trainer.name,
            "config": to_dict(self.cfg),
            "rule": self.rule.state_dict(),
            "rng": rng_state(self._generators()),
            "callbacks": {type(c).__name__ + f"_{i}": c.state_dict() for i, c in enumerate(self.callbacks)},
        }

    def save_checkpoint(self, name: str = "last") -> Path:
        """Write ``checkpoints/<name>.pt`` atomically; a non-finite state is never written
        (:class:`~scoregan.experiment.finite.TrainingDiverged` instead)."""
        self.guard.check_state(self.step)
        path = self.run_dir / "checkpoints" / f"{name}.pt"
        if self.ranks.main:  # every rank holds the same state; rank 0 writes it
            save_atomic(self.checkpoint_state(), path)
        if name == "last":
            self.checkpoint_step = self.step
        return path

    def _restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("trainer") != self.cfg.trainer.name:
            raise ValueError(f"--resume: the checkpoint was written by trainer {ckpt.get('trainer')!r}, "
                             f"but the config asks for {self.cfg.trainer.name!r}")
        load_rule_state(self.rule, _to_device(ckpt["rule"], self.device),
                        f"--resume {str(self.run_dir)!r}: the checkpoint does not fit the config with these overrides "
                        "(config.yaml left unchanged)")
        set_rng_state(ckpt["rng"], self._generators())
        for i, c in enumerate(self.callbacks):
            key = type(c).__name__ + f"_{i}"
            if key in ckpt.get("callbacks", {}):
                c.load_state_dict(ckpt["callbacks"][key])
        self.step = self.checkpoint_step = int(ckpt["step"])

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, *, figure: bool = True, tag: str | None = None) -> dict[str, Any]:
        """Metrics of ``eval.n_samples`` generated samples against fresh target samples; a figure
        (rank 0 measures, every rank's callbacks see its metrics)."""
        metrics: dict[str, Any] = {}
        if self.ranks.main:
            metrics = self._measure(figure, tag)
        metrics = broadcast_object(metrics)
        for c in self.callbacks:
            c.on_eval(self, metrics)
        return metrics

    def _measure(self, figure: bool, tag: str | None) -> dict[str, Any]:
        """Rank 0's part of :meth:`evaluate`: sample, compare, log, draw the figure over the velocity field."""
        self.rule.train(False)
        e = self.cfg.eval
        metrics, samples, reference = evaluate_generator(self.rule.sample, self.data, n=e.n_samples, seed=e.seed,
                                                         device=self.device, distances=e.distances,
                                                         image_metrics=e.image_metrics, inception=e.inception)
        self.rule.train(True)
        self.tracker.log(self.step, metrics, kind="eval")
        if figure and e.figures:
            tag = tag or f"step{self.step:07d}"
            mix = self.data.mixture
            title = f"{self.cfg.name} ({self.cfg.trainer.name}) step {self.step}"
            field = self.rule.velocity_field(torch.Generator().manual_seed(e.seed + 7)) if self.data.dim == 2 else None
            path = plot_samples(samples, reference, self.run_dir / "figures" / f"samples_{tag}.png", title=title,
                                means=None if mix is None else mix.means, image_shape=self.data.image_shape,
                                field=field)
            if tag.startswith("final"):  # samples_final_step<k>.png stays; samples_final.png is the latest final
                path.with_name("samples_final.png").write_bytes(path.read_bytes())
            self.tracker.log_figure(self.step, "samples", path)
        return metrics

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train to ``train.steps`` (or until a callback stops it); see the class docstring."""
        t = self.cfg.train
        for c in self.callbacks:
            c.on_fit_start(self)
        bar = tqdm(total=t.steps, initial=self.step, disable=not (t.progress and self.ranks.main), desc=self.cfg.name,
                   dynamic_ncols=True, leave=True)
        start = time.perf_counter()
        self.rule.train(True)
        try:
            with PreemptionWatch() as watch:
                metrics = self._steps(bar, watch)
        except TrainingDiverged as exc:
            self.tracker.log(self.step, {"error": str(exc)}, kind="diverged")
            self.tracker.close()
            raise TrainingDiverged(f"{exc}; stopped without saving it: {self._resume_hint()}") from None
        except TrainingPreempted:  # metrics.jsonl stays as an uninterrupted run's (the resume continues it)
            self.tracker.close()
            raise
        except KeyboardInterrupt:
            self.tracker.close()
            raise TrainingInterrupted(f"interrupted at step {self.step}; {self._resume_hint()}") from None
        except BaseException:
            self.tracker.close()
            raise
        finally:
            bar.close()
        wall = time.perf_counter() - start
        if self.cfg.eval.figures and self.ranks.main:
            path = plot_curves(read_metrics(self.run_dir), self.run_dir / "figures" / "curves.png", title=self.cfg.name,
                               trainer=self.cfg.trainer.name)
            self.tracker.log_figure(self.step, "curves", path)
        for c in self.callbacks:
            c.on_fit_end(self)
        self.tracker.summary({**metrics, "train_wall_s": wall})
        self.tracker.close()
        return FitResult(self.run_dir, self.step, metrics, stopped_early=self.step < t.steps)

    def _steps(self, bar: tqdm, watch: PreemptionWatch) -> dict[str, Any]:
        """The steps themselves: update, log, callbacks, evaluation and checkpoints when due; returns the
        last evaluation's metrics. A pre-emption signal ends it after a step, with its checkpoint."""
        t, metrics = self.cfg.train, {}
        while self.step < t.steps and not self.should_stop:
            self.step += 1
            ctx = StepContext(self.step, t.batch_size // self.ranks.world_size, self.data, self.data_rng,
                              self.noise_rng, self.device, self.dtype, self.ranks.rank, self.ranks.world_size)
            self.guard.before_step()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
                logs = self.rule.step(ctx)
            if self.ranks.world_size > 1:  # one all-reduce: the whole batch's losses, and any rank's signal
                logs = mean_over_ranks({**logs, PREEMPT_KEY: float(watch.received is not None)}, self.device)
                if logs.pop(PREEMPT_KEY) > 0:
                    watch.received = watch.received or "SIGTERM"  # every rank stops at the same step
            skipped = self.guard.after_step(self.step, logs)
            if skipped is not None:
                self.tracker.log(self.step, {"skipped": skipped, "skipped_total": self.guard.skipped}, kind="nonfinite")
            elif self.step % t.log_every == 0:
                self.tracker.log(self.step, logs)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
            bar.update(1)
            for c in self.callbacks:
                c.on_step_end(self, logs)
            last = self.step == t.steps or self.should_stop
            if last:  # the final state is safe on disk before the final evaluation and figures run
                self.save_checkpoint()
            if self.step % t.eval_every == 0 or last:
                metrics = self.evaluate(tag=f"final_step{self.step:07d}" if last else None)
            if self.step % t.checkpoint_every == 0 or last:
                self.save_checkpoint()
            if watch.received and not last:
                if self.checkpoint_step != self.step:
                    self.save_checkpoint()
                raise TrainingPreempted(f"{watch.received} at step {self.step}: {self._resume_hint()}")
        return metrics

    def _resume_hint(self) -> str:
        """What is on disk and how to continue, for the one-line messages of an interrupted run."""
        if self.checkpoint_step is not None:
            return (f"the checkpoint of step {self.checkpoint_step} is intact: continue with scoregan train "
                    f"--resume {self.run_dir}")
        return (f"no checkpoint was written yet: scoregan train --resume {self.run_dir} starts it over from its "
                "config.yaml")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Trainer.fit`; the message says whether and how the run can continue."""


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj

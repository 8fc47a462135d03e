"""The Python API behind the CLI: train, evaluate and sample runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoregan.data import ImageDataset
from scoregan.experiment.config import absolute_paths, from_dict, load_config
from scoregan.experiment.evaluation import evaluate_generator, nonfinite_rows
from scoregan.experiment.loop import FitResult, Trainer
from scoregan.experiment.runs import differences, load_run
from scoregan.plotting import plot_samples
from scoregan.schema import ConfigError, ExperimentConfig, apply_overrides, to_dict


def default_run_dir(cfg: ExperimentConfig) -> Path:
    return Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(config: str | Path | ExperimentConfig | None = None, *, overrides: list[str] | None = None,
          run_dir: str | Path | None = None, resume: str | Path | None = None, callbacks=None,
          resume_if_exists: bool = False) -> FitResult:
    """Train a config (a path, a loaded config, or None for the embedded defaults) into a run
    directory; ``resume=RUN_DIR`` continues that run from its last checkpoint with the run's own
    config.yaml plus ``overrides`` (e.g. ``train.steps=4000`` to train longer); ``config`` is then
    ignored. ``resume_if_exists`` (with ``run_dir``): start the run, or continue it when ``run_dir``
    already holds it, the one command a requeued job can run again and again; the config must be the
    run's (a ConfigError names the first field that differs)."""
    if resume is not None:
        resume = Path(resume)
        if not (resume / "config.yaml").is_file():
            raise ConfigError(f"--resume {str(resume)!r}: not a run directory (no config.yaml)")
        cfg = load_config(resume / "config.yaml", overrides)  # the run's own config, then --set overrides
        return Trainer(cfg, resume, resume=True, callbacks=callbacks).fit()
    if isinstance(config, ExperimentConfig):  # the overrides apply to a loaded config as to a file
        cfg = from_dict(apply_overrides(to_dict(config), overrides)) if overrides else config
    else:
        cfg = load_config(config, overrides)
    if resume_if_exists:
        if run_dir is None:
            raise ConfigError("--resume-if-exists needs --run-dir: the directory a requeued job finds its run in")
        if (Path(run_dir) / "config.yaml").is_file():
            _check_same_run(cfg, Path(run_dir))
            return Trainer(cfg, run_dir, resume=True, callbacks=callbacks).fit()
    return Trainer(cfg, Path(run_dir) if run_dir else default_run_dir(cfg), callbacks=callbacks).fit()


def _check_same_run(cfg: ExperimentConfig, run_dir: Path) -> None:
    """ConfigError unless ``cfg`` (its paths made absolute) is the config ``run_dir`` was started with."""
    absolute_paths(cfg)
    saved, now = to_dict(load_config(run_dir / "config.yaml")), to_dict(cfg)
    diffs = differences(now, saved, names=("the given config", "the run's config.yaml"))
    if diffs:
        raise ConfigError(f"--resume-if-exists: {str(run_dir)!r} holds a run of another config: {diffs[0]} "
                          "(give the run's own config, or another --run-dir)")


def evaluate(run_dir: str | Path, *, n: int | None = None, seed: int | None = None,
             checkpoint: str = "last") -> dict[str, Any]:
    """The metrics table of a trained run (``n`` samples; the config's eval settings by default) at
    ``checkpoints/<checkpoint>.pt`` ("last", or "best" as early stopping keeps it)."""
    run = load_run(run_dir, checkpoint=checkpoint)
    e = run.config.eval
    metrics, _, _ = evaluate_generator(run.rule.sample, run.data, n=n or e.n_samples,
                                       seed=e.seed if seed is None else seed, device=run.device,
                                       distances=e.distances, image_metrics=e.image_metrics, inception=e.inception)
    return {"step": run.step, **metrics}


def sample(run_dir: str | Path, *, n: int, out: str | Path | None = None, seed: int = 0,
           figure: bool = True, checkpoint: str = "last") -> torch.Tensor:
    """``n`` samples from a trained run (``checkpoints/<checkpoint>.pt``), (n, d); saved as ``out`` (.npz,
    array ``x``: (n, d), or (n, C, H, W) for an image data set) with a figure beside it."""
    if out is not None and Path(out).suffix != ".npz":
        raise ValueError(f"out must be an .npz path, got {str(out)!r}")
    run = load_run(run_dir, checkpoint=checkpoint)
    x = run.sample(n, seed=seed).cpu()
    bad = nonfinite_rows(x)
    if bad:
        raise ValueError(f"{bad} of {n} samples of {str(run_dir)!r} are NaN or infinite: nothing written")
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        images = isinstance(run.data, ImageDataset)
        np.savez(out, x=(x.reshape(n, *run.data.image_shape) if images else x).numpy())
        if figure:
            ref = run.data.sample(n, generator=torch.Generator().manual_seed(seed + 1))
            mix = run.data.mixture
            plot_samples(x, ref, out.with_suffix(".png"), title=f"{run.config.name}: {n} samples",
                         means=None if mix is None else mix.means, image_shape=run.data.image_shape)
    return x

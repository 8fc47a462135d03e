"""Run directories: building a config's update rule, loading its weights, reading a run back.

A run directory holds ``config.yaml`` and ``checkpoints/<name>.pt``. :func:`build_rule` is the one
place that turns a config into a built update rule (the registry's class, the source generator of
``trainer.source_run`` and the score model of ``trainer.score_run``); :func:`load_rule_state` puts a
checkpoint's weights into it, naming every mismatch in one line. The loop and :func:`load_run` both
use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from scoregan.checkpoint import CheckpointError, load_checkpoint, mismatch_detail
from scoregan.data import Dataset, make_dataset
from scoregan.experiment.config import load_config
from scoregan.experiment.finite import describe, nonfinite_state
from scoregan.schema import ExperimentConfig, to_dict
from scoregan.trainers import ScoreSource, SourceGenerator, UpdateRule, get_rule


@dataclass
class Run:
    """A trained run: ``rule`` holds the networks with the checkpoint's weights (in eval mode)."""

    run_dir: Path
    config: ExperimentConfig
    data: Dataset
    rule: UpdateRule
    step: int
    device: torch.device

    @property
    def generator(self) -> nn.Module:
        """G: z (N, latent_dim) ↦ x (N, d)."""
        return self.rule.modules["generator"]

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator :meth:`sample` draws with: G's moving average when the run keeps one
        (``trainer.ema`` > 0), else G."""
        return self.rule.modules.get("generator_ema", self.generator)

    @property
    def discriminator(self) -> nn.Module | None:
        """D: x (N, d) ↦ raw output (N,) (the logit for GAN losses), or None for rules without one."""
        return self.rule.modules.get("discriminator")

    @property
    def latent_dim(self) -> int:
        return self.config.model.latent_dim

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator(device=self.device).manual_seed(seed)
        return self.rule.sample(n, g)


def _source_generator(cfg: ExperimentConfig, device: torch.device) -> SourceGenerator | None:
    """The trained generator of ``trainer.source_run`` (what that run samples from), if the config names one."""
    source_run = getattr(cfg.trainer, "source_run", None)
    if source_run is None:
        return None
    with torch.random.fork_rng(devices=[]):  # building that run's networks leaves this run's seed stream alone
        run = load_run(source_run, device=device)
    return SourceGenerator(run.sampling_generator, run.latent_dim, run.data.dim)


def _score_source(cfg: ExperimentConfig, device: torch.device) -> ScoreSource | None:
    """The trained score model of ``trainer.score_run`` (the ``dg`` rule), if the config names one."""
    score_run = getattr(cfg.trainer, "score_run", None)
    if score_run is None:
        return None
    with torch.random.fork_rng(devices=[]):  # building that run's networks leaves this run's seed stream alone
        try:
            run = load_run(score_run, device=device)
        except CheckpointError as exc:
            raise CheckpointError(f"trainer.score_run: {exc} (train the score model there first: scoregan train "
                                  f"configs/images/<data set>-dsm.yaml --run-dir {score_run})") from None
    return ScoreSource(run.rule, str(run.run_dir))


def build_rule(cfg: ExperimentConfig, data: Dataset, device: torch.device) -> UpdateRule:
    """The update rule ``cfg.trainer.name`` with its networks and optimisers built (seed first)."""
    rule = get_rule(cfg.trainer.name)(cfg, data, device, getattr(torch, cfg.train.dtype),
                                      source=_source_generator(cfg, device))
    score = _score_source(cfg, device)
    if score is not None:
        rule.score_source = score
    rule.build()
    return rule


def load_rule_state(rule: UpdateRule, state: dict[str, Any], where: str) -> None:
    """Load a checkpoint's ``rule`` state; a mismatch is a CheckpointError: ``where`` + one line."""
    try:
        rule.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{where}: {mismatch_detail(exc)}") from None


#: the config sections that fix what a checkpoint's networks are and how they are read
_NETWORK_SECTIONS = ("data", "model", "trainer")


def differences(a: Any, b: Any, prefix: str = "", names: tuple[str, str] = ("config.yaml", "the checkpoint"),
                ) -> list[str]:
    """``key = x in <first>, y in <second>`` for every leaf where the nested mappings a and b differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k), names)]
    return [] if a == b else [f"{prefix} = {a!r} in {names[0]}, {b!r} in {names[1]}"]


def check_trainer_matches(cfg: ExperimentConfig, ckpt: dict[str, Any], run_dir: Path) -> None:
    """CheckpointError when config.yaml names another trainer than the one that wrote the checkpoint."""
    if ckpt.get("trainer") != cfg.trainer.name:
        raise CheckpointError(f"config.yaml of {str(run_dir)!r} names trainer {cfg.trainer.name!r} but its checkpoint "
                              f"was written by {ckpt.get('trainer')!r}: config.yaml was edited or truncated")


def check_config_matches(cfg: ExperimentConfig, ckpt: dict[str, Any], run_dir: Path) -> None:
    """CheckpointError when config.yaml and the checkpoint disagree on the data, the model or the trainer's
    settings (a truncated or edited config.yaml would otherwise be read with defaults or the wrong link);
    :func:`check_trainer_matches` first."""
    saved, now = ckpt.get("config") or {}, to_dict(cfg)
    diffs = [d for s in _NETWORK_SECTIONS if s in saved for d in differences(now[s], saved[s], s)]
    if diffs:
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise CheckpointError(f"config.yaml of {str(run_dir)!r} does not match its checkpoint: {diffs[0]}{more}")


def load_run(run_dir: str | Path, *, device: str | torch.device = "cpu", checkpoint: str = "last") -> Run:
    """Rebuild the networks of ``run_dir`` from ``config.yaml`` and ``checkpoints/<checkpoint>.pt``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a run directory: it has no config.yaml")
    cfg = load_config(cfg_path)
    ckpt = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt", map_location=device)
    check_trainer_matches(cfg, ckpt, run_dir)
    device = torch.device(device)
    data = make_dataset(cfg.data)
    rule = build_rule(cfg, data, device)
    load_rule_state(rule, ckpt["rule"], f"checkpoint in {str(run_dir)!r} does not match its config.yaml")
    check_config_matches(cfg, ckpt, run_dir)  # same shapes, but read with other settings?
    bad = nonfinite_state(rule)
    if bad:
        raise CheckpointError(f"checkpoint {checkpoint}.pt in {str(run_dir)!r} holds non-finite weights "
                              f"({describe(bad)}; {len(bad)} tensors): the run diverged; use an earlier checkpoint")
    rule.train(False)
    return Run(run_dir, cfg, data, rule, int(ckpt["step"]), device)

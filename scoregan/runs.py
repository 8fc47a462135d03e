"""Reading run directories back: the config, the target, the trained networks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scoregan.checkpoint import CheckpointError, load_checkpoint, mismatch_detail
from scoregan.config import ExperimentConfig, load_config
from scoregan.data import Dataset, make_dataset
from scoregan.trainers.base import UpdateRule


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


def load_run(run_dir: str | Path, *, device: str | torch.device = "cpu", checkpoint: str = "last") -> Run:
    """Rebuild the networks of ``run_dir`` from ``config.yaml`` and ``checkpoints/<checkpoint>.pt``."""
    from scoregan.trainers import get_rule

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a run directory: it has no config.yaml")
    cfg = load_config(cfg_path)
    ckpt = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt", map_location=device)
    device = torch.device(device)
    data = make_dataset(cfg.data)
    rule = get_rule(cfg.trainer.name)(cfg, data, device, getattr(torch, cfg.train.dtype))
    rule.build()
    try:
        rule.load_state_dict(ckpt["rule"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint in {str(run_dir)!r} does not match its config.yaml: "
                              f"{mismatch_detail(exc)}") from None
    rule.train(False)
    return Run(run_dir, cfg, data, rule, int(ckpt["step"]), device)

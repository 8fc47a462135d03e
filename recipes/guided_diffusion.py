"""Guided diffusion sampling on images: one score model sampled unguided, kernel-guided (closed-form
witness, nothing trained) and discriminator-guided (Discriminator Guidance), at several NFE budgets and
seeds, side by side (FD, KID ± s.e., precision, recall, NFE, wall time; one grid per mode). Trains the
score model (``configs/images/<dataset>-dsm.yaml``) and the discriminator (``<dataset>-dg.yaml``) into
``--runs`` first, or continues / reuses them (``resume_if_exists``). The logic is
:func:`scoregan.experiment.bench_diffusion.run_guided_diffusion`.

    PYTHONPATH=. python recipes/guided_diffusion.py --dataset digits                  # CPU: ~40 min
    PYTHONPATH=. python recipes/guided_diffusion.py --dataset cifar10 --set data.path=data/cifar10 --set train.device=cuda
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

from scoregan.api import train
from scoregan.experiment.bench_diffusion import add_arguments, run_guided_diffusion
from scoregan.experiment.configs import config_dir
from scoregan.experiment.recipe_cli import recipe_main


def run(a: argparse.Namespace) -> None:
    """Train or reuse the score and discriminator runs, then sample and tabulate."""
    images, runs = config_dir() / "images", Path(a.runs)
    score_run, dg_run = runs / f"{a.dataset}-dsm", runs / f"{a.dataset}-dg"
    train(images / f"{a.dataset}-dsm.yaml", overrides=a.overrides, run_dir=score_run, resume_if_exists=True)
    train(images / f"{a.dataset}-dg.yaml", run_dir=dg_run, resume_if_exists=True,
          overrides=[*a.overrides, *a.dg_overrides, f"trainer.score_run={score_run.resolve()}"])
    run_guided_diffusion(a.dataset, score_run=score_run, dg_run=dg_run,
                         out=Path(a.out or f"docs/results/guided_diffusion/{a.dataset}"), steps=a.steps, seeds=a.seeds,
                         n=a.n, bank=a.bank, kernel_scale=a.kernel_scale, discriminator_scale=a.discriminator_scale,
                         kernel_noise=a.kernel_noise)


def main(argv: list[str] | None = None) -> int:
    return recipe_main("guided_diffusion", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())

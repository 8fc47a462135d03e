"""Every trainer on the toy targets with the same budget, side by side (also ``scoregan bench toy``).

Trains each trainer's ``configs/toy/<target>-<trainer>.yaml`` (8 Gaussians' config re-pointed for the
targets without their own) on 8 Gaussians, 25 Gaussians, the swiss roll, the checkerboard and a 10-D
16-mode Gaussian mixture with the same steps and batch, and writes a table (W2 mean ± std over fresh
draws, sliced W2, MMD², modes covered, high-quality fraction, train wall time, network evaluations per
sample) as JSON and Markdown, and a figure grid of samples. With the ``bench`` extra installed
(``pip install 'scoregan[bench]'``) TorchCFM's I-CFM and OT-CFM run in the same process on the same
targets. The logic is :func:`scoregan.experiment.bench_toy.run_toy_benchmark`.

    PYTHONPATH=. python recipes/toy_benchmark.py                                   # everything (long on CPU)
    PYTHONPATH=. python recipes/toy_benchmark.py --targets 8gaussians --trainers kernel-flow score-gan cfm ot-cfm
    PYTHONPATH=. python recipes/toy_benchmark.py --targets 25gaussians --trainers nsgan score-gan kernel-flow \\
        --seeds 0 1 2 --json bench/results/toy_25gaussians.json
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

from scoregan.experiment.recipe_cli import recipe_main
from scoregan.experiment.bench_toy import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    return recipe_main("toy_benchmark", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())

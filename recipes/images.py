"""Every trainer on an image data set with the same budget, side by side: FD, KID ± s.e., precision and
recall in the features of the data set's cached classifier, train wall time and network evaluations per
sample, as Markdown + JSON, and one grid of samples per trainer. The logic is
:func:`scoregan.experiment.bench_images.run_image_benchmark`; runs resume where a killed recipe stopped.

    PYTHONPATH=. python recipes/images.py --dataset digits --trainers nsgan kernel-flow score-gan cfm --seeds 0
    PYTHONPATH=. python recipes/images.py --dataset digits                       # every trainer (CPU, ~1 h)
    PYTHONPATH=. python recipes/images.py --dataset mnist --set data.path=data/mnist --set train.device=cuda
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

from scoregan.experiment.recipe_cli import recipe_main
from scoregan.experiment.bench_images import add_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    return recipe_main("images", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    sys.exit(main())

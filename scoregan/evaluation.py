"""Evaluation of a sampler against its target with the toy metrics (``scoregan.metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from scoregan.config import EVAL_DISTANCES
from scoregan.data import Dataset


def evaluate_generator(sample: Callable[[int, torch.Generator], torch.Tensor], data: Dataset, *, n: int,
                       seed: int, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32, distances: Sequence[str] = EVAL_DISTANCES,
                       ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Draw ``n`` samples (from a generator seeded with ``seed``) and ``n`` fresh target samples
    (seed + 1), and compute :func:`scoregan.metrics.toy_report` (W2, sliced W2, MMD², energy,
    Fréchet distance, and mode statistics for mixture targets; ``distances`` picks among the first
    five). Returns (metrics, samples, reference) on the CPU.

    A data set with held-out points (``data.holdout``) adds the same distances against them,
    ``w2_heldout``, ``sliced_w2_heldout``, ``mmd2_heldout``, ``energy_heldout`` and ``fd_heldout``:
    the generalisation check, and the validation signals of early stopping (a generator that copies its training points is closer to them than to
    unseen points of the same distribution).

    The draws use their own generators, so evaluating never perturbs a training run's RNG.
    """
    from scoregan.metrics import toy_report

    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        samples = sample(n, g).detach().to("cpu", torch.float32)
    reference = data.sample(n, generator=torch.Generator().manual_seed(seed + 1))
    if not torch.isfinite(samples).all():
        bad = (~torch.isfinite(samples)).any(1).sum().item()
        return {"nonfinite_samples": bad}, torch.nan_to_num(samples), reference
    metrics = toy_report(samples, reference, mixture=data.mixture, distances=distances,
                         generator=torch.Generator().manual_seed(seed + 2))
    if data.heldout is not None:
        held = toy_report(samples, data.heldout, distances=distances, generator=torch.Generator().manual_seed(seed + 3))
        metrics.update({f"{k}_heldout": held[k] for k in distances})
    return metrics, samples, reference

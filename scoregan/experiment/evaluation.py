"""Evaluation of a sampler against its target with the toy metrics (:mod:`scoregan.metrics`).

One protocol, used by the loop, ``scoregan eval``, guided sampling from a run and the toy
benchmark: draw n samples from a seeded generator (:func:`draw_samples`), draw n fresh target
samples from another seed, and compare them (:func:`compare_to_target`: W2, sliced W2, MMD²,
energy, Fréchet distance, and mode statistics for mixture targets). The draws use their own
generators, so evaluating never perturbs a training run's random streams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from scoregan.data import Dataset, ImageDataset
from scoregan.metrics import image_report, toy_report
from scoregan.schema import EVAL_DISTANCES

Sampler = Callable[[int, torch.Generator], torch.Tensor]


def draw_samples(sample: Sampler, n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``sample(n, generator)`` with a generator on ``device`` seeded with ``seed``, as (n, d) float32 on
    the CPU, without gradients."""
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        return sample(n, g).detach().to("cpu", torch.float32)


def nonfinite_rows(x: torch.Tensor) -> int:
    """How many rows of x (n, d) hold a NaN or an infinity."""
    return int((~torch.isfinite(x)).any(1).sum())


def compare_to_target(samples: torch.Tensor, data: Dataset, *, reference_seed: int, metric_seed: int,
                      distances: Sequence[str] = EVAL_DISTANCES, heldout: bool = True, image_metrics: bool = False,
                      inception: str | None = None) -> tuple[dict[str, Any], torch.Tensor]:
    """Metrics of ``samples`` (n, d) against n fresh target samples drawn with ``reference_seed``
    (:func:`scoregan.metrics.toy_report`, its random projections and bandwidths from ``metric_seed``;
    ``distances`` picks among w2, sliced_w2, mmd2, energy, fd). With ``heldout`` and a data set that
    keeps held-out points (``data.holdout``), the same distances against them as ``<name>_heldout``
    (the generalisation check and the validation signals of early stopping). With ``image_metrics`` and a
    labelled image data set, :func:`scoregan.metrics.image_report` against the held-out images (else the
    reference draw) as ``img_fd``, ``img_kid``, ``img_kid_se``, ``img_precision``, ``img_recall`` (and
    ``img_fid`` with ``inception`` weights). Samples with non-finite rows give ``{"nonfinite_samples": k}``
    only. Returns (metrics, reference)."""
    reference = data.sample(samples.shape[0], generator=torch.Generator().manual_seed(reference_seed))
    bad = nonfinite_rows(samples)
    if bad:
        return {"nonfinite_samples": bad}, reference
    metrics = {}
    if distances or data.mixture is not None:
        metrics = toy_report(samples.to(reference.dtype), reference, mixture=data.mixture, distances=distances,
                             generator=torch.Generator().manual_seed(metric_seed))
    if image_metrics and isinstance(data, ImageDataset) and data.labels is not None:
        ref = data.heldout if data.heldout is not None else reference
        report = image_report(samples, ref, dataset=data, inception=inception, seed=metric_seed)
        metrics.update({f"img_{k}": v for k, v in report.items()})
    if heldout and data.heldout is not None and distances:
        held = toy_report(samples, data.heldout, distances=distances,
                          generator=torch.Generator().manual_seed(metric_seed + 1))
        metrics.update({f"{k}_heldout": held[k] for k in distances})
    return metrics, reference


def evaluate_generator(sample: Sampler, data: Dataset, *, n: int, seed: int, device: torch.device | str = "cpu",
                       distances: Sequence[str] = EVAL_DISTANCES, image_metrics: bool = False,
                       inception: str | None = None) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Draw ``n`` samples (seed ``seed``) and compare them with ``n`` fresh target samples (seed + 1;
    metrics seeded with seed + 2, held-out distances with seed + 3). Returns (metrics, samples,
    reference) on the CPU; the samples as drawn, non-finite rows included (figures drop and count them)."""
    samples = draw_samples(sample, n, seed, device)
    metrics, reference = compare_to_target(samples, data, reference_seed=seed + 1, metric_seed=seed + 2,
                                           distances=distances, image_metrics=image_metrics, inception=inception)
    return metrics, samples, reference

"""The standard metrics table of the toy experiments (printed by ``scoregan eval``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scoregan._checks import check_int
from scoregan.metrics._common import Samples, SeedLike, as_pair, make_generator, randperm
from scoregan.metrics.discrepancy import energy_distance, mmd2
from scoregan.metrics.features import frechet_distance
from scoregan.metrics.modes import mode_stats
from scoregan.metrics.transport import sliced_w2, w2

__all__ = ["toy_report", "TOY_DISTANCES", "TOY_REPORT_KEYS", "MODE_REPORT_KEYS"]

#: The distances a toy report can compute (``distances=`` picks some).
TOY_DISTANCES = ("w2", "sliced_w2", "mmd2", "energy", "fd")
#: Keys of a full toy report (``mmd2_bandwidth`` goes with ``mmd2``).
TOY_REPORT_KEYS = ("w2", "sliced_w2", "mmd2", "mmd2_bandwidth", "energy", "fd")
#: Keys added when a mixture target is given.
MODE_REPORT_KEYS = ("modes_covered", "n_modes", "hq_fraction")


def toy_report(samples: Samples, reference: Samples, *, mixture: Any = None, generator: SeedLike = None,
               n_projections: int = 256, w2_max_samples: int | None = None,
               distances: Sequence[str] | None = None) -> dict[str, float | int]:
    """Metrics of ``samples`` (N, d) against ``reference`` (M, d) as plain floats / ints.

    Keys: ``w2`` (exact OT), ``sliced_w2`` (``n_projections`` directions), ``mmd2`` (unbiased,
    Gaussian kernel) and ``mmd2_bandwidth`` (its median-heuristic bandwidth), ``energy`` (energy
    distance), ``fd`` (the Fréchet distance between Gaussian fits of the raw coordinates, the FID
    formula without a feature network); with a ``mixture`` (a ``GaussianMixture``) also ``modes_covered``, ``n_modes`` and
    ``hq_fraction`` of the samples (:func:`scoregan.metrics.mode_stats`, defaults).

    W2 needs equal sizes: it uses n = min(N, M, w2_max_samples) rows of each set, a random subset
    of a set that has more (all rows otherwise). Its cost grows like n² in memory and up to n³ in
    time (about a second at n = 2000), hence ``w2_max_samples`` for large evaluations. The other
    metrics use all rows. ``generator`` (a ``torch.Generator``, an int seed, or None for the fixed
    default seed) draws those subsets and then the sliced-W2 directions.

    ``distances`` (a subset of :data:`TOY_DISTANCES`, all by default) skips the others: exact W2
    dominates the cost of a report, and a periodic evaluation that only feeds a validation signal
    needs one distance. The random draws are the same whichever are computed, so each value
    equals the full report's.
    """
    x, y = as_pair("samples", samples, "reference", reference, min_rows=2)
    check_int("n_projections", n_projections, minimum=1)
    chosen = TOY_DISTANCES if distances is None else tuple(distances)
    unknown = [d for d in chosen if d not in TOY_DISTANCES]
    if unknown or isinstance(distances, str):
        raise ValueError(f"distances = {distances!r}: expected a list drawn from {', '.join(TOY_DISTANCES)}")
    n = min(x.shape[0], y.shape[0])
    if w2_max_samples is not None:
        n = min(n, check_int("w2_max_samples", w2_max_samples, minimum=1))
    g = make_generator(generator)
    x_w2 = x if x.shape[0] == n else x[randperm(x.shape[0], g, x.device)[:n]]
    y_w2 = y if y.shape[0] == n else y[randperm(y.shape[0], g, y.device)[:n]]
    report: dict[str, float | int] = {}
    if "w2" in chosen:
        report["w2"] = w2(x_w2, y_w2)
    if "sliced_w2" in chosen:
        report["sliced_w2"] = sliced_w2(x, y, n_projections=n_projections, generator=g)
    if "mmd2" in chosen:
        mmd = mmd2(x, y)
        report.update(mmd2=mmd.value, mmd2_bandwidth=mmd.bandwidth)
    if "energy" in chosen:
        report["energy"] = energy_distance(x, y)
    if "fd" in chosen:
        report["fd"] = frechet_distance(x, y)
    if mixture is not None:
        stats = mode_stats(x, mixture)
        report.update(modes_covered=stats.modes_covered, n_modes=stats.n_modes, hq_fraction=stats.hq_fraction)
    return report

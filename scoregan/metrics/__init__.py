"""Sample-quality metrics: optimal transport, kernel discrepancies, mode statistics, feature metrics.

Inputs are sample matrices (N, d), torch tensors (any device, any real dtype) or numpy arrays;
computation is float64 on the input's device; results are Python floats, NamedTuples or small
dataclasses. Metrics that need randomness take ``generator`` (a ``torch.Generator``, an int seed,
or None for a fixed default seed), so every value is reproducible.

* :func:`w2` (exact, assignment problem), :func:`optimal_matching`, :func:`sliced_w2`
* :func:`mmd2` (unbiased, Gaussian kernel, median heuristic), :func:`energy_distance`, :func:`kid`
* :func:`mode_stats` (modes covered, high-quality fraction) against a ``GaussianMixture``
* :func:`frechet_distance` (the FID formula), :func:`precision_recall` (k-NN manifolds)
* :func:`toy_report`: the standard table of the toy experiments
* :func:`image_report` (FD, KID, precision / recall in the features of a per-data-set
  :class:`FeatureClassifier`, from :func:`get_classifier`'s cache), :func:`image_features`,
  :func:`train_classifier`, :func:`save_image_grid`
"""

from scoregan.metrics.classifier import FeatureClassifier, get_classifier, train_classifier
from scoregan.metrics.discrepancy import KIDResult, MMD2Result, energy_distance, kid, median_heuristic, mmd2
from scoregan.metrics.features import PrecisionRecall, frechet_distance, gaussian_frechet_distance, precision_recall
from scoregan.metrics.images import IMAGE_REPORT_KEYS, image_features, image_report, save_image_grid
from scoregan.metrics.modes import ModeStats, hq_probability, hq_radius, mode_stats
from scoregan.metrics.report import MODE_REPORT_KEYS, TOY_DISTANCES, TOY_REPORT_KEYS, toy_report
from scoregan.metrics.transport import optimal_matching, sliced_w2, w2

__all__ = [
    "w2",
    "optimal_matching",
    "sliced_w2",
    "mmd2",
    "MMD2Result",
    "median_heuristic",
    "energy_distance",
    "kid",
    "KIDResult",
    "mode_stats",
    "ModeStats",
    "hq_radius",
    "hq_probability",
    "frechet_distance",
    "gaussian_frechet_distance",
    "precision_recall",
    "PrecisionRecall",
    "toy_report",
    "TOY_DISTANCES",
    "TOY_REPORT_KEYS",
    "MODE_REPORT_KEYS",
    "image_report",
    "image_features",
    "IMAGE_REPORT_KEYS",
    "get_classifier",
    "train_classifier",
    "FeatureClassifier",
    "save_image_grid",
]

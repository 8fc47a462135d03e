"""Score estimators: closed-form mixtures, the perturbed empirical score of a sample (and, with the
trainers, learned score networks)."""

from scoregan.scores.empirical import empirical_posterior_mean, empirical_score
from scoregan.scores.gaussian_mixture import GaussianMixture

__all__ = ["GaussianMixture", "empirical_posterior_mean", "empirical_score"]

"""Score estimators: closed-form mixtures, the perturbed empirical score of a sample (and, with the
trainers, learned score networks)."""

from scoregan.scores.empirical import (
    BankScore,
    empirical_log_prob,
    empirical_posterior_mean,
    empirical_score,
    scott_bandwidth,
)
from scoregan.scores.gaussian_mixture import GaussianMixture

__all__ = ["BankScore", "GaussianMixture", "empirical_log_prob", "empirical_posterior_mean", "empirical_score",
           "scott_bandwidth"]

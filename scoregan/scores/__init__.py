"""Score estimators: closed-form mixtures (and, with the trainers, learned score networks)."""

from scoregan.scores.gaussian_mixture import GaussianMixture

__all__ = ["GaussianMixture"]

"""Generator losses ℓ_G of GANs, and the flow weight each one induces.

Convention. A generator loss ℓ_G acts on the f-GAN discriminator output T(x) of generated samples:
the generator minimises E_z ℓ_G(T(G(z))), so each generated particle moves with velocity
v(x) = −∇ₓ ℓ_G(T(x)). At the optimal discriminator T*(x) = f'(r(x)), r = p_d/p_g, with u = log r:

    v = −ℓ_G'(T*) f''(r) r ∇ₓ log r = w(r) (s_d − s_g),   w(r) = −d/du ℓ_G(f'(e^u))      (1)

- ``fgan``: ℓ_G(T) = −f*(T). Then ℓ_G(T*) = f(r) − r f'(r) (the first variation of D_f) and
  w = r² f''(r) = w_f(r): the divergence's own weight.
- The classic losses are written through the log ratio that T encodes, u = divergence.log_ratio(T),
  and D = sigmoid(u) = r/(1 + r) (the optimal SGAN / LSGAN discriminator probability):

  ====================  ==============================  ===================
  ``saturating``        ℓ = log(1 − D) = −softplus(u)    w = r/(1 + r)
  ``non_saturating``    ℓ = −log D = softplus(−u)         w = 1/(1 + r)
  ``least_squares``     ℓ = ½ (D − 1)² = ½ sigmoid(−u)²  w = r/(1 + r)³
  ``hinge``             ℓ = −u                           w = 1
  ====================  ==============================  ===================

  Their weights do not depend on f (log_ratio undoes the activation), only on r.
  With f = sgan, ``saturating`` and ``fgan`` differ by the constant log 4 (same flow).

Each loss offers ``loss(t, divergence)`` (ℓ_G of a discriminator output T, per sample),
``loss.of_log_ratio(u, divergence)`` (ℓ_G(activation(u)) evaluated stably from the raw output
u ≈ log r; what trainers should call) and ``loss.weight(log_r, divergence)`` (w in closed form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scoregan._checks import check_choice
from scoregan.objectives.divergences import Divergence, as_divergence, softplus

__all__ = ["GENERATOR_LOSSES", "GeneratorLoss", "generator_loss", "as_generator_loss"]


class GeneratorLoss:
    """ℓ_G, elementwise. Subclasses written through u = log r define ``of_log_ratio`` and ``weight``.

    ``__call__(t, divergence)`` defaults to ``of_log_ratio(divergence.log_ratio(t), divergence)``.
    """

    name: str = ""

    def __call__(self, t: torch.Tensor, divergence: str | Divergence) -> torch.Tensor:
        """ℓ_G(T) per sample, T a discriminator output (any shape, in divergence.t_domain)."""
        div = as_divergence(divergence)
        return self.of_log_ratio(div.log_ratio(t), div)

    def of_log_ratio(self, u: torch.Tensor, divergence: str | Divergence) -> torch.Tensor:
        """ℓ_G(activation(u)) per sample, from the raw output u ≈ log r, stably."""
        raise NotImplementedError

    def weight(self, log_r: torch.Tensor, divergence: str | Divergence) -> torch.Tensor:
        """w(r) = −d/du ℓ_G(f'(e^u)) at u = log r, in closed form (same shape as log_r)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"generator_loss({self.name!r})"


class FGAN(GeneratorLoss):
    """ℓ_G(T) = −f*(T): the generator side of the f-GAN saddle point; w = r² f''(r)."""

    name = "fgan"

    def __call__(self, t, divergence):
        return -as_divergence(divergence).f_star(t)

    def of_log_ratio(self, u, divergence):
        return -as_divergence(divergence).f_star_of_activation(u)

    def weight(self, log_r, divergence):
        return as_divergence(divergence).weight(log_r)


class Saturating(GeneratorLoss):
    """ℓ_G = log(1 − D) = −softplus(u) (minimised); w = sigmoid(u) = r/(1 + r)."""

    name = "saturating"

    def of_log_ratio(self, u, divergence):
        return -softplus(u)

    def weight(self, log_r, divergence):
        return torch.sigmoid(log_r)


class NonSaturating(GeneratorLoss):
    """ℓ_G = −log D = softplus(−u); w = sigmoid(−u) = 1/(1 + r) → 1 as r → 0."""

    name = "non_saturating"

    def of_log_ratio(self, u, divergence):
        return softplus(-u)

    def weight(self, log_r, divergence):
        return torch.sigmoid(-log_r)


class LeastSquares(GeneratorLoss):
    """ℓ_G = ½ (D − 1)² = ½ sigmoid(−u)²; w = D (1 − D)² = r/(1 + r)³."""

    name = "least_squares"

    def of_log_ratio(self, u, divergence):
        return 0.5 * torch.exp(-2 * softplus(u))

    def weight(self, log_r, divergence):
        return torch.exp(F.logsigmoid(log_r) + 2 * F.logsigmoid(-log_r))


class Hinge(GeneratorLoss):
    """ℓ_G = −u (the raw output, as in hinge / geometric GANs); w = 1."""

    name = "hinge"

    def of_log_ratio(self, u, divergence):
        return -u

    def weight(self, log_r, divergence):
        return torch.ones_like(log_r)


_REGISTRY: dict[str, type[GeneratorLoss]] = {
    cls.name: cls for cls in (Saturating, NonSaturating, FGAN, LeastSquares, Hinge)
}

#: names accepted by :func:`generator_loss`
GENERATOR_LOSSES: tuple[str, ...] = tuple(_REGISTRY)


def generator_loss(name: str) -> GeneratorLoss:
    """The generator loss called ``name`` (one of GENERATOR_LOSSES)."""
    check_choice("name", name, GENERATOR_LOSSES)
    return _REGISTRY[name]()


def as_generator_loss(value: str | GeneratorLoss, name: str = "generator_loss") -> GeneratorLoss:
    """``value`` if it is a GeneratorLoss, else ``generator_loss(value)``; errors name ``name``."""
    if isinstance(value, GeneratorLoss):
        return value
    check_choice(name, value, GENERATOR_LOSSES)
    return generator_loss(value)

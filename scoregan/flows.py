"""The unified variational module: every GAN objective as a velocity field on generated particles.

docs/theory.md §1–§5, written once. p_d is the data density, p_g the generator's, r = p_d/p_g,
s_d = ∇ log p_d, s_g = ∇ log p_g. A generator x = G(z) trained by gradient descent moves each sample
along a velocity v(x); trainers regress G(z) onto ``flow_target(x, v, η)`` = x + η v.

f-GANs (divergence f, generator loss ℓ_G acting on T = f'(e^v), v ≈ log r the raw discriminator output):

    v(x) = −∇ₓ ℓ_G(T(x)) = w(r(x)) · (s_d(x) − s_g(x)),     w(r) = −d/du ℓ_G(f'(e^u)) |_{u = log r}

  (``fgan_velocity`` in score form, ``fgan_velocity_from_discriminator`` in discriminator form;
  w for each pair in scoregan.objectives.generator_losses and docs/theory.md.)

IPM-GANs (kernel k, optimal discriminator the witness D̂ = Σ_j a_j k(·, y_j) of the two samples):

    v(x) = ∇ₓ D̂(x) ≈ (κ * (p_d s_d))(x) − (κ * (p_g s_g))(x)

  (``ipm_velocity`` from the witness gradient, ``smoothed_score_difference`` from scores; the two
  agree in expectation for translation-invariant kernels, by integration by parts.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from scoregan._autograd import input_gradient
from scoregan._checks import check_matrix
from scoregan.objectives.divergences import Divergence, as_divergence
from scoregan.objectives.generator_losses import GeneratorLoss, as_generator_loss
from scoregan.objectives.kernels import Witness, kernel_witness

__all__ = [
    "weight",
    "weight_autograd",
    "fgan_velocity",
    "fgan_velocity_from_discriminator",
    "ipm_velocity",
    "feature_ipm_velocity",
    "ipm_witness",
    "smoothed_score_difference",
    "flow_target",
]


def _check_vector(name: str, t: Any, n: int | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.ndim != 1:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a 1-D tensor of shape (N,), got {shape}")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but {n} were expected")
    return t


# ---------------------------------------------------------------------------------------- f-GANs
def weight(divergence: str | Divergence, generator_loss: str | GeneratorLoss, log_r: torch.Tensor) -> torch.Tensor:
    """w(r) at u = log r (any shape, same shape out), in closed form for the (f, ℓ_G) pair."""
    div = as_divergence(divergence)
    loss = as_generator_loss(generator_loss)
    return loss.weight(log_r, div)


def weight_autograd(divergence: str | Divergence, generator_loss: str | GeneratorLoss, log_r: torch.Tensor,
                    *, through_activation: bool = False) -> torch.Tensor:
    """w(r) = −d/du ℓ_G(T*(e^u)) at u = log r by autograd, for any pair (checks the closed forms).

    By default ℓ_G(T*(e^u)) is ``generator_loss.of_log_ratio(u)``; with ``through_activation=True`` it
    is ``generator_loss(divergence.activation(u))``, the literal composition (which loses precision
    where T* crowds the edge of its domain, e.g. Pearson as r → 0, Neyman as r → ∞).
    """
    div = as_divergence(divergence)
    loss = as_generator_loss(generator_loss)
    with torch.enable_grad():
        u = log_r.detach().clone().requires_grad_(True)
        ell = loss(div.activation(u), div) if through_activation else loss.of_log_ratio(u, div)
        (grad,) = torch.autograd.grad(ell.sum(), u)
    return -grad


def fgan_velocity(score_d: torch.Tensor, score_g: torch.Tensor, log_r: torch.Tensor,
                  divergence: str | Divergence, generator_loss: str | GeneratorLoss) -> torch.Tensor:
    """Score form: v = w(r) (s_d − s_g) as (N, d), from s_d, s_g (N, d) and log r (N,)."""
    check_matrix("score_d", score_d)
    check_matrix("score_g", score_g, dim=score_d.shape[1])
    if score_g.shape[0] != score_d.shape[0]:
        raise ValueError(f"score_g has {score_g.shape[0]} rows but score_d has {score_d.shape[0]}")
    _check_vector("log_r", log_r, score_d.shape[0])
    return weight(divergence, generator_loss, log_r)[:, None] * (score_d - score_g)


def fgan_velocity_from_discriminator(x: torch.Tensor, discriminator: Callable[[torch.Tensor], torch.Tensor],
                                     divergence: str | Divergence, generator_loss: str | GeneratorLoss,
                                     *, create_graph: bool = False) -> torch.Tensor:
    """Discriminator form: v = −∇ₓ ℓ_G(T(x)) as (N, d), T = divergence.activation(discriminator(x)).

    ``discriminator`` maps x (N, d) to its raw output (N,) or (N, 1), which estimates log r. The loss is
    evaluated as ``generator_loss.of_log_ratio(raw)`` (= ℓ_G(T), stably). Gradients flow to x only;
    no graph is kept unless ``create_graph=True`` (then x's own graph is kept if it has one).
    """
    check_matrix("x", x)
    div = as_divergence(divergence)
    loss = as_generator_loss(generator_loss)

    def ell(xg: torch.Tensor) -> torch.Tensor:
        raw = discriminator(xg)
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        return loss.of_log_ratio(_check_vector("discriminator(x)", raw, x.shape[0]), div)

    return -input_gradient(ell, x, create_graph=create_graph)


# ---------------------------------------------------------------------------------------- IPM-GANs
def _witness(kernel: Any, data: torch.Tensor, generated: torch.Tensor, data_weights: torch.Tensor | None,
             generated_weights: torch.Tensor | None) -> Witness:
    """D̂ = Σ_j a_j k(·, y_j) of [data; generated], the kernel resolved on those two samples only."""
    return kernel_witness(kernel, data, generated, data_weights, generated_weights, names=("data", "generated"))


def ipm_witness(x: torch.Tensor, kernel: Any, data: torch.Tensor, generated: torch.Tensor,
                data_weights: torch.Tensor | None = None, generated_weights: torch.Tensor | None = None,
                **witness_kwargs: Any) -> torch.Tensor:
    """D̂(x) = Σ_j a_j k(x, y_j) as (N,), a = +1/M_d on data, −1/M_g on generated (or the given weights)."""
    check_matrix("x", x, dim=data.shape[1] if isinstance(data, torch.Tensor) and data.ndim == 2 else None)
    return _witness(kernel, data, generated, data_weights, generated_weights).value(x, **witness_kwargs)


def ipm_velocity(x: torch.Tensor, kernel: Any, data: torch.Tensor, generated: torch.Tensor,
                 data_weights: torch.Tensor | None = None, generated_weights: torch.Tensor | None = None,
                 **witness_kwargs: Any) -> torch.Tensor:
    """v(x) = ∇ₓ D̂(x) as (N, d) for x (N, d), data (M_d, d), generated (M_g, d).

    D̂ = Σ_j a_j k(·, y_j) over the concatenated centres; weights (non-negative, (M_d,) and (M_g,))
    default to uniform 1/M, the generated ones entering with a minus sign. A data-dependent kernel
    parameter (median bandwidth) is fixed from [data; generated], not from x. ``witness_kwargs`` go
    to ``kernel.witness_grad`` (e.g. chunking options).
    """
    check_matrix("x", x, dim=data.shape[1] if isinstance(data, torch.Tensor) and data.ndim == 2 else None)
    return _witness(kernel, data, generated, data_weights, generated_weights).grad(x, **witness_kwargs)


def feature_ipm_velocity(x: torch.Tensor, feature_map: Callable[[torch.Tensor], torch.Tensor], kernel: Any,
                         data: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """The IPM velocity of the kernel k_φ(x, y) = k(φ(x), φ(y)) of a fixed encoder φ: R^d → R^F, as (N, d).

    D̂_φ(x) = D̂(φ(x)) with D̂ the witness between φ(data) (M_d, F) and φ(generated) (M_g, F), so
    ∇ₓ D̂_φ(x) = J_φ(x)ᵀ ∇ᵤD̂(u)|_{u = φ(x)}: the closed-form feature-space gradient pulled back to pixels by
    one vector-Jacobian product through φ (x (N, d), data (M_d, d), generated (M_g, d)).
    """
    check_matrix("x", x)
    with torch.no_grad():
        witness = _witness(kernel, feature_map(data), feature_map(generated), None, None)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        u = feature_map(xg)
        (v,) = torch.autograd.grad(u, xg, grad_outputs=witness.grad(u.detach()))
    return v


def smoothed_score_difference(x: torch.Tensor, kernel_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                              data: torch.Tensor, score_d: torch.Tensor, generated: torch.Tensor,
                              score_g: torch.Tensor) -> torch.Tensor:
    """Score form of the IPM velocity, (κ*(p_d s_d))(x) − (κ*(p_g s_g))(x), as (N, d).

    Monte Carlo from samples with their scores: mean_j κ(x, y_j) s_d(y_j) − mean_j κ(x, y'_j) s_g(y'_j),
    with ``kernel_fn(x, y)`` the (N, M) kernel matrix; data, score_d (M_d, d); generated, score_g (M_g, d).
    """
    check_matrix("x", x)
    d = x.shape[1]
    for name, t in (("data", data), ("score_d", score_d), ("generated", generated), ("score_g", score_g)):
        check_matrix(name, t, dim=d)
    if score_d.shape[0] != data.shape[0] or score_g.shape[0] != generated.shape[0]:
        raise ValueError("score_d and score_g must have one row per row of data and generated respectively")
    return kernel_fn(x, data) @ score_d / data.shape[0] - kernel_fn(x, generated) @ score_g / generated.shape[0]


# ---------------------------------------------------------------------------------------- targets
def flow_target(x: torch.Tensor, velocity: torch.Tensor, step_size: float) -> torch.Tensor:
    """The regression target (x + η v).detach(), (N, d): generators are trained to output it."""
    return (x + step_size * velocity).detach()

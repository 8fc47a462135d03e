"""One Langevin update per function, all of one signature (docs/theory.md §10).

Each step maps particles x (N, d) at one noise level σ to new particles (N, d):

    unadjusted_step:  x ← x + η ∇log π(x) + √(2η) ξ,                         ξ ~ N(0, I_d) per row
    mala_step:        y = x + η ∇log π(x) + √(2η) ξ, accepted per row with probability
                      min(1, π(y) q(x|y) / (π(x) q(y|x))),   q(y|x) = N(y; x + η∇log π(x), 2η I)
    denoise_step:     x ← x + η ∇log π(x)   (η = σ_K²: Tweedie's E[x_clean | x], no noise)

with ∇log π(x) = s(x, σ) + λ∇ψ(x) (N, d) and log π(x) = log p(x, σ) + λψ(x) (N,) supplied by a
:class:`Target`. Signature::

    step(x, target, eta, *, generator=None, cache=None) -> StepOutput

``cache`` is the (log π, ∇log π) pair at x from the previous step (MALA reuses it while the target
is unchanged); the driver :func:`scoregan.sampling.langevin` picks the step by name from
:data:`STEPS`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Protocol

import torch

__all__ = ["STEPS", "EvalCounter", "ScoreModel", "StepFn", "StepOutput", "Target", "denoise_step", "mala_step",
           "unadjusted_step"]

Cache = tuple[torch.Tensor, torch.Tensor]


# ------------------------------------------------------------------------------------ scores
def _n_positional(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` takes (a large number for ``*args`` or if unknown)."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return 99
    n = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


class ScoreModel:
    """The accepted forms of ``score``, seen as ``score(x, σ)`` (N, d) and ``log_prob(x, σ)`` (N,).

    - an object with ``perturbed(σ)`` and ``score`` (a :class:`~scoregan.scores.GaussianMixture`):
      noise-conditional, s(x, σ) = ∇log (p * N(0, σ²I))(x) exactly, log_prob likewise;
    - a callable (x, σ) ↦ (N, d) (a noise-conditional network), with an optional
      ``log_prob(x, σ)`` on itself or on the object its bound method belongs to;
    - a callable x ↦ (N, d) (e.g. ``GaussianMixture(...).perturbed(0.1).score``): one fixed score
      used at every level, with ``log_prob(x)`` from the object its bound method belongs to.
    """

    def __init__(self, score: Callable, log_prob: Callable | None, noise_conditional: bool):
        self._score, self._log_prob, self.noise_conditional = score, log_prob, noise_conditional

    @property
    def has_log_prob(self) -> bool:
        return self._log_prob is not None

    @classmethod
    def wrap(cls, score: Any) -> ScoreModel | None:
        """``score`` in any accepted form (or None) as a :class:`ScoreModel` (or None)."""
        if score is None or isinstance(score, ScoreModel):
            return score
        if callable(getattr(score, "perturbed", None)) and callable(getattr(score, "score", None)):
            cache: dict[float, Any] = {}

            def at(sigma: float) -> Any:
                if sigma not in cache:
                    cache[sigma] = score.perturbed(sigma)
                return cache[sigma]

            lp = (lambda x, s: at(s).log_prob(x)) if callable(getattr(score, "log_prob", None)) else None
            return cls(lambda x, s: at(s).score(x), lp, True)
        if not callable(score):
            raise ValueError(f"score must be None, a callable (x, sigma) -> (N, d), a callable x -> (N, d) or a "
                             f"GaussianMixture, got {type(score).__name__}")
        conditional = _n_positional(score) >= 2
        lp = getattr(getattr(score, "__self__", score), "log_prob", None)
        lp = lp if callable(lp) else None
        if conditional:
            log_prob = lp if (lp is None or _n_positional(lp) >= 2) else (lambda x, s: lp(x))
            return cls(score, log_prob, True)
        return cls(lambda x, s: score(x), None if lp is None else (lambda x, s: lp(x)), False)

    def score(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self._score(x, sigma)

    def log_prob(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self._log_prob(x, sigma)


class StandardNormal:
    """The N(0, I) prior of latent space: score −z (N, d), log-density −‖z‖²/2 (N,) (+ const)."""

    def __call__(self, z: torch.Tensor, sigma: float) -> torch.Tensor:
        return -z

    def log_prob(self, z: torch.Tensor, sigma: float) -> torch.Tensor:
        return -0.5 * (z * z).sum(dim=1)


# ---------------------------------------------------------------------------------- the target
@dataclass
class EvalCounter:
    """Batch evaluations so far: ``drift`` of ∇log π (= NFE), ``log_density`` of log π."""

    drift: int = 0
    log_density: int = 0


@dataclass
class Target:
    """π at one step: ∇log π = s(x, σ) + λ∇ψ(x) (N, d) and log π = log p(x, σ) + λψ(x) (N,).

    ``model`` or ``field`` may be None (that term is 0); ``field`` is the guidance bound to the
    current particles (see :mod:`scoregan.sampling.guidance`).
    """

    model: ScoreModel | None
    field: Any | None
    sigma: float
    scale: float
    counter: EvalCounter = dataclass_field(default_factory=EvalCounter)

    def drift(self, x: torch.Tensor) -> torch.Tensor:
        self.counter.drift += 1
        out = torch.zeros_like(x)
        if self.model is not None:
            s = self.model.score(x, self.sigma)
            if s.shape != x.shape:
                raise ValueError(f"score returned shape {tuple(s.shape)} for particles of shape {tuple(x.shape)}")
            out = out + s
        if self.field is not None:
            g = self.field.grad(x)
            if g.shape != x.shape:
                raise ValueError(f"guidance.grad returned shape {tuple(g.shape)} for particles of shape {tuple(x.shape)}")
            out = out + self.scale * g
        return out

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        self.counter.log_density += 1
        out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if self.model is not None:
            out = out + self.model.log_prob(x, self.sigma)
        if self.field is not None:
            out = out + self.scale * self.field.value(x)
        return out


# ------------------------------------------------------------------------------------ noise
def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """ξ ~ N(0, I) of x's shape, dtype and device, drawn on the generator's device."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)


def _rand(n: int, like: torch.Tensor, generator: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    """u ~ U[0, 1) (n,) on ``like``'s device, drawn on the generator's device."""
    device = like.device if generator is None else generator.device
    return torch.rand(n, generator=generator, dtype=dtype, device=device).to(like.device)


# ------------------------------------------------------------------------------------- steps
@dataclass(frozen=True)
class StepOutput:
    """New particles x (N, d); ``accepted`` (N,) bool for MALA (else None); ``cache`` = (log π, ∇log π)
    at the new x when the step computed it (else None)."""

    x: torch.Tensor
    accepted: torch.Tensor | None = None
    cache: Cache | None = None


class StepFn(Protocol):
    def __call__(self, x: torch.Tensor, target: Target, eta: float, *, generator: torch.Generator | None = None,
                 cache: Cache | None = None) -> StepOutput: ...


def unadjusted_step(x: torch.Tensor, target: Target, eta: float, *, generator: torch.Generator | None = None,
                    cache: Cache | None = None) -> StepOutput:
    """x ← x + η ∇log π(x) + √(2η) ξ, x (N, d) (ULA; ``cache`` is ignored)."""
    return StepOutput(x + eta * target.drift(x) + math.sqrt(2 * eta) * _randn_like(x, generator))


def mala_step(x: torch.Tensor, target: Target, eta: float, *, generator: torch.Generator | None = None,
              cache: Cache | None = None) -> StepOutput:
    """Metropolis-adjusted Langevin: propose y = x + η∇log π(x) + √(2η)ξ, accept row i if
    log u_i < log π(y_i) − log π(x_i) + log q(x_i|y_i) − log q(y_i|x_i); x, y (N, d), u (N,).

    Needs ``target.log_density`` (the score's ``log_prob`` and the guidance's ``value``).
    """
    logp_x, g_x = cache if cache is not None else (target.log_density(x), target.drift(x))
    xi = _randn_like(x, generator)
    y = x + eta * g_x + math.sqrt(2 * eta) * xi
    logp_y, g_y = target.log_density(y), target.drift(y)
    # log q(y|x) = −‖ξ‖²/2 (up to the shared constant), log q(x|y) = −‖x − y − η∇log π(y)‖²/(4η);
    # the test in float32 at least (in float16 / bfloat16 a uniform is 0 often enough to bias it)
    acc = torch.promote_types(x.dtype, torch.float32)
    log_q_back = -((x - y - eta * g_y).to(acc) ** 2).sum(dim=1) / (4 * eta)
    log_q_fwd = -0.5 * (xi.to(acc) ** 2).sum(dim=1)
    log_alpha = logp_y.to(acc) - logp_x.to(acc) + log_q_back - log_q_fwd
    accept = torch.log(_rand(x.shape[0], x, generator, acc)) < log_alpha  # NaN log α → reject
    a = accept[:, None]
    return StepOutput(torch.where(a, y, x), accept, (torch.where(accept, logp_y, logp_x), torch.where(a, g_y, g_x)))


def denoise_step(x: torch.Tensor, target: Target, eta: float, *, generator: torch.Generator | None = None,
                 cache: Cache | None = None) -> StepOutput:
    """x ← x + η ∇log π(x), x (N, d), no noise; with η = σ² and a noise-conditional score this is
    Tweedie's E[x_clean | x] = x + σ² s(x, σ). ``generator`` and ``cache`` are ignored."""
    return StepOutput(x + eta * target.drift(x))


STEPS: dict[str, StepFn] = {"unadjusted": unadjusted_step, "mala": mala_step, "denoise": denoise_step}
"""The step functions by name, as the driver picks them."""

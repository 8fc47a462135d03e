"""Annealed Langevin dynamics driven by a score and a guidance field (docs/theory.md §10).

At noise level σ_k (k = 1..K, σ_1 ≥ … ≥ σ_K > 0), ``steps_per_level`` times, on particles x (N, d):

    x ← x + η_k (s(x, σ_k) + λ ∇ψ(x)) + √(2 η_k) ξ,       ξ ~ N(0, I_d) per particle,
    η_k = step_size · (σ_k / σ_K)²

with s(x, σ) (N, d) the score, ψ (N,) a guidance field (∇ψ (N, d)) and λ ≥ 0. η ∝ σ² is the
standard annealed schedule (Song & Ermon, 2019): every level's step is the same fraction of the
local variance σ_k², and ``step_size`` is the step at the last level. After the last level one
noise-free step removes the residual noise σ_K (Tweedie): x ← x + σ_K² (s(x, σ_K) + λ∇ψ(x)). It
is taken only for a noise-conditional score; with a fixed score or guidance alone there is no noise
level to remove, and x + c·drift would only shrink the spread (for a Gaussian of variance v, by
the factor (1 − c/v)²).

With ``mala=True`` each step is a Metropolis-adjusted proposal, accepted per particle with
probability min(1, π(y) q(x|y) / (π(x) q(y|x))) for log π = log p(x, σ_k) + λψ(x) and
q(y|x) = N(y; x + η∇log π(x), 2ηI), so π is left exactly invariant at every level.

The updates are the step functions of :mod:`scoregan.sampling.steps` (``unadjusted_step``,
``mala_step``, ``denoise_step``); :func:`langevin` only plans the steps, calls them, and reports
each one to an optional ``callback(LangevinStep)``. :func:`latent_langevin` runs the same driver on
z with the N(0, I) prior as the score and ψ∘G as the guidance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from scoregan._checks import check_int, check_matrix, check_positive
from scoregan.sampling.guidance import DiscriminatorGuidance, LatentGuidance
from scoregan.sampling.steps import STEPS, EvalCounter, ScoreModel, StandardNormal, Target

__all__ = ["LangevinInfo", "LangevinStep", "langevin", "latent_langevin", "step_sizes"]


@dataclass(frozen=True)
class LangevinStep:
    """One step, as ``callback`` sees it (after the step).

    Attributes:
        index: 0..T−1 over the whole run, T = K·steps_per_level (+1 with the denoising step).
        level: k − 1, the 0-based noise level (K − 1 for the denoising step).
        sigma: σ_k; step_size: η_k (σ_K² for the denoising step).
        kind: the step's name in :data:`scoregan.sampling.steps.STEPS`.
        x: (N, d) the particles after the step (the driver never modifies it in place).
        accepted: (N,) bool, the MALA acceptances of this step (None for other steps).
    """

    index: int
    level: int
    sigma: float
    step_size: float
    kind: str
    x: torch.Tensor
    accepted: torch.Tensor | None = None

    @property
    def acceptance_rate(self) -> float | None:
        """The fraction of particles whose proposal was accepted at this step (None without MALA)."""
        return None if self.accepted is None else float(self.accepted.float().mean())


@dataclass(frozen=True)
class LangevinInfo:
    """What a run did (returned with ``return_info=True``).

    Attributes:
        sigmas: the noise levels σ_1..σ_K.
        step_sizes: η_1..η_K.
        steps_per_level: Langevin steps per level.
        denoise_step: σ_K², the coefficient of the final (Tweedie) step, or None when not taken.
        acceptance_rate: accepted MALA proposals / (K·steps_per_level·N) (None without ``mala``).
        acceptance_per_level: the same per noise level (None without ``mala``).
        nfe: batch evaluations of the drift s + λ∇ψ (each one score and/or guidance gradient call).
        n_log_density_evals: batch evaluations of log π (MALA only).
        trajectory: (T + 1, N, d) states, the first being x0, with ``return_trajectory`` (else None).
    """

    sigmas: tuple[float, ...]
    step_sizes: tuple[float, ...]
    steps_per_level: int
    denoise_step: float | None
    acceptance_rate: float | None
    acceptance_per_level: tuple[float, ...] | None
    nfe: int = 0
    n_log_density_evals: int = 0
    trajectory: torch.Tensor | None = None


# ------------------------------------------------------------------------------- validation
def _check_sigmas(sigmas: Any) -> list[float]:
    """σ_1 ≥ … ≥ σ_K > 0 as Python floats, from a number, a sequence or a 0-/1-D tensor."""
    if isinstance(sigmas, bool):
        raise ValueError(f"sigmas must be a positive number or a descending 1-D sequence, got {sigmas!r}")
    try:
        t = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"sigmas must be a positive number or a descending 1-D sequence, got {sigmas!r}") from exc
    if t.ndim > 1:
        raise ValueError(f"sigmas must be a number or a 1-D sequence, got shape {tuple(t.shape)}")
    t = t.reshape(-1)
    if t.numel() == 0:
        raise ValueError("sigmas must not be empty")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"sigmas must be finite, got {t.tolist()}")
    check_positive("sigmas", t)
    up = torch.nonzero(t[1:] > t[:-1]).flatten()
    if up.numel():
        i = int(up[0])
        raise ValueError(f"sigmas must be descending (σ_1 ≥ … ≥ σ_K), but sigmas[{i + 1}] = {t[i + 1].item():g} > "
                         f"sigmas[{i}] = {t[i].item():g}")
    return [float(s) for s in t]


def _check_step_size(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    check_positive(name, value)
    return float(value)


def step_sizes(sigmas: Sequence[float] | float, step_size: float) -> list[float]:
    """η_k = step_size · (σ_k / σ_K)² for k = 1..K (the annealed schedule of :func:`langevin`)."""
    sig = _check_sigmas(sigmas)
    step_size = _check_step_size("step_size", step_size)
    return [float(step_size) * (s / sig[-1]) ** 2 for s in sig]


def check_guidance_scale(value: Any) -> float:
    """λ as a float: a finite number ≥ 0 (ValueError naming ``guidance_scale`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"guidance_scale must be a finite number >= 0, got {value!r}")
    check_positive("guidance_scale", value, allow_zero=True)
    return float(value)


def _check_guidance(guidance: Any, x0: torch.Tensor, name: str) -> None:
    if guidance is None:
        return
    if not callable(getattr(guidance, "grad", None)):
        raise ValueError(f"guidance must provide grad(x) -> (N, d) (e.g. KernelGuidance, DiscriminatorGuidance), "
                         f"got {type(guidance).__name__}")
    check = getattr(guidance, "check", None)
    if callable(check):
        check(x0, name)
        return
    dim = getattr(guidance, "dim", None)
    if isinstance(dim, int) and dim != x0.shape[1]:
        raise ValueError(f"guidance lives in dimension {dim} but {name} has dimension {x0.shape[1]}")


def _check_particles(name: str, x0: Any) -> None:
    check_matrix(name, x0)
    if not x0.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x0.dtype}")
    if x0.shape[0] < 1 or x0.shape[1] < 1:
        raise ValueError(f"{name} must have at least one particle and one dimension, got shape {tuple(x0.shape)}")


def _check_target(model: ScoreModel | None, guidance: Any, lam: float, mala: bool, generator: Any,
                  callback: Any) -> None:
    """The score/guidance/MALA/generator/callback combination is usable (ValueError naming it)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be None or a callable taking a LangevinStep, got {type(callback).__name__}")
    if model is None and guidance is None:
        raise ValueError("score and guidance are both None: give a score, a guidance field, or both")
    if mala and model is not None and not model.has_log_prob:
        raise ValueError("mala=True needs the score's log-density: give a score with log_prob "
                         "(e.g. a GaussianMixture, or a callable whose object has log_prob)")
    has_value = callable(getattr(guidance, "value", None)) and getattr(guidance, "has_value", True)
    if mala and guidance is not None and lam != 0.0 and not has_value:
        raise ValueError("mala=True needs the guidance's value(x) (its log-density term)")


# ------------------------------------------------------------------------------------ driver
def _plan(sig: list[float], eta: list[float], steps_per_level: int, mala: bool,
          denoise: bool) -> Iterator[tuple[int, float, float, str]]:
    """(level, σ, η, step name) of every step of the run, in order."""
    for k, (sigma, h) in enumerate(zip(sig, eta)):
        for _ in range(steps_per_level):
            yield k, sigma, h, "mala" if mala else "unadjusted"
    if denoise:
        yield len(sig) - 1, sig[-1], sig[-1] ** 2, "denoise"


class _Recorder:
    """The driver's own callback: trajectory, MALA acceptance counts per level, progress bar, user callback."""

    def __init__(self, x0: torch.Tensor, levels: int, trajectory: bool, total: int | None,
                 callback: Callable[[LangevinStep], Any] | None):
        self.trajectory = [x0] if trajectory else None
        self.accepted = [torch.zeros((), dtype=torch.int64, device=x0.device) for _ in range(levels)]
        self.callback, self.bar = callback, None
        if total is not None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="langevin", leave=False)

    def __call__(self, step: LangevinStep) -> None:
        if step.accepted is not None:
            self.accepted[step.level] = self.accepted[step.level] + step.accepted.sum()
        if self.trajectory is not None:
            self.trajectory.append(step.x)
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            self.callback(step)


def _drive(x0: torch.Tensor, model: ScoreModel | None, guidance: Any, lam: float, sig: list[float],
           steps_per_level: int, step_size: float, *, mala: bool, denoise: bool, generator: torch.Generator | None,
           callback: Callable[[LangevinStep], Any] | None, trajectory: bool, progress: bool,
           ) -> tuple[torch.Tensor, LangevinInfo]:
    """Run the planned steps from x0 (N, d); return the samples (N, d) and the :class:`LangevinInfo`."""
    eta = [step_size * (s / sig[-1]) ** 2 for s in sig]
    field = guidance if lam != 0.0 else None
    bind = getattr(field, "bind", None)
    plan, x = list(_plan(sig, eta, steps_per_level, mala, denoise)), x0.detach().clone()
    rec = _Recorder(x, len(sig), trajectory, len(plan) if progress else None, callback)
    counter, cache, level = EvalCounter(), None, -1
    with torch.no_grad():
        for i, (k, sigma, h, kind) in enumerate(plan):
            bound = bind(x) if callable(bind) else field
            if k != level or (bound is not None and bound is not field):
                cache = None  # a new level, or a field that moved with the particles
            level = k
            out = STEPS[kind](x, Target(model, bound, sigma, lam, counter), h, generator=generator, cache=cache)
            x, cache = out.x, out.cache
            rec(LangevinStep(i, k, sigma, h, kind, x, out.accepted))
    if rec.bar is not None:
        rec.bar.close()
    per_level = rate = None
    if mala:
        counts, per = torch.stack(rec.accepted).cpu().tolist(), x.shape[0] * steps_per_level
        per_level, rate = tuple(c / per for c in counts), sum(counts) / (per * len(sig))
    return x, LangevinInfo(tuple(sig), tuple(eta), steps_per_level, sig[-1] ** 2 if denoise else None, rate,
                           per_level, counter.drift, counter.log_density,
                           None if rec.trajectory is None else torch.stack(rec.trajectory))


def langevin(
    x0: torch.Tensor,
    *,
    score: Any = None,
    guidance: Any = None,
    sigmas: Sequence[float] | float | torch.Tensor,
    steps_per_level: int,
    step_size: float,
    guidance_scale: float = 1.0,
    mala: bool = False,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    denoise: bool = True,
    return_info: bool = False,
    progress: bool = False,
    callback: Callable[[LangevinStep], Any] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, LangevinInfo]:
    """Annealed (optionally Metropolis-adjusted) Langevin sampling with a score and a guidance field.

        x ← x + η_k (s(x, σ_k) + λ ∇ψ(x)) + √(2η_k) ξ,   η_k = step_size·(σ_k/σ_K)²,   x (N, d)

    Args:
        x0: (N, d) initial particles; their dtype and device are those of the whole run.
        score: None; a :class:`~scoregan.scores.GaussianMixture` (exact score of p * N(0, σ²I)); a
            callable (x (N, d), sigma: float) ↦ (N, d), optionally with ``log_prob(x, sigma)``; or
            a callable x ↦ (N, d) used at every level (its ``log_prob`` is found on its object).
        guidance: None or a field with ``grad(x) -> (N, d)`` (= ∇ψ), optionally ``value(x) -> (N,)``
            and ``bind(particles)`` (see :mod:`scoregan.sampling.guidance`).
        sigmas: σ_1 ≥ … ≥ σ_K > 0 (a number for a single level).
        steps_per_level: Langevin steps at each level (≥ 1); step_size: η_K (> 0); guidance_scale: λ ≥ 0.
        mala: Metropolis-adjust every step (needs ``score.log_prob`` and ``guidance.value``).
        generator: a ``torch.Generator`` for the noise (and the MALA uniforms); same seed, same run.
        return_trajectory: record the (T + 1, N, d) states in ``info.trajectory``; implies
            ``return_info`` (the return is ``(samples, info)``, no longer ``(samples, trajectory)``).
        denoise: finish with the Tweedie step x + σ_K²·drift (only for a noise-conditional score).
        return_info: also return a :class:`LangevinInfo`.
        progress: show a tqdm progress bar.
        callback: called after every step with a :class:`LangevinStep` (index, level, σ, η, x, ...).

    Returns:
        samples (N, d), or ``(samples, info)`` with ``return_info`` or ``return_trajectory``.

    The loop runs under ``torch.no_grad()``; guidance fields that need autograd enable it themselves
    (as :class:`DiscriminatorGuidance` does), and so must an autograd-based ``score``.
    """
    _check_particles("x0", x0)
    sig = _check_sigmas(sigmas)
    check_int("steps_per_level", steps_per_level, minimum=1)
    step_size = _check_step_size("step_size", step_size)
    lam = check_guidance_scale(guidance_scale)
    model = ScoreModel.wrap(score)
    _check_guidance(guidance, x0, "x0")
    _check_target(model, guidance, lam, mala, generator, callback)
    x, info = _drive(x0, model, guidance, lam, sig, steps_per_level, step_size, mala=mala,
                     denoise=bool(denoise) and model is not None and model.noise_conditional, generator=generator,
                     callback=callback, trajectory=return_trajectory, progress=progress)
    return (x, info) if return_info or return_trajectory else x


def latent_langevin(
    z0: torch.Tensor,
    generator_net: Callable[[torch.Tensor], torch.Tensor],
    discriminator: DiscriminatorGuidance | Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int,
    step_size: float,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    mala: bool = False,
    return_info: bool = False,
    progress: bool = False,
    callback: Callable[[LangevinStep], Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, LangevinInfo]:
    """Langevin dynamics in a generator's latent space, guided by the discriminator (DDLS / DGflow style).

        z ← z + η ∇_z(log N(z; 0, I) + λ·ψ(G(z))) + √(2η) ξ = z + η(−z + λ J_Gᵀ ∇ψ(G(z))) + √(2η) ξ

    with ψ = log r read off the discriminator (its logit for scoregan's GAN discriminators). For
    λ = 1 and an exact ψ the stationary law of z is p(z)·r(G(z)), whose push-forward by G is the
    data distribution (when G's support covers it). The same driver as :func:`langevin`, one level.

    Args:
        z0: (N, latent_dim) initial latents (usually N(0, I) draws); dtype and device of the run.
        generator_net: the generator G, z (N, latent_dim) ↦ x (N, d).
        discriminator: an ``nn.Module``/callable x ↦ raw logit (N,) or (N, 1), or a
            :class:`DiscriminatorGuidance` (for another link).
        steps: number of Langevin steps (≥ 1); step_size: η (> 0); guidance_scale: λ (≥ 0).
        generator: a ``torch.Generator`` for the noise (``generator_net`` is the network).
        return_trajectory: record the (steps + 1, N, latent_dim) latents in ``info.trajectory``
            (implies ``return_info``); mala, progress, callback: as in :func:`langevin`.

    Returns:
        ``(z, x)`` with z (N, latent_dim) and x = G(z) (N, d) in z's dtype and device, or
        ``(z, x, info)`` with ``return_info`` or ``return_trajectory``.
    """
    _check_particles("z0", z0)
    check_int("steps", steps, minimum=1)
    step_size = _check_step_size("step_size", step_size)
    lam = check_guidance_scale(guidance_scale)
    field = LatentGuidance(generator_net, discriminator)
    field.check(z0, "z0")
    prior = ScoreModel.wrap(StandardNormal())
    _check_target(prior, field, lam, mala, generator, callback)
    z, info = _drive(z0, prior, field, lam, [1.0], steps, step_size, mala=mala, denoise=False, generator=generator,
                     callback=callback, trajectory=return_trajectory, progress=progress)
    return (z, field.decode(z), info) if return_info or return_trajectory else (z, field.decode(z))

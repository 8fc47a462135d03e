"""Annealed Langevin dynamics driven by a score and a guidance field (DESIGN.md §4).

At noise level σ_k (k = 1..K, σ_1 ≥ … ≥ σ_K > 0), ``steps_per_level`` times:

    x ← x + η_k (s(x, σ_k) + λ ∇ψ(x)) + √(2 η_k) ξ,       ξ ~ N(0, I),   x (N, d)
    η_k = step_size · (σ_k / σ_K)²

η ∝ σ² is the standard annealed schedule (Song & Ermon, 2019): at every level the step is the same
fraction of the local variance σ_k², so the chain mixes equally well at every level; ``step_size``
is the step at the last (smallest) level. After the last level one noise-free step removes the
residual noise σ_K: Tweedie's formula x ← x + σ_K² (s(x, σ_K) + λ∇ψ(x)) = E[x_clean | x]. It is
taken only when the score is noise-conditional (it knows σ); with a fixed score or guidance alone
there is no noise level to remove, and a deterministic step x + c·drift would only shrink the
spread of the samples (for a Gaussian of variance v, by the factor (1 − c/v)²), so none is taken.

With ``mala=True`` each step is a Metropolis-adjusted Langevin (MALA) proposal y, accepted per
particle with probability min(1, π(y) q(x|y) / (π(x) q(y|x))), for the target
log π = log p(x, σ_k) + λ ψ(x) and q(y|x) = N(y; x + η ∇log π(x), 2η I). The chain then leaves π
exactly invariant at every level; it needs the log-densities: ``score.log_prob`` and
``guidance.value``.

The latent-space variant (:func:`latent_langevin`) runs the same loop on z with the standard
normal prior as the score and the discriminator's log-ratio pulled back through the generator as
the guidance.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from scoregan._checks import check_int, check_matrix, check_positive
from scoregan.sampling.guidance import DiscriminatorGuidance, LatentGuidance

__all__ = ["LangevinInfo", "langevin", "latent_langevin", "step_sizes"]


@dataclass(frozen=True)
class LangevinInfo:
    """What a run did (returned with ``return_info=True``).

    Attributes:
        sigmas: the noise levels σ_1..σ_K.
        step_sizes: η_1..η_K.
        steps_per_level: Langevin steps per level.
        denoise_step: σ_K², the coefficient of the final (Tweedie) step x + σ_K²·drift, or None
            when no such step was taken.
        acceptance_rate: fraction of accepted MALA proposals over all steps and particles
            (None without ``mala``).
        acceptance_per_level: the same per noise level (None without ``mala``).
    """

    sigmas: tuple[float, ...]
    step_sizes: tuple[float, ...]
    steps_per_level: int
    denoise_step: float | None
    acceptance_rate: float | None
    acceptance_per_level: tuple[float, ...] | None


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


class _ScoreModel:
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
    def wrap(cls, score: Any) -> _ScoreModel | None:
        if score is None or isinstance(score, _ScoreModel):
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
        owner = getattr(score, "__self__", score)
        lp = getattr(owner, "log_prob", None)
        if not callable(lp):
            lp = None
        if conditional:
            log_prob = lp if (lp is None or _n_positional(lp) >= 2) else (lambda x, s: lp(x))
            return cls(score, log_prob, True)
        return cls(lambda x, s: score(x), None if lp is None else (lambda x, s: lp(x)), False)

    def score(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self._score(x, sigma)

    def log_prob(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self._log_prob(x, sigma)


class _StandardNormal:
    """The N(0, I) prior of latent space: score −z, log-density −‖z‖²/2 (+ const)."""

    def __call__(self, z: torch.Tensor, sigma: float) -> torch.Tensor:
        return -z

    def log_prob(self, z: torch.Tensor, sigma: float) -> torch.Tensor:
        return -0.5 * (z * z).sum(dim=1)


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


def step_sizes(sigmas: Sequence[float] | float, step_size: float) -> list[float]:
    """η_k = step_size · (σ_k / σ_K)² for k = 1..K (the annealed schedule of :func:`langevin`)."""
    sig = _check_sigmas(sigmas)
    step_size = _check_step_size("step_size", step_size)
    return [float(step_size) * (s / sig[-1]) ** 2 for s in sig]


def _check_step_size(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    check_positive(name, value)
    return float(value)


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


def _has_value(guidance: Any) -> bool:
    return callable(getattr(guidance, "value", None)) and getattr(guidance, "has_value", True)


# ------------------------------------------------------------------------------------ noise
def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)


def _rand(n: int, like: torch.Tensor, generator: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    device = like.device if generator is None else generator.device
    return torch.rand(n, generator=generator, dtype=dtype, device=device).to(like.device)


# ---------------------------------------------------------------------------------- the target
class _Target:
    """The drift s(x, σ) + λ∇ψ(x) (N, d) and, for MALA, log π = log p(x, σ) + λψ(x) (N,) at one step."""

    def __init__(self, model: _ScoreModel | None, field: Any | None, sigma: float, scale: float):
        self.model, self.field, self.sigma, self.scale = model, field, sigma, scale

    def drift(self, x: torch.Tensor) -> torch.Tensor:
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
        out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if self.model is not None:
            out = out + self.model.log_prob(x, self.sigma)
        if self.field is not None:
            out = out + self.scale * self.field.value(x)
        return out


def _mala_step(x: torch.Tensor, h: float, target: _Target, state: tuple[torch.Tensor, torch.Tensor] | None,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One MALA step; returns (new x, accepted mask (N,), (log π, ∇log π) at the new x)."""
    logp_x, g_x = state if state is not None else (target.log_density(x), target.drift(x))
    xi = _randn_like(x, generator)
    y = x + h * g_x + math.sqrt(2 * h) * xi
    logp_y, g_y = target.log_density(y), target.drift(y)
    # log q(y|x) = −‖ξ‖²/2 (up to the shared constant), log q(x|y) = −‖x − y − h∇log π(y)‖²/(4h);
    # the test in float32 at least (in float16 / bfloat16 a uniform is 0 often enough to bias it)
    acc = torch.promote_types(x.dtype, torch.float32)
    log_q_back = -((x - y - h * g_y).to(acc) ** 2).sum(dim=1) / (4 * h)
    log_q_fwd = -0.5 * (xi.to(acc) ** 2).sum(dim=1)
    log_alpha = logp_y.to(acc) - logp_x.to(acc) + log_q_back - log_q_fwd
    u = _rand(x.shape[0], x, generator, acc)
    accept = torch.log(u) < log_alpha  # NaN log_alpha → reject
    a = accept[:, None]
    return (torch.where(a, y, x), accept,
            (torch.where(accept, logp_y, logp_x), torch.where(a, g_y, g_x)))


# ----------------------------------------------------------------------------------- sampler
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
):
    """Annealed (optionally Metropolis-adjusted) Langevin sampling with a score and a guidance field.

        x ← x + η_k (s(x, σ_k) + λ ∇ψ(x)) + √(2η_k) ξ,   η_k = step_size·(σ_k/σ_K)²,   x (N, d)

    Args:
        x0: (N, d) initial particles; their dtype and device are those of the whole run.
        score: None; a :class:`~scoregan.scores.GaussianMixture` (exact noise-conditional score of
            p * N(0, σ²I)); a callable (x (N, d), sigma: float) ↦ (N, d) such as a noise-conditional
            network, optionally with ``log_prob(x, sigma)``; or a callable x ↦ (N, d) used at every
            level (e.g. ``gm.perturbed(0.1).score``, whose ``log_prob`` is found on its object).
        guidance: None or a field with ``grad(x) -> (N, d)`` (= ∇ψ), optionally ``value(x) -> (N,)``
            and ``bind(particles)`` (see :mod:`scoregan.sampling.guidance`).
        sigmas: σ_1 ≥ … ≥ σ_K > 0 (a number for a single level).
        steps_per_level: Langevin steps at each level (≥ 1).
        step_size: η at the last level (> 0).
        guidance_scale: λ ≥ 0.
        mala: Metropolis-adjust every step (needs ``score.log_prob`` and ``guidance.value``).
        generator: a ``torch.Generator`` for the noise (and the MALA uniforms); same seed, same run.
        return_trajectory: also return the (T, N, d) states, T = 1 + K·steps_per_level (+1 for
            the denoising step), the first being x0.
        denoise: finish with Tweedie's denoising step x + σ_K²·drift (only for a noise-conditional
            score; see the module docstring).
        return_info: also return a :class:`LangevinInfo` (step sizes, MALA acceptance rate).
        progress: show a tqdm progress bar.

    Returns:
        samples (N, d); ``(samples, trajectory)``, ``(samples, info)`` or
        ``(samples, trajectory, info)`` when asked.

    The loop runs under ``torch.no_grad()``; guidance fields that need autograd enable it themselves
    (as :class:`DiscriminatorGuidance` does), and so must an autograd-based ``score``.
    """
    # ---- validation, before any work
    check_matrix("x0", x0)
    if not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating tensor, got dtype {x0.dtype}")
    if x0.shape[0] < 1 or x0.shape[1] < 1:
        raise ValueError(f"x0 must have at least one particle and one dimension, got shape {tuple(x0.shape)}")
    sig = _check_sigmas(sigmas)
    check_int("steps_per_level", steps_per_level, minimum=1)
    step_size = _check_step_size("step_size", step_size)
    check_guidance_scale(guidance_scale)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    model = _ScoreModel.wrap(score)
    _check_guidance(guidance, x0, "x0")
    if model is None and guidance is None:
        raise ValueError("score and guidance are both None: give a score, a guidance field, or both")
    lam = float(guidance_scale)
    use_guidance = guidance is not None and lam != 0.0
    if mala:
        if model is not None and not model.has_log_prob:
            raise ValueError("mala=True needs the score's log-density: give a score with log_prob "
                             "(e.g. a GaussianMixture, or a callable whose object has log_prob)")
        if use_guidance and not _has_value(guidance):
            raise ValueError("mala=True needs the guidance's value(x) (its log-density term)")

    eta = [float(step_size) * (s / sig[-1]) ** 2 for s in sig]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(sig) * steps_per_level, desc="langevin", leave=False)

    x = x0.detach().clone()
    traj = [x.clone()] if return_trajectory else None
    accepted: list[torch.Tensor] = []

    def field_at(particles: torch.Tensor) -> Any | None:
        if not use_guidance:
            return None
        bind = getattr(guidance, "bind", None)
        return bind(particles) if callable(bind) else guidance

    with torch.no_grad():
        for sigma, h in zip(sig, eta):
            state = None  # cached (log π, ∇log π) at x, valid while the field does not change
            n_acc = torch.zeros((), dtype=torch.int64, device=x.device)
            for _ in range(steps_per_level):
                field = field_at(x)
                target = _Target(model, field, sigma, lam)
                if mala:
                    if field is not None and field is not guidance:
                        state = None  # the field moved with the particles
                    x, acc, state = _mala_step(x, h, target, state, generator)
                    n_acc = n_acc + acc.sum()
                else:
                    x = x + h * target.drift(x) + math.sqrt(2 * h) * _randn_like(x, generator)
                if traj is not None:
                    traj.append(x.clone())
                if bar is not None:
                    bar.update(1)
            if mala:
                accepted.append(n_acc)
        denoise_step = None
        if denoise and model is not None and model.noise_conditional:
            denoise_step = sig[-1] ** 2
            x = x + denoise_step * _Target(model, field_at(x), sig[-1], lam).drift(x)
            if traj is not None:
                traj.append(x.clone())
    if bar is not None:
        bar.close()

    out: list[Any] = [x]
    if traj is not None:
        out.append(torch.stack(traj))
    if return_info:
        per_level = None
        rate = None
        if mala:
            counts = torch.stack(accepted).cpu().tolist()
            per = x.shape[0] * steps_per_level
            per_level = tuple(c / per for c in counts)
            rate = sum(counts) / (per * len(sig))
        out.append(LangevinInfo(tuple(sig), tuple(eta), steps_per_level, denoise_step, rate, per_level))
    return out[0] if len(out) == 1 else tuple(out)


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
):
    """Langevin dynamics in a generator's latent space, guided by the discriminator (DDLS / DGflow style).

        z ← z + η ∇_z(log N(z; 0, I) + λ·ψ(G(z))) + √(2η) ξ = z + η(−z + λ J_Gᵀ ∇ψ(G(z))) + √(2η) ξ

    with ψ = log r read off the discriminator (its logit for scoregan's GAN discriminators). For
    λ = 1 and an exact ψ the stationary law of z is p(z)·r(G(z)), whose push-forward by G is the
    data distribution (when G's support covers it).

    Args:
        z0: (N, latent_dim) initial latents (usually N(0, I) draws); dtype and device of the run.
        generator_net: the generator G, z (N, latent_dim) ↦ x (N, d).
        discriminator: an ``nn.Module``/callable x ↦ raw logit (N,) or (N, 1), or a
            :class:`DiscriminatorGuidance` (for another link).
        steps: number of Langevin steps (≥ 1); step_size: η (> 0); guidance_scale: λ (≥ 0).
        generator: a ``torch.Generator`` for the noise (``generator_net`` is the network).
        return_trajectory: also return the (steps + 1, N, latent_dim) latent trajectory.
        mala: Metropolis-adjust every step; return_info: also return a :class:`LangevinInfo`.

    Returns:
        ``(z, x)`` with z (N, latent_dim) and x = G(z) (N, d) in z's dtype and device; then the
        trajectory and the info when asked, in that order.
    """
    check_matrix("z0", z0)
    if not z0.is_floating_point():
        raise ValueError(f"z0 must be a floating tensor, got dtype {z0.dtype}")
    check_int("steps", steps, minimum=1)
    _check_step_size("step_size", step_size)
    field = LatentGuidance(generator_net, discriminator)
    field.check(z0, "z0")
    res = langevin(z0, score=_ScoreModel.wrap(_StandardNormal()), guidance=field, sigmas=1.0, steps_per_level=steps,
                   step_size=step_size, guidance_scale=guidance_scale, mala=mala, generator=generator,
                   return_trajectory=return_trajectory, denoise=False, return_info=return_info, progress=progress)
    res = res if isinstance(res, tuple) else (res,)
    z = res[0]
    return (z, field.decode(z), *res[1:])

"""Diffusion samplers of the variance-exploding process x_σ = x_0 + σε, with σ-aware guidance (docs/theory.md §10).

Given a noise-conditional score s(x, σ) = ∇log p^σ(x), p^σ = p * N(0, σ²I), particles x (N, d) drawn
as σ_0·ε are carried from σ_0 down to σ_n (usually 0) along a decreasing grid σ_0 > … > σ_n ≥ 0:

- :func:`sample_heun`: the probability-flow ODE dx/dσ = −σ s(x, σ) with EDM's Heun steps
  (Karras et al. 2022): d_i = −σ_i s(x_i, σ_i), x̃ = x_i + (σ_{i+1} − σ_i) d_i, then
  x_{i+1} = x_i + (σ_{i+1} − σ_i)(d_i + d̃)/2 with d̃ = −σ_{i+1} s(x̃, σ_{i+1}); Euler (x̃) on a
  step to σ = 0. NFE = 2n − 1 for a grid ending at 0.
- :func:`sample_sde`: the reverse SDE, Euler–Maruyama in σ:
  x ← x + (σ_i² − σ_{i+1}²) s(x, σ_i) + √(σ_i² − σ_{i+1}²) ξ (no noise on a step to 0). NFE = n.
- :func:`sample_pc`: that step as predictor, then ``corrector_steps`` Langevin steps at σ_{i+1}
  (Song et al. 2021): x ← x + ε s + √(2ε) ξ, ε = 2 (snr ‖ξ‖/‖s‖)² with the norms averaged over
  the batch. NFE = n + corrector_steps·#{i: σ_{i+1} > 0}.

Guidance replaces s by s(x, σ) + λ(σ) ∇ψ(x, σ): ψ = log r of a (noise-conditional) discriminator
or a kernel witness taken at level σ, λ a number or a schedule σ ↦ λ(σ) ≥ 0. The field is bound to
the particles at every evaluation (:class:`~scoregan.sampling.guidance_base.SigmaGuidance`). With
the exact ψ = log p_d^σ/p_g^σ and λ = 1, s_g + ∇ψ = s_d: a sampler for p_g becomes one for p_d.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from scoregan._checks import check_int, check_positive
from scoregan.sampling.guidance_base import SigmaGuidance
from scoregan.sampling.langevin import _check_particles, check_guidance_scale
from scoregan.sampling.steps import ScoreModel, _n_positional, _randn_like

__all__ = ["DiffusionInfo", "NoiseConditionalScore", "edm_sigmas", "sample_heun", "sample_pc", "sample_sde"]

Scale = float | Callable[[float], float]


@dataclass(frozen=True)
class DiffusionInfo:
    """What a run did: ``nfe`` score evaluations (each with the guidance gradient when guided),
    ``steps`` = n grid steps, ``guidance_norms`` the mean ‖λ(σ_i)∇ψ(x, σ_i)‖ over the particles at the
    first evaluation of each step (n values; empty without guidance) and ``wall_s`` seconds."""

    nfe: int
    steps: int
    guidance_norms: tuple[float, ...]
    wall_s: float


# ------------------------------------------------------------------------------------ schedule
def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def edm_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Karras et al.'s grid (n + 1,): σ_i = (σ_max^{1/ρ} + i/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for
    i < n, then σ_n = 0 (n = 1: [σ_max, 0]); 0 < σ_min < σ_max, ρ > 0."""
    check_int("n", n, minimum=1)
    sigma_min, sigma_max, rho = _real("sigma_min", sigma_min), _real("sigma_max", sigma_max), _real("rho", rho)
    check_positive("sigma_min", sigma_min)
    if not sigma_max > sigma_min:
        raise ValueError(f"sigma_max must be greater than sigma_min, got sigma_max={sigma_max!r}, "
                         f"sigma_min={sigma_min!r}")
    check_positive("rho", rho)
    if n == 1:
        levels = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        t = torch.arange(n, dtype=torch.float64) / (n - 1)
        a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
        levels = (a + t * (b - a)) ** rho
        levels[0], levels[-1] = sigma_max, sigma_min  # the endpoints exactly
    return torch.cat([levels, levels.new_zeros(1)]).to(dtype=dtype, device=device)


def _check_grid(sigmas: Any) -> list[float]:
    """σ_0 > σ_1 > … > σ_n ≥ 0 (n ≥ 1) as Python floats, from a sequence or a 1-D tensor."""
    try:
        t = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"sigmas must be a decreasing 1-D sequence of noise levels, got {sigmas!r}") from exc
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D sequence of at least 2 noise levels, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"sigmas must be finite and non-negative, got {t.tolist()}")
    up = torch.nonzero(t[1:] >= t[:-1]).flatten()
    if up.numel():
        i = int(up[0])
        raise ValueError(f"sigmas must be strictly decreasing, but sigmas[{i + 1}] = {t[i + 1].item():g} >= "
                         f"sigmas[{i}] = {t[i].item():g}")
    return [float(s) for s in t]


# ------------------------------------------------------------------------------ score and drift
class NoiseConditionalScore:
    """``score`` as s(x, σ) (N, d) for x (N, d), σ a 0-d tensor: a callable (x, σ) ↦ (N, d) is called
    as is; an object with ``perturbed(σ)`` and ``score`` (a GaussianMixture) gives the exact
    ``score.perturbed(σ).score(x)`` (through :class:`~scoregan.sampling.steps.ScoreModel`)."""

    def __init__(self, score: Any):
        self._mixture = callable(getattr(score, "perturbed", None)) and callable(getattr(score, "score", None))
        if not self._mixture and not (callable(score) and _n_positional(score) >= 2):
            raise ValueError(f"score must be a noise-conditional callable (x, sigma) -> (N, d) or a GaussianMixture, "
                             f"got {type(score).__name__}")
        self._model = ScoreModel.wrap(score) if self._mixture else None
        self.score = score

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = self._model.score(x, float(sigma)) if self._model is not None else self.score(x, sigma)
        if not isinstance(s, torch.Tensor) or s.shape != x.shape:
            shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"score returned shape {shape} for particles of shape {tuple(x.shape)}")
        return s


def _scales(guidance_scale: Any, sig: list[float]) -> list[float]:
    """λ(σ_i) for every level of the grid (0 at σ = 0), each a finite number ≥ 0."""
    if not callable(guidance_scale):
        lam = check_guidance_scale(guidance_scale)
        return [lam if s > 0 else 0.0 for s in sig]
    out = []
    for s in sig:
        v = guidance_scale(s) if s > 0 else 0.0
        v = float(v) if isinstance(v, torch.Tensor) and v.numel() == 1 else v
        try:
            out.append(check_guidance_scale(v))
        except ValueError:
            raise ValueError(f"guidance_scale(sigma={s:g}) must be a finite number >= 0, got {v!r}") from None
    return out


class _Drift:
    """The guided score s(x, σ_i) + λ(σ_i)∇ψ(x, σ_i) (N, d) at grid level i, counting evaluations."""

    def __init__(self, score: NoiseConditionalScore, guidance: SigmaGuidance | None, sig: list[float],
                 lams: list[float]):
        self.score, self.guidance, self.sig, self.lams = score, guidance, sig, lams
        self.nfe, self.norms = 0, []

    def __call__(self, x: torch.Tensor, i: int, record: bool = False) -> torch.Tensor:
        self.nfe += 1
        sigma = torch.tensor(self.sig[i], dtype=x.dtype, device=x.device)
        out = self.score(x, sigma)
        if self.guidance is None:
            return out
        if self.lams[i] == 0.0:
            if record:
                self.norms.append(torch.zeros((), dtype=x.dtype, device=x.device))
            return out
        g = self.lams[i] * self.guidance(x, sigma)
        if record:
            self.norms.append(g.norm(dim=1).mean())
        return out + g


def _setup(score: Any, x: Any, sigmas: Any, guidance: Any, guidance_scale: Any, generator: Any) -> tuple[list[float], _Drift]:
    """Every argument checked before any work (ValueError naming it); the grid and the drift."""
    _check_particles("x", x)
    sig = _check_grid(sigmas)
    model = NoiseConditionalScore(score)
    field = None
    if guidance is not None:
        field = SigmaGuidance(guidance)
        field.check(x, "x")
    lams = _scales(guidance_scale, sig)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return sig, _Drift(model, field, sig, lams)


def _finish(x: torch.Tensor, drift: _Drift, steps: int, t0: float,
            return_info: bool) -> torch.Tensor | tuple[torch.Tensor, DiffusionInfo]:
    if not return_info:
        return x
    norms = tuple(torch.stack(drift.norms).cpu().tolist()) if drift.norms else ()
    return x, DiffusionInfo(drift.nfe, steps, norms, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ samplers
def sample_heun(score: Any, x: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, *, guidance: Any = None,
                guidance_scale: Scale = 1.0, generator: torch.Generator | None = None,
                return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, DiffusionInfo]:
    """The probability-flow ODE dx/dσ = −σ (s(x, σ) + λ(σ)∇ψ(x, σ)) from σ_0 to σ_n by Heun steps (module doc).

    Args:
        score: a noise-conditional callable (x (N, d), σ 0-d tensor) ↦ (N, d), or a GaussianMixture
            (its exact perturbed score).
        x: (N, d) initial particles, drawn by the caller as σ_0·ε; dtype and device of the run.
        sigmas: σ_0 > … > σ_n ≥ 0 (e.g. :func:`edm_sigmas`).
        guidance: None, a field with ``grad(x[, sigma])`` (``DiscriminatorGuidance``,
            ``KernelGuidance``, ...), or a callable (x[, σ]) ↦ ∇ψ (N, d); bound to the particles at
            every evaluation.
        guidance_scale: λ ≥ 0, or a schedule σ ↦ λ(σ) (evaluated on the grid up front).
        generator: unused (the ODE is deterministic); accepted for the samplers' common signature.
        return_info: also return a :class:`DiffusionInfo`.

    Returns:
        samples (N, d), or ``(samples, info)``.
    """
    t0 = time.perf_counter()
    sig, drift = _setup(score, x, sigmas, guidance, guidance_scale, generator)
    with torch.no_grad():
        for i in range(len(sig) - 1):
            s0, s1 = sig[i], sig[i + 1]
            d = -s0 * drift(x, i, record=True)
            x_euler = x + (s1 - s0) * d
            if s1 > 0:
                d1 = -s1 * drift(x_euler, i + 1)
                x = x + (s1 - s0) * 0.5 * (d + d1)
            else:
                x = x_euler
    return _finish(x, drift, len(sig) - 1, t0, return_info)


def sample_sde(score: Any, x: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, *, guidance: Any = None,
               guidance_scale: Scale = 1.0, generator: torch.Generator | None = None,
               return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, DiffusionInfo]:
    """The reverse VE SDE by Euler–Maruyama in σ (module doc); arguments as :func:`sample_heun`, with
    ``generator`` drawing the noise ξ (same seed, same samples)."""
    t0 = time.perf_counter()
    sig, drift = _setup(score, x, sigmas, guidance, guidance_scale, generator)
    with torch.no_grad():
        for i in range(len(sig) - 1):
            x = _reverse_step(x, drift, sig, i, generator)
    return _finish(x, drift, len(sig) - 1, t0, return_info)


def _reverse_step(x: torch.Tensor, drift: _Drift, sig: list[float], i: int,
                  generator: torch.Generator | None) -> torch.Tensor:
    """x + (σ_i² − σ_{i+1}²) s(x, σ_i) + √(σ_i² − σ_{i+1}²) ξ (no noise when σ_{i+1} = 0)."""
    v = sig[i] ** 2 - sig[i + 1] ** 2
    x = x + v * drift(x, i, record=True)
    return x + math.sqrt(v) * _randn_like(x, generator) if sig[i + 1] > 0 else x


def sample_pc(score: Any, x: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, *, guidance: Any = None,
              guidance_scale: Scale = 1.0, generator: torch.Generator | None = None, return_info: bool = False,
              corrector_steps: int = 1, snr: float = 0.16) -> torch.Tensor | tuple[torch.Tensor, DiffusionInfo]:
    """Predictor–corrector sampling (module doc): the reverse-SDE step to σ_{i+1}, then
    ``corrector_steps`` (≥ 0) Langevin steps at σ_{i+1} > 0 with ε = 2 (snr · mean‖ξ‖ / mean‖s‖)²
    (snr > 0); other arguments as :func:`sample_sde`."""
    t0 = time.perf_counter()
    sig, drift = _setup(score, x, sigmas, guidance, guidance_scale, generator)
    check_int("corrector_steps", corrector_steps, minimum=0)
    snr = _real("snr", snr)
    check_positive("snr", snr)
    with torch.no_grad():
        for i in range(len(sig) - 1):
            x = _reverse_step(x, drift, sig, i, generator)
            if sig[i + 1] == 0:
                continue
            for _ in range(corrector_steps):
                g = drift(x, i + 1)
                z = _randn_like(x, generator)
                ratio = z.norm(dim=1).mean() / g.norm(dim=1).mean().clamp_min(torch.finfo(x.dtype).tiny)
                eps = 2.0 * (snr * ratio) ** 2
                x = x + eps * g + torch.sqrt(2.0 * eps) * z
    return _finish(x, drift, len(sig) - 1, t0, return_info)

"""ODE sampling and exact log-likelihoods for velocity fields (flow matching), with torchdiffeq.

A velocity field is a callable ``velocity(x, t)``: x (N, d), t a 0-d tensor ↦ (N, d). The flow
ẋ = v(x, t) from t0 to t1 carries a source density p0 to p1; along a trajectory the instantaneous
change of variables (Chen et al. 2018) gives

    d/dt log p_t(x_t) = −∇·v(x_t, t),    so    log p1(x1) = log p0(x0) − ∫_{t0}^{t1} ∇·v(x_t, t) dt,

computed by integrating the augmented state (x, ∫∇·v) backwards from x1 at t1 to x0 at t0. The
divergence is exact (d backward passes, one per coordinate) in low dimension and Hutchinson's
estimator ∇·v ≈ (1/K) Σ_k ε_kᵀ (∂v/∂x) ε_k above it (Rademacher probes ε_k, fixed over one solve,
as in FFJORD; exact when ∂v/∂x is diagonal).

Solvers: the adaptive ones of torchdiffeq (``dopri5``, ``dopri8``, ``bosh3``, ``adaptive_heun``)
take ``atol`` / ``rtol``; the fixed-grid ones (``euler``, ``midpoint``, ``rk4``) take ``steps``.
Every call reports ``nfe``, the number of evaluations of the velocity field (each one a batched
network evaluation): the cost of a sample, comparable with a one-step generator's 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scoregan._checks import check_choice, check_int, check_matrix, check_positive

ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5", "dopri8", "bosh3", "adaptive_heun")
FIXED_METHODS: tuple[str, ...] = ("euler", "midpoint", "rk4")
ODE_METHODS: tuple[str, ...] = ADAPTIVE_METHODS + FIXED_METHODS
DIVERGENCE_MODES: tuple[str, ...] = ("auto", "exact", "hutchinson")

Velocity = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "ODE_METHODS",
    "ADAPTIVE_METHODS",
    "FIXED_METHODS",
    "ODESolution",
    "LikelihoodSolution",
    "integrate",
    "log_likelihood",
    "divergence_exact",
    "divergence_hutchinson",
]


@dataclass
class ODESolution:
    """x: the state at t1 (N, d); nfe: evaluations of the velocity field."""

    x: Tensor
    nfe: int


@dataclass
class LikelihoodSolution:
    """log_prob: log p1(x1) (N,); x0: the trajectories' start points at t0 (N, d); nfe: field evaluations."""

    log_prob: Tensor
    x0: Tensor
    nfe: int


def _solver_options(method: str, t0: float, t1: float, steps: int | None, atol: float, rtol: float) -> dict:
    check_choice("method", method, ODE_METHODS)
    check_positive("atol", atol)
    check_positive("rtol", rtol)
    if method in FIXED_METHODS:
        if steps is None:
            raise ValueError(f"steps is required for the fixed-grid method {method!r} (e.g. steps=20)")
        check_int("steps", steps, minimum=1)
        return {"method": method, "options": {"step_size": abs(t1 - t0) / steps}}
    if steps is not None:
        raise ValueError(f"steps={steps!r} applies to the fixed-grid methods {FIXED_METHODS}; "
                         f"{method!r} is adaptive and takes atol / rtol")
    return {"method": method, "atol": atol, "rtol": rtol}


def _grid(t0: float, t1: float, x: Tensor) -> Tensor:
    if not (isinstance(t0, (int, float)) and isinstance(t1, (int, float))) or t0 == t1:
        raise ValueError(f"t0 and t1 must be distinct numbers, got t0={t0!r}, t1={t1!r}")
    return torch.tensor([float(t0), float(t1)], dtype=x.dtype, device=x.device)


@torch.no_grad()
def integrate(velocity: Velocity, x0: Tensor, *, t0: float = 0.0, t1: float = 1.0, method: str = "dopri5",
              atol: float = 1e-5, rtol: float = 1e-5, steps: int | None = None) -> ODESolution:
    """Solve ẋ = velocity(x, t) from x0 (N, d) at t0 to t1; returns x(t1) (N, d) and the NFE."""
    from torchdiffeq import odeint

    check_matrix("x0", x0)
    opts = _solver_options(method, t0, t1, steps, atol, rtol)
    nfe = 0

    def f(t: Tensor, x: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return velocity(x, t)

    xs = odeint(f, x0, _grid(t0, t1, x0), **opts)
    return ODESolution(xs[-1], nfe)


def divergence_exact(velocity: Velocity, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(v(x, t), ∇·v(x, t)) as ((N, d), (N,)): the Jacobian trace by d backward passes."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = velocity(xg, t)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if not v.requires_grad:  # a field that does not depend on x (or on anything with a gradient)
            return v.detach(), div
        for i in range(x.shape[1]):
            (g,) = torch.autograd.grad(v[:, i].sum(), xg, retain_graph=i < x.shape[1] - 1, allow_unused=True)
            if g is not None:
                div = div + g[:, i]
    return v.detach(), div


def divergence_hutchinson(velocity: Velocity, x: Tensor, t: Tensor, probes: Tensor) -> tuple[Tensor, Tensor]:
    """(v(x, t), (1/K) Σ_k ε_kᵀ (∂v/∂x) ε_k) for probes ε (K, N, d): unbiased for E εεᵀ = I."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = velocity(xg, t)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if not v.requires_grad:
            return v.detach(), div
        k = probes.shape[0]
        for j in range(k):
            (g,) = torch.autograd.grad((v * probes[j]).sum(), xg, retain_graph=j < k - 1, allow_unused=True)
            if g is not None:  # g = εᵀ ∂v/∂x
                div = div + (g * probes[j]).sum(dim=1)
    return v.detach(), div / k


def log_likelihood(velocity: Velocity, x1: Tensor, source_log_prob: Callable[[Tensor], Tensor], *,
                   t0: float = 0.0, t1: float = 1.0, method: str = "dopri5", atol: float = 1e-5,
                   rtol: float = 1e-5, steps: int | None = None, divergence: str = "auto",
                   exact_max_dim: int = 8, n_probes: int = 1,
                   generator: torch.Generator | None = None) -> LikelihoodSolution:
    """log p1(x1) (N,) for the flow of ``velocity`` carrying the source density p0 (``source_log_prob``:
    (N, d) ↦ (N,)) from t0 to t1, by the instantaneous change of variables (module doc).

    divergence: "exact", "hutchinson" (``n_probes`` Rademacher probes from ``generator``, fixed for the
    solve), or "auto" (exact when d <= ``exact_max_dim``).
    """
    from torchdiffeq import odeint

    check_matrix("x1", x1)
    check_choice("divergence", divergence, DIVERGENCE_MODES)
    check_int("exact_max_dim", exact_max_dim, minimum=1)
    check_int("n_probes", n_probes, minimum=1)
    opts = _solver_options(method, t1, t0, steps, atol, rtol)
    n, d = x1.shape
    exact = divergence == "exact" or (divergence == "auto" and d <= exact_max_dim)
    if not exact:
        bits = torch.randint(0, 2, (n_probes, n, d), generator=generator, device=x1.device)
        probes = (2 * bits - 1).to(x1.dtype)
    nfe = 0

    def f(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        x = state[0]
        v, div = divergence_exact(velocity, x, t) if exact else divergence_hutchinson(velocity, x, t, probes)
        return v, div

    acc0 = torch.zeros(n, dtype=x1.dtype, device=x1.device)
    with torch.no_grad():
        xs, acc = odeint(f, (x1.detach(), acc0), _grid(t1, t0, x1), **opts)
    x0, integral = xs[-1], acc[-1]  # integral = ∫_{t1}^{t0} ∇·v dt = −∫_{t0}^{t1} ∇·v dt
    return LikelihoodSolution(source_log_prob(x0) + integral, x0, nfe)

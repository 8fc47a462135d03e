"""Generator steepness: the spectral norm ‖J_G(z)‖₂ of the generator's Jacobian at each latent.

For a generator G: R^k → R^d and a batch of latents z (N, k), the steepness of row i is

    σ₁(z_i) = ‖J_G(z_i)‖₂ = sqrt(λ_max(J_iᵀ J_i)),      J_i = ∂G(z_i)/∂z ∈ R^{d×k},

the largest factor by which G stretches a small latent displacement at z_i. It is computed
matrix-free, from products with the Jacobian only (never the d×k Jacobian itself):

    J v  (N, k) → (N, d)   a vjp of the vjp (the "double-backward" trick; cheaper than forward mode),
    Jᵀu  (N, d) → (N, k)   a vjp of G at z, its forward pass recorded once and reused.

Both are batched over the N rows in one call each. That relies on the generator acting **row-wise**
(output row i depends on z_i only), so that the Jacobian of the batched map is block-diagonal and
one batched product applies every J_i at once. Plain MLPs and convolutional generators act
row-wise; BatchNorm in training mode, minibatch statistics or attention across the batch do not.
Modules are therefore evaluated in ``eval()`` mode (restored afterwards), where BatchNorm uses its
running statistics, dropout is off and spectral normalisation does not advance its own power
iteration, so a diagnostic never changes the network or its buffers.

Two eigen-solvers for λ_max(JᵀJ), both over the Krylov space {v₀, JᵀJ v₀, (JᵀJ)² v₀, ...}:

* ``"power"``: power iteration v ← JᵀJ v / ‖JᵀJ v‖, estimate the Rayleigh quotient ‖J v‖².
  Its error shrinks like (σ₂/σ₁)^{2t} per iteration, slow when the top two singular values are
  close (random 64 → 784 MLPs have σ₂/σ₁ ≈ 0.9-0.98).
* ``"lanczos"`` (default): Lanczos with full re-orthogonalisation, i.e. the same power iterates
  with a Rayleigh-Ritz step on the space they span. Its top Ritz value is never below the power
  iteration's Rayleigh quotient after the same number of products, never above λ_max, and exact
  after k products (the Krylov space is then all of R^k); in practice 15-30 products reach
  a 1e-3 residual where power iteration needs hundreds.

Stopping rule (both): the relative residual of the current estimate (θ, y), ‖JᵀJ y − θ y‖ / θ,
is at most ``tol`` for every row, or ``iters`` products have been taken. A residual ρ·θ places
θ within ρ·θ of an eigenvalue of JᵀJ, and within (ρθ)²/gap of λ_max once θ is closer to λ_max
than to the next eigenvalue, so ``tol=1e-3`` gives about 1e-6/relative-gap relative accuracy.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import vjp

from scoregan._checks import check_choice, check_int, check_matrix, check_positive

__all__ = ["SteepnessResult", "batch_stats", "eval_mode", "jacobian_products", "spectral_norm_batch", "steepness"]

EIGEN_METHODS = ("lanczos", "power")
# Lanczos solves its small tridiagonal eigenproblem (for the residual test) every few products
# only: a batched (N, j, j) eigh costs about a third of a Jacobian product on the CPU.
_CHECK_EVERY = 3


@contextlib.contextmanager
def eval_mode(*fns: Callable) -> Iterator[None]:
    """Put every ``nn.Module`` among ``fns`` (and its submodules) in eval mode; restore each
    submodule's own ``training`` flag on exit. Non-modules are left alone."""
    saved = [(m, m.training) for f in fns if isinstance(f, nn.Module) for m in f.modules()]
    try:
        for f in fns:
            if isinstance(f, nn.Module):
                f.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def jacobian_products(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor
                      ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """Record ``fn`` at ``z`` (N, k) once; return (x, jv, jtu) with x = fn(z) (N, d) and

        jv(v)  = J v   (N, k) → (N, d),   row i: J_G(z_i) v_i
        jtu(u) = Jᵀ u  (N, d) → (N, k),   row i: J_G(z_i)ᵀ u_i

    (row-wise ``fn`` assumed, see the module docstring). ``jv`` is the vjp of the linear map
    ``jtu``, which costs about one backward pass, less than forward-mode ``jvp`` re-running fn.
    Call inside ``torch.no_grad()`` to keep parameters out of the graph.
    """
    x, vjp_fn = vjp(fn, z)
    if x.ndim != 2 or x.shape[0] != z.shape[0]:
        raise ValueError(f"generator must map z of shape (N, k) to (N, d); got {tuple(z.shape)} -> {tuple(x.shape)}")
    _, vjp_of_vjp = vjp(vjp_fn, torch.zeros_like(x))

    def jtu(u: torch.Tensor) -> torch.Tensor:
        return vjp_fn(u)[0]

    def jv(v: torch.Tensor) -> torch.Tensor:
        return vjp_of_vjp((v,))[0]

    return x, jv, jtu


@dataclass(frozen=True)
class SteepnessResult:
    """The output of :func:`spectral_norm_batch`.

    Attributes:
        sigma: (N,) estimates of ‖J_G(z_i)‖₂.
        vector: (N, k) unit right singular vector estimates (the direction of steepest stretch).
        residual: (N,) final relative residuals ‖JᵀJ y − θ y‖ / θ (0 where J = 0).
        iters: number of Jacobian products taken (each one Jv and one Jᵀu, batched over N).
        converged: whether every row met ``tol`` before the cap.
    """

    sigma: torch.Tensor
    vector: torch.Tensor
    residual: torch.Tensor
    iters: int
    converged: bool


def _start(z: torch.Tensor, rng: torch.Generator | int | None, v0: torch.Tensor | None) -> torch.Tensor:
    """A unit start vector per row: ``v0`` if given, else N(0, I) drawn on the CPU from ``rng``
    (an int seeds a fresh generator; None means seed 0) so every device gets the same start."""
    if v0 is not None:
        check_matrix("v0", v0, dim=z.shape[1])
        if v0.shape[0] != z.shape[0]:
            raise ValueError(f"v0 must have one row per latent ({z.shape[0]}), got shape {tuple(v0.shape)}")
        v = v0.to(device=z.device, dtype=z.dtype)
    else:
        if rng is None or isinstance(rng, int):
            rng = torch.Generator().manual_seed(0 if rng is None else int(rng))
        v = torch.randn(z.shape, generator=rng, dtype=torch.float64, device=rng.device).to(z.device, z.dtype)
    norm = v.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("v0 has a zero row; start vectors must be non-zero")
    return v / norm


def _tiny(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).tiny ** 0.5


def _power(op: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, iters: int, tol: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Power iteration on the PSD operator ``op`` (= JᵀJ), rows independent; (θ, y, residual, iters)."""
    tiny = _tiny(v.dtype)
    theta = torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    res = torch.full_like(theta, math.inf)
    t = 0
    for t in range(1, iters + 1):
        w = op(v)
        theta = (v * w).sum(1)  # Rayleigh quotient ‖J v‖² (v unit)
        res = (w - theta[:, None] * v).norm(dim=1) / theta.clamp_min(tiny)
        res = torch.where(theta > tiny, res, torch.zeros_like(res))  # J v = 0: the answer is 0
        nw = w.norm(dim=1, keepdim=True)
        v = torch.where(nw > tiny, w / nw.clamp_min(tiny), v)
        if float(res.max()) <= tol:
            break
    return theta, v, res, t


def _lanczos(op: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor, iters: int, tol: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Batched Lanczos with full re-orthogonalisation on the PSD operator ``op``.

    Basis Q (N, m, k), tridiagonal T (N, m, m); the top Ritz pair (θ, y = Qs) of each row has
    residual ‖op(y) − θy‖ = β_m |s_m| (β_m the last off-diagonal, s_m the last entry of s),
    tested every ``_CHECK_EVERY`` steps and at the last. At most k steps: then the Krylov space is
    R^k and the Ritz value is exact.
    """
    n, k = v.shape
    steps = min(iters, k)
    tiny = _tiny(v.dtype)
    Q = v.new_zeros(n, steps, k)
    T = v.new_zeros(n, steps, steps)
    q = v
    scale = v.new_zeros(n)  # running max |α| per row: the size that decides "breakdown"
    theta = v.new_zeros(n)
    y, res = v, torch.full_like(theta, math.inf)
    j = 0
    for j in range(steps):
        Q[:, j] = q
        w = op(q)
        alpha = (q * w).sum(1)
        T[:, j, j] = alpha
        scale = torch.maximum(scale, alpha.abs())
        basis = Q[:, : j + 1]
        for _ in range(2):  # classical Gram-Schmidt, twice ("twice is enough")
            w = w - ((basis * w[:, None, :]).sum(-1)[:, :, None] * basis).sum(1)
        beta = w.norm(dim=1)
        broke = beta <= max(k, 10) * torch.finfo(v.dtype).eps * scale.clamp_min(tiny)  # rounding level
        beta = torch.where(broke, torch.zeros_like(beta), beta)
        last = j + 1 == steps
        if last or (j + 1) % _CHECK_EVERY == 0 or bool(broke.all()):
            evals, evecs = torch.linalg.eigh(T[:, : j + 1, : j + 1])
            theta, s = evals[:, -1], evecs[:, :, -1]
            res = beta * s[:, -1].abs() / theta.clamp_min(tiny)
            res = torch.where(theta > tiny, res, torch.zeros_like(res))
            y = (s[:, :, None] * basis).sum(1)
            if float(res.max()) <= tol or last:
                break
        T[:, j, j + 1] = T[:, j + 1, j] = beta
        q = torch.where(broke[:, None], torch.zeros_like(w), w / beta.clamp_min(tiny)[:, None])
    y = y / y.norm(dim=1, keepdim=True).clamp_min(tiny)
    return theta, y, res, j + 1


def spectral_norm_batch(generator: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, *, iters: int = 64,
                        tol: float = 1e-3, method: str = "lanczos", rng: torch.Generator | int | None = None,
                        v0: torch.Tensor | None = None) -> SteepnessResult:
    """‖J_G(z_i)‖₂ for every row of ``z`` (N, k), with the singular vectors and convergence info.

    Args:
        generator: a row-wise map (N, k) → (N, d), usually an ``nn.Module`` (evaluated in eval mode).
        z: (N, k) latents; the result follows their device and dtype.
        iters: cap on Jacobian products (Lanczos stops after k anyway: it is then exact).
        tol: relative residual ‖JᵀJ y − θ y‖ / θ at which a row counts as converged.
        method: ``"lanczos"`` (default) or ``"power"``.
        rng: generator (or int seed) of the random start vectors; ``None`` = seed 0 (deterministic).
        v0: (N, k) explicit start vectors (e.g. the previous call's ``vector`` as a warm start).
    """
    check_matrix("z", z)
    if not z.is_floating_point():
        raise ValueError(f"z must be a floating-point tensor, got dtype {z.dtype}")
    check_int("iters", iters, minimum=1)
    check_positive("tol", tol)
    check_choice("method", method, EIGEN_METHODS)
    v = _start(z, rng, v0)
    with eval_mode(generator), torch.no_grad():
        _, jv, jtu = jacobian_products(generator, z.detach())

        def op(w: torch.Tensor) -> torch.Tensor:
            return jtu(jv(w))

        solve = _lanczos if method == "lanczos" else _power
        theta, y, res, t = solve(op, v, iters, tol)
    return SteepnessResult(theta.clamp_min(0).sqrt(), y, res, t, bool(res.max() <= tol))


def steepness(generator: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, *, iters: int = 64,
              tol: float = 1e-3, method: str = "lanczos", rng: torch.Generator | int | None = None) -> torch.Tensor:
    """Steepness ‖J_G(z_i)‖₂, one per row of ``z`` (N, k): a tensor (N,) on z's device and dtype.

    Matrix-free (Jacobian-vector products only), batched over rows; see
    :func:`spectral_norm_batch` for the arguments and the module docstring for the method.
    """
    return spectral_norm_batch(generator, z, iters=iters, tol=tol, method=method, rng=rng).sigma


def batch_stats(values: torch.Tensor, prefix: str = "", *,
                quantiles: Sequence[float] = (0.1, 0.9)) -> dict[str, float]:
    """Summary of a (N,) batch of values: ``{prefix}mean, median, max, min, std, q10, q90, ...}``
    (quantiles named by percent). Non-finite entries are an error, reported by name."""
    if not isinstance(values, torch.Tensor) or values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"values must be a non-empty 1-D tensor, got {getattr(values, 'shape', type(values).__name__)}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"values for {prefix or 'batch_stats'!r} contain NaN or Inf")
    for q in quantiles:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantiles must lie in [0, 1], got {q!r}")
    x = values.detach().to("cpu", torch.float64)
    out = {"mean": x.mean(), "median": torch.quantile(x, 0.5), "max": x.max(), "min": x.min(),
           "std": x.std() if x.numel() > 1 else torch.zeros(())}
    qs = torch.quantile(x, torch.tensor(list(quantiles), dtype=torch.float64)) if quantiles else []
    for q, val in zip(quantiles, qs):
        out[f"q{round(100 * q):02d}"] = val
    return {prefix + k: float(v) for k, v in out.items()}

"""Function-space discriminator training in the NTK regime, and the particle flows it drives.

The NTK view of GANs (Franceschi et al., ICML 2022; docs/theory.md §8). A discriminator f trained by
gradient ascent (continuous time, unit learning rate) on the finite set γ = {z_1..z_n} of real
points y (n_r of them) and generated points x (n_g), for the objective

    L(f) = (1/n_r) Σ_real ℓ_real(f(y_j)) + (1/n_g) Σ_gen ℓ_gen(f(x_j)),

moves, in the infinite-width limit where its NTK k stays fixed, as

    ∂_t f_t(·) = Σ_j k(·, z_j) w_j ℓ_j'(f_t(z_j)),   w_j = 1/n_r (real) or 1/n_g (generated),

so f_t = f_0 + Σ_j c_j(t) k(·, z_j) with ċ = w ⊙ ℓ'(f_0(γ) + K c), c(0) = 0, K = k(γ, γ) (n × n):
a kernel machine on γ, defined and differentiable everywhere k is. Losses (f is high on real data,
the convention of the rest of scoregan; the paper's f is −f):

    "ipm"  ℓ_real = f,               ℓ_gen = −f:               c(t) = t w ⊙ τ (closed form),
    "ls"   ℓ_real = −½(f − 1)²,      ℓ_gen = −½(f + 1)²:       c(t) = W Φ_t (τ − f_0(γ)) (closed form),
    "gan"  ℓ_real = log σ(f),        ℓ_gen = log(1 − σ(f)):    ODE, integrated with torchdiffeq,

τ_j = +1 on real and −1 on generated points, W = diag(w), Φ_t = ∫_0^t e^{−sKW} ds. For "ipm"
with f_0 = 0, f_t = t (mean_real k(·, y) − mean_gen k(·, x)): the generator then descends the MMD
of the NTK. Φ_t is computed through the matrix exponential of the symmetric S = W^½ K W^½ = V Λ Vᵀ:
e^{−sKW} = W^{−½} V e^{−sΛ} Vᵀ W^½, so W Φ_t = W^½ V diag((1 − e^{−tλ})/λ) Vᵀ W^½ (= t at λ = 0).

Particle flow (the non-interacting case: no generator, the generated points are the parameters):
each round trains f from f_0 for ``disc_time`` on γ = real ∪ current particles, then moves every
particle along the generator's steepest descent v(x) = −∇ₓ a(f_t(x)) = −a'(f_t(x)) ∇f_t(x):

    loss    a (non_saturating)     v (non_saturating)     a (saturating)      v (saturating)
    ipm     −f                     ∇f                     −f                  ∇f
    ls      ½(f − 1)²              (1 − f) ∇f             −½(f + 1)²          (1 + f) ∇f
    gan     −log σ(f)              σ(−f) ∇f               log(1 − σ(f))       σ(f) ∇f

Any :class:`scoregan.objectives.kernels.Kernel` works (the NTK of
:mod:`scoregan.objectives.kernels.ntk`, or a Gaussian kernel as baseline). Shapes: real (n_r, d),
fake (n_g, d), queries (N, d).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scoregan._autograd import input_gradient
from scoregan._checks import check_choice, check_int, check_matrix, check_positive
from scoregan.objectives.kernels import Kernel, real_number, resolve_kernel

__all__ = [
    "GENERATOR_LOSSES",
    "LOSSES",
    "TRAIN_METHODS",
    "FlowResult",
    "KernelDiscriminator",
    "generator_velocity",
    "particle_flow",
    "train_discriminator",
]

LOSSES: tuple[str, ...] = ("ipm", "ls", "gan")
GENERATOR_LOSSES: tuple[str, ...] = ("non_saturating", "saturating")
TRAIN_METHODS: tuple[str, ...] = ("auto", "closed_form", "ode")
_CLOSED_FORM_LOSSES = ("ipm", "ls")

Function = Callable[[Tensor], Tensor]


def _loss_slope(loss: str, f: Tensor, real: Tensor) -> Tensor:
    """ℓ'(f) elementwise; ``real`` is a boolean mask (True: ℓ_real, False: ℓ_gen)."""
    if loss == "ipm":
        return torch.where(real, torch.ones_like(f), -torch.ones_like(f))
    if loss == "ls":
        return torch.where(real, 1.0 - f, -1.0 - f)
    return torch.where(real, torch.sigmoid(-f), -torch.sigmoid(f))


def _generator_slope(loss: str, generator_loss: str, f: Tensor) -> Tensor:
    """−a'(f): the factor in front of ∇f in the particle velocity (module table)."""
    saturating = generator_loss == "saturating"
    if loss == "ipm":
        return torch.ones_like(f)
    if loss == "ls":
        return 1.0 + f if saturating else 1.0 - f
    return torch.sigmoid(f) if saturating else torch.sigmoid(-f)


@dataclass
class KernelDiscriminator:
    """f(x) = f_0(x) + Σ_j coef_j k(x, centres_j): the trained infinite-width discriminator.

    ``kernel`` is already resolved on the centres (a data-dependent bandwidth is fixed at
    training time), ``centres`` (n, d) = [real; fake], ``coef`` (n,), ``f0`` None (= 0) or a
    callable (N, d) → (N,) differentiable in its input. ``n_real`` centres come first.
    """

    kernel: Kernel
    centres: Tensor
    coef: Tensor
    n_real: int
    f0: Function | None = None

    def __call__(self, x: Tensor) -> Tensor:
        """f(x): (N, d) → (N,)."""
        out = self.kernel.witness(x, self.centres, self.coef)
        return out if self.f0 is None else out + self.f0(x).reshape(-1).to(out)

    def grad(self, x: Tensor) -> Tensor:
        """∇ₓ f(x): (N, d) → (N, d)."""
        out = self.kernel.witness_grad(x, self.centres, self.coef)
        return out if self.f0 is None else out + input_gradient(self.f0, x).to(out)


def _check_sets(real: Tensor, fake: Tensor) -> None:
    check_matrix("real", real)
    check_matrix("fake", fake, dim=real.shape[1])
    if real.shape[0] == 0 or fake.shape[0] == 0:
        raise ValueError(f"real and fake must be non-empty, got {real.shape[0]} and {fake.shape[0]} points")
    if not real.dtype.is_floating_point or fake.dtype != real.dtype:
        raise ValueError(f"real and fake must share one floating dtype, got {real.dtype} and {fake.dtype}")
    if fake.device != real.device:
        raise ValueError(f"fake is on {fake.device} but real is on {real.device}; they must match")


def _time(name: str, value: float) -> float:
    """A finite real number ≥ 0, else ValueError naming the argument."""
    return check_positive(name, real_number(name, value), allow_zero=True)


def train_discriminator(
    kernel: Kernel,
    real: Tensor,
    fake: Tensor,
    time: float,
    *,
    loss: str = "ipm",
    f0: Function | None = None,
    method: str = "auto",
    rtol: float = 1e-9,
    atol: float = 1e-12,
    ode_method: str = "dopri5",
) -> KernelDiscriminator:
    """Train the infinite-width discriminator on γ = real (n_r, d) ∪ fake (n_g, d) for ``time``.

    loss: "ipm", "ls" or "gan" (module doc). method: "closed_form" (ipm, ls), "ode"
    (torchdiffeq ``odeint`` of ċ = w ⊙ ℓ'(f_0(γ) + K c) with ``ode_method``, ``rtol``, ``atol``;
    every loss) or "auto" (closed form where it exists). f0: the initial discriminator (None: 0).
    Returns the :class:`KernelDiscriminator` f_time, evaluable (with gradient) anywhere.
    """
    if not isinstance(kernel, Kernel):
        raise ValueError(f"kernel must be a scoregan Kernel, got {type(kernel).__name__}")
    _check_sets(real, fake)
    time = _time("time", time)
    check_choice("loss", loss, LOSSES)
    check_choice("method", method, TRAIN_METHODS)
    if method == "closed_form" and loss not in _CLOSED_FORM_LOSSES:
        raise ValueError(f"method='closed_form' is not available for loss={loss!r}; use method='ode' or 'auto'")
    if f0 is not None and not callable(f0):
        raise ValueError(f"f0 must be None or a callable (N, d) -> (N,), got {type(f0).__name__}")
    centres = torch.cat([real, fake]).detach()
    n_real, n = real.shape[0], centres.shape[0]
    kernel = resolve_kernel(kernel, fake.detach(), real.detach())  # fixed on γ = real ∪ fake
    w = torch.cat([real.new_full((n_real,), 1.0 / n_real), real.new_full((n - n_real,), 1.0 / (n - n_real))])
    is_real = torch.arange(n, device=real.device) < n_real
    tau = torch.where(is_real, torch.ones_like(w), -torch.ones_like(w))
    with torch.no_grad():
        f0_gamma = centres.new_zeros(n) if f0 is None else f0(centres).reshape(-1).to(centres)
    use_ode = method == "ode" or (method == "auto" and loss not in _CLOSED_FORM_LOSSES)
    if loss == "ipm" and not use_ode:
        coef = time * w * tau
    else:
        with torch.no_grad():
            gram = kernel(centres, centres)
        if use_ode:
            coef = _integrate(loss, gram, w, is_real, f0_gamma, time, rtol, atol, ode_method)
        else:
            coef = _least_squares_coef(gram, w, tau - f0_gamma, time)
    return KernelDiscriminator(kernel, centres, coef, n_real, f0)


def _least_squares_coef(gram: Tensor, w: Tensor, residual: Tensor, time: float) -> Tensor:
    """W Φ_t r with Φ_t = ∫_0^t e^{−sKW} ds, through the eigendecomposition of W^½ K W^½."""
    sw = w.sqrt()
    s = sw[:, None] * gram * sw[None, :]
    lam, vec = torch.linalg.eigh(0.5 * (s + s.T))
    z = -time * lam
    small = z.abs() < 1e-8
    phi1 = torch.where(small, 1.0 + z / 2.0, torch.expm1(z) / torch.where(small, torch.ones_like(z), z))
    return sw * (vec @ (time * phi1 * (vec.T @ (sw * residual))))


def _integrate(loss, gram, w, is_real, f0_gamma, time, rtol, atol, ode_method) -> Tensor:
    """c(time) for ċ = w ⊙ ℓ'(f_0(γ) + K c), c(0) = 0, by torchdiffeq."""
    from torchdiffeq import odeint

    c0 = torch.zeros_like(w)
    if time == 0.0:
        return c0

    def rhs(_t: Tensor, c: Tensor) -> Tensor:
        return w * _loss_slope(loss, f0_gamma + gram @ c, is_real)

    grid = torch.tensor([0.0, time], dtype=w.dtype, device=w.device)
    with torch.no_grad():
        return odeint(rhs, c0, grid, rtol=rtol, atol=atol, method=ode_method)[-1]


def generator_velocity(
    disc: KernelDiscriminator, x: Tensor, *, loss: str = "ipm", generator_loss: str = "non_saturating"
) -> Tensor:
    """v(x) = −∇ₓ a(f(x)) = −a'(f(x)) ∇f(x): (N, d) → (N, d) (table in the module doc)."""
    check_choice("loss", loss, LOSSES)
    check_choice("generator_loss", generator_loss, GENERATOR_LOSSES)
    check_matrix("x", x, dim=disc.centres.shape[1])
    if loss == "ipm":  # a' ≡ −1: the witness values are not needed
        return disc.grad(x)
    slope = _generator_slope(loss, generator_loss, disc(x))
    return slope[:, None] * disc.grad(x)


@dataclass
class FlowResult:
    """Particle positions over the flow: ``trajectory`` (T, n, d) at rounds ``steps`` (T,)."""

    trajectory: Tensor
    steps: Tensor

    @property
    def final(self) -> Tensor:
        """The particles after the last round (n, d)."""
        return self.trajectory[-1]


def particle_flow(
    kernel: Kernel,
    real: Tensor,
    particles: Tensor,
    *,
    loss: str = "ipm",
    n_steps: int = 100,
    step_size: float = 0.1,
    disc_time: float = 1.0,
    generator_loss: str = "non_saturating",
    f0: Function | None = None,
    record_every: int = 1,
    method: str = "auto",
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> FlowResult:
    """Move ``particles`` (n, d) toward ``real`` (n_r, d) for ``n_steps`` rounds of
    x ← x + step_size · v(x), v from a discriminator retrained from f0 for ``disc_time`` on
    γ = real ∪ x every round (module doc). Records every ``record_every`` rounds, plus the start
    and the end. method, rtol, atol: as in :func:`train_discriminator` (the ODE of the "gan" loss).
    """
    _check_sets(real, particles)
    check_choice("loss", loss, LOSSES)
    check_choice("generator_loss", generator_loss, GENERATOR_LOSSES)
    check_int("n_steps", n_steps, minimum=0)
    check_int("record_every", record_every, minimum=1)
    check_positive("step_size", _time("step_size", step_size))
    _time("disc_time", disc_time)
    x = particles.detach().clone()
    frames, steps = [x.clone()], [0]
    for step in range(1, n_steps + 1):
        disc = train_discriminator(kernel, real, x, disc_time, loss=loss, f0=f0, method=method, rtol=rtol, atol=atol)
        x = x + step_size * generator_velocity(disc, x, loss=loss, generator_loss=generator_loss).detach()
        if step % record_every == 0 or step == n_steps:
            frames.append(x.clone())
            steps.append(step)
    return FlowResult(torch.stack(frames), torch.tensor(steps))

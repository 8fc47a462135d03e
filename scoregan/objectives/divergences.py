"""f-divergences with everything an f-GAN and its particle flow need, written stably in log r.

    D_f(p_d ‖ p_g) = ∫ p_g f(p_d / p_g),   f convex on (0, ∞), f(1) = 0,   r = p_d / p_g

Variational form: D_f = sup_T E_{p_d}[T] − E_{p_g}[f*(T)], attained at T* = f'(r).

Conventions of this library (docs/theory.md):

- The discriminator's raw output v estimates log r. Its output activation is
  ``T = activation(v) = f'(e^v)``, so the optimal raw output is exactly v* = log r, and
  ``log_ratio(T) = log (f')⁻¹(T)`` decodes it back. activation(v) always lies in ``t_domain``, the open
  interval f'((0, ∞)), on which f* is finite.
- ``weight(log_r)`` is w_f(r) = r² f''(r): the f-GAN particle velocity is w_f(r) (s_d − s_g).
- Nowozin et al. (f-GAN, 2016) feed an unconstrained raw output through a per-divergence activation
  g_f. Ours differs where their raw output is not log r: KL (theirs v, ours v + 1), Pearson (theirs
  v, ours 2(e^v − 1)), Neyman and Hellinger (theirs 1 − e^v; ours 1 − e^{−2v} and 1 − e^{−v/2}), JS
  (their f is twice ours). Reverse KL (−e^{−v}) and SGAN (−softplus(−v) = log sigmoid(v)) coincide.

Every method that takes log r (``activation``, ``weight``, ``f_star_of_activation``) is finite for
log r in [−30, 30], in float32 and float64, for every named divergence; for the α-family in float32
when −1.9 ≤ α ≤ 2.9 (its powers e^{α v} and e^{(α−1) v} overflow float32 once |α v| or |(α − 1) v|
passes ≈ 88; float64 holds to ≈ 709).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scoregan._checks import check_choice

__all__ = ["DIVERGENCES", "Divergence", "divergence", "as_divergence", "log1mexp", "softplus", "expm1"]

LOG2 = math.log(2.0)
LOG4 = math.log(4.0)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x), exact for every x and with the exact gradient sigmoid(x) (no threshold cut)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def expm1(x: torch.Tensor) -> torch.Tensor:
    """e^x − 1 with torch.expm1's value and the gradient e^x computed directly.

    (torch differentiates expm1 as result + 1, which loses all relative precision for x << 0.)
    """
    e = torch.exp(x)
    return (e - 1) + (torch.expm1(x) - (e - 1)).detach()


def log1mexp(t: torch.Tensor) -> torch.Tensor:
    """log(1 − e^t) for t < 0, accurate for t near 0 and for t very negative."""
    return torch.where(t > -LOG2, torch.log(-expm1(t)), torch.log1p(-torch.exp(t)))


class Divergence:
    """One f-divergence. Subclasses define f and its derived maps; all act elementwise.

    Methods taking r or t accept any tensor shape and return the same shape.
    """

    name: str = ""
    #: the open interval f'((0, ∞)) (lower, upper): where activations and f* live
    t_domain: tuple[float, float] = (-math.inf, math.inf)

    def f(self, r: torch.Tensor) -> torch.Tensor:
        """f(r), r > 0."""
        raise NotImplementedError

    def f_prime(self, r: torch.Tensor) -> torch.Tensor:
        """f'(r), r > 0."""
        raise NotImplementedError

    def f_second(self, r: torch.Tensor) -> torch.Tensor:
        """f''(r), r > 0."""
        raise NotImplementedError

    def f_star(self, t: torch.Tensor) -> torch.Tensor:
        """Convex conjugate f*(t) = sup_{r >= 0} (t r − f(r)) (+inf where unbounded)."""
        raise NotImplementedError

    def log_ratio(self, t: torch.Tensor) -> torch.Tensor:
        """log (f')⁻¹(t) for t in ``t_domain``: the log r that a discriminator output T encodes."""
        raise NotImplementedError

    def activation(self, v: torch.Tensor) -> torch.Tensor:
        """T = f'(e^v): raw discriminator output v (≈ log r) to the f-GAN output, in ``t_domain``."""
        raise NotImplementedError

    def f_star_of_activation(self, v: torch.Tensor) -> torch.Tensor:
        """f*(activation(v)) = r f'(r) − f(r) at r = e^v, in closed form (no cancellation)."""
        raise NotImplementedError

    def weight(self, log_r: torch.Tensor) -> torch.Tensor:
        """w_f(r) = r² f''(r), written in u = log r."""
        raise NotImplementedError

    def f_prime_inv(self, t: torch.Tensor) -> torch.Tensor:
        """(f')⁻¹(t) = r for t in ``t_domain``."""
        return torch.exp(self.log_ratio(t))

    def __repr__(self) -> str:
        return f"divergence({self.name!r})"


class KL(Divergence):
    """Forward KL(p_d ‖ p_g): f(r) = r log r;  f' = log r + 1;  f* (t) = e^{t−1};  w = r."""

    name = "kl"

    def f(self, r):
        return torch.xlogy(r, r)

    def f_prime(self, r):
        return torch.log(r) + 1

    def f_second(self, r):
        return 1 / r

    def f_star(self, t):
        return torch.exp(t - 1)

    def log_ratio(self, t):
        return t - 1

    def activation(self, v):
        return v + 1

    def f_star_of_activation(self, v):
        return torch.exp(v)

    def weight(self, log_r):
        return torch.exp(log_r)


class ReverseKL(Divergence):
    """Reverse KL(p_g ‖ p_d): f(r) = −log r;  f' = −1/r;  f*(t) = −1 − log(−t), t < 0;  w = 1."""

    name = "reverse_kl"
    t_domain = (-math.inf, 0.0)

    def f(self, r):
        return -torch.log(r)

    def f_prime(self, r):
        return -1 / r

    def f_second(self, r):
        return r**-2

    def f_star(self, t):
        return torch.where(t < 0, -1 - torch.log(-t.clamp_max(0)), torch.full_like(t, math.inf))

    def log_ratio(self, t):
        return -torch.log(-t)

    def activation(self, v):
        return -torch.exp(-v)

    def f_star_of_activation(self, v):
        return v - 1

    def weight(self, log_r):
        return torch.ones_like(log_r)


class Pearson(Divergence):
    """Pearson χ²: f(r) = (r − 1)²;  f' = 2(r − 1);  w = 2r².

    f*(t) = t²/4 + t for t >= −2 and −1 below (the conjugate over r >= 0; Nowozin et al. use
    t²/4 + t everywhere, which agrees on t_domain = (−2, ∞)).
    """

    name = "pearson"
    t_domain = (-2.0, math.inf)

    def f(self, r):
        return (r - 1) ** 2

    def f_prime(self, r):
        return 2 * (r - 1)

    def f_second(self, r):
        return 2 * torch.ones_like(r)

    def f_star(self, t):
        return torch.where(t >= -2, t**2 / 4 + t, -torch.ones_like(t))

    def log_ratio(self, t):
        return torch.log1p(t / 2)

    def activation(self, v):
        return 2 * expm1(v)

    def f_star_of_activation(self, v):
        return expm1(2 * v)

    def weight(self, log_r):
        return 2 * torch.exp(2 * log_r)


class Neyman(Divergence):
    """Neyman χ²: f(r) = (1 − r)²/r;  f' = 1 − 1/r²;  f*(t) = 2 − 2√(1 − t), t < 1;  w = 2/r."""

    name = "neyman"
    t_domain = (-math.inf, 1.0)

    def f(self, r):
        return (1 - r) ** 2 / r

    def f_prime(self, r):
        return 1 - r**-2

    def f_second(self, r):
        return 2 * r**-3

    def f_star(self, t):
        return torch.where(t <= 1, 2 - 2 * torch.sqrt((1 - t).clamp_min(0)), torch.full_like(t, math.inf))

    def log_ratio(self, t):
        return -0.5 * torch.log1p(-t)

    def activation(self, v):
        return -expm1(-2 * v)

    def f_star_of_activation(self, v):
        return -2 * expm1(-v)

    def weight(self, log_r):
        return 2 * torch.exp(-log_r)


class Hellinger(Divergence):
    """Squared Hellinger: f(r) = (√r − 1)²;  f' = 1 − 1/√r;  f*(t) = t/(1 − t), t < 1;  w = √r / 2."""

    name = "hellinger"
    t_domain = (-math.inf, 1.0)

    def f(self, r):
        return (torch.sqrt(r) - 1) ** 2

    def f_prime(self, r):
        return 1 - r**-0.5

    def f_second(self, r):
        return 0.5 * r**-1.5

    def f_star(self, t):
        return torch.where(t < 1, t / (1 - t), torch.full_like(t, math.inf))

    def log_ratio(self, t):
        return -2 * torch.log1p(-t)

    def activation(self, v):
        return -expm1(-v / 2)

    def f_star_of_activation(self, v):
        return expm1(v / 2)

    def weight(self, log_r):
        return 0.5 * torch.exp(log_r / 2)


class SGAN(Divergence):
    """The original GAN's divergence, 2·JS(p_d, p_g):

    f(r) = r log r − (1 + r) log(1 + r) + log 4;  f' = log(r / (1 + r));  f*(t) = −log(1 − e^t) − log 4,
    t < 0;  w = r / (1 + r). activation(v) = −softplus(−v) = log sigmoid(v), as in Nowozin et al.;
    the + log 4 makes f(1) = 0 (their f omits it, so their D_f is 2·JS − log 4 and their f* has no
    − log 4).
    """

    name = "sgan"
    t_domain = (-math.inf, 0.0)

    def f(self, r):
        return torch.xlogy(r, r) - torch.xlogy(1 + r, 1 + r) + LOG4

    def f_prime(self, r):
        return torch.log(r) - torch.log1p(r)

    def f_second(self, r):
        return 1 / (r * (1 + r))

    def f_star(self, t):
        return torch.where(t < 0, -log1mexp(t.clamp_max(0)) - LOG4, torch.full_like(t, math.inf))

    def log_ratio(self, t):
        return t - log1mexp(t)

    def activation(self, v):
        return -softplus(-v)

    def f_star_of_activation(self, v):
        return softplus(v) - LOG4

    def weight(self, log_r):
        return torch.sigmoid(log_r)


class JS(Divergence):
    """Jensen–Shannon, JS = ½ KL(p_d ‖ m) + ½ KL(p_g ‖ m), m = (p_d + p_g)/2, in nats (<= log 2):

    f(r) = ½ [r log r − (1 + r) log((1 + r)/2)] = ½ f_sgan(r) + ½ (r − 1) log 2, so D_js = ½ D_sgan;
    f' = ½ log(2r / (1 + r));  f*(t) = −½ log(2 − e^{2t}), t < ½ log 2;  w = ½ · r / (1 + r).
    activation(v) = ½ (log 2 − softplus(−v)), half of Nowozin et al.'s (their f is 2·ours).
    """

    name = "js"
    t_domain = (-math.inf, 0.5 * LOG2)

    def f(self, r):
        return 0.5 * (torch.xlogy(r, r) - torch.xlogy(1 + r, (1 + r) / 2))

    def f_prime(self, r):
        return 0.5 * (LOG2 + torch.log(r) - torch.log1p(r))

    def f_second(self, r):
        return 0.5 / (r * (1 + r))

    def f_star(self, t):
        # 2 − e^{2t} = 2 (1 − e^{2t − log 2})
        s = (2 * t - LOG2).clamp_max(0)
        return torch.where(2 * t < LOG2, -0.5 * (LOG2 + log1mexp(s)), torch.full_like(t, math.inf))

    def log_ratio(self, t):
        s = 2 * t - LOG2  # = log(2r/(1+r)) − log 2 = log sigmoid(log r)
        return s - log1mexp(s)

    def activation(self, v):
        return 0.5 * (LOG2 - softplus(-v))

    def f_star_of_activation(self, v):
        return 0.5 * (softplus(v) - LOG2)

    def weight(self, log_r):
        return 0.5 * torch.sigmoid(log_r)


class Alpha(Divergence):
    """The α-family (Amari): f(r) = (r^α − 1 − α (r − 1)) / (α (α − 1)), α ∉ {0, 1};  f'' = r^{α−2}.

    f' = (r^{α−1} − 1)/(α − 1);  f*(t) = ((1 + (α − 1) t)^{α/(α−1)} − 1)/α where 1 + (α − 1) t > 0
    (−1/α beyond, for α > 1; +inf beyond, for α < 1; the limit −1/α or +inf on the edge);  w = r^α. α → 1 is KL, α → 0 reverse KL
    (up to affine terms, which change nothing); α = 2 is Pearson/2, α = −1 Neyman/2, α = ½ is
    2·Hellinger.
    """

    name = "alpha"

    def __init__(self, alpha: float) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite real number, got {alpha!r}")
        if alpha in (0, 1):
            raise ValueError(f"alpha={alpha!r} is a limit of the family; use divergence('reverse_kl') for 0 and divergence('kl') for 1")
        self.alpha = float(alpha)
        b = self.alpha - 1
        self.t_domain = (-1 / b, math.inf) if b > 0 else (-math.inf, -1 / b)

    def f(self, r):
        a = self.alpha
        return (r**a - 1 - a * (r - 1)) / (a * (a - 1))

    def f_prime(self, r):
        a = self.alpha
        return (r ** (a - 1) - 1) / (a - 1)

    def f_second(self, r):
        return r ** (self.alpha - 2)

    def f_star(self, t):
        a, b = self.alpha, self.alpha - 1
        y = 1 + b * t
        inside = y > 0
        val = expm1((a / b) * torch.log(torch.where(inside, y, torch.ones_like(y)))) / a
        # the edge y = 0 is the limit r → 0 (α > 1) or r → ∞ (α < 0): −1/α; it is +inf for 0 < α < 1
        edge = torch.full_like(t, -1 / a if a / b > 0 else math.inf)
        beyond = torch.full_like(t, -1 / a if b > 0 else math.inf)
        return torch.where(inside, val, torch.where(y == 0, edge, beyond))

    def log_ratio(self, t):
        b = self.alpha - 1
        return torch.log1p(b * t) / b

    def activation(self, v):
        b = self.alpha - 1
        return expm1(b * v) / b

    def f_star_of_activation(self, v):
        return expm1(self.alpha * v) / self.alpha

    def weight(self, log_r):
        return torch.exp(self.alpha * log_r)

    def __repr__(self) -> str:
        return f"divergence('alpha', alpha={self.alpha!r})"


_REGISTRY: dict[str, type[Divergence]] = {
    cls.name: cls for cls in (KL, ReverseKL, Pearson, Neyman, Hellinger, JS, SGAN, Alpha)
}

#: names accepted by :func:`divergence` ("alpha" needs ``alpha=...``)
DIVERGENCES: tuple[str, ...] = tuple(_REGISTRY)


def divergence(name: str, **params: Any) -> Divergence:
    """The f-divergence called ``name`` (one of DIVERGENCES); ``divergence("alpha", alpha=0.5)``."""
    check_choice("name", name, DIVERGENCES)
    if name == "alpha":
        if set(params) != {"alpha"}:
            raise ValueError(f"divergence('alpha') takes exactly the parameter alpha (e.g. alpha=0.5), got {sorted(params)}")
        return Alpha(params["alpha"])
    if params:
        raise ValueError(f"divergence({name!r}) takes no parameters, got {sorted(params)}")
    return _REGISTRY[name]()


def as_divergence(value: str | Divergence, name: str = "divergence") -> Divergence:
    """``value`` if it is a Divergence, else ``divergence(value)``; errors name the argument ``name``."""
    if isinstance(value, Divergence):
        return value
    check_choice(name, value, DIVERGENCES)
    return divergence(value)

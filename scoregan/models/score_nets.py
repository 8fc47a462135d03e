"""Conditional networks: noise-level score networks s(x, σ), velocity fields v(x, t), ratio networks.

Each is an MLP fed the input x (N, d) concatenated with an embedding of a scalar condition c
(N,) — log σ for noise-conditional networks, t for time-conditional ones:

    ``"raw"``         e(c) = c                                              (N, 1)
    ``"sinusoidal"``  e(c) = [sin(ω_1 c), …, sin(ω_K c), cos(ω_1 c), …, cos(ω_K c)]   (N, 2K),
                      ω_k geometric from ``min_freq`` to ``max_freq``

A score network is parametrised as s(x, σ) = F(x, log σ) / σ (Song & Ermon 2019): the network
output F is then of order one at every noise level, and the denoising score-matching loss below
weights every level alike (σ² ‖s − target‖²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from scoregan._checks import check_choice, check_int, check_positive
from scoregan.models.mlp import MLP

EMBEDDINGS: tuple[str, ...] = ("raw", "sinusoidal")

__all__ = [
    "EMBEDDINGS",
    "SinusoidalEmbedding",
    "ConditionalMLP",
    "ScoreNet",
    "VelocityNet",
    "RatioNet",
    "dsm_loss",
]


def _condition(c: torch.Tensor | float, n: int, like: torch.Tensor) -> torch.Tensor:
    """A scalar or (N,) / (N, 1) condition as an (N,) tensor in ``like``'s dtype and device."""
    c = torch.as_tensor(c, dtype=like.dtype, device=like.device)
    if c.ndim == 2 and c.shape[1] == 1:
        c = c[:, 0]
    if c.ndim == 0:
        return c.expand(n)
    if c.ndim != 1 or c.shape[0] != n:
        raise ValueError(f"the condition must be a scalar or have shape ({n},), got {tuple(c.shape)}")
    return c


class SinusoidalEmbedding(nn.Module):
    """c (N,) ↦ [sin(ω c), cos(ω c)] (N, dim), ``dim // 2`` frequencies ω geometric in [min_freq, max_freq]."""

    def __init__(self, dim: int = 16, min_freq: float = 1.0, max_freq: float = 64.0):
        super().__init__()
        check_int("dim", dim, minimum=2)
        if dim % 2:
            raise ValueError(f"dim must be even for a sinusoidal embedding (sin and cos pairs), got {dim}")
        check_positive("min_freq", min_freq)
        check_positive("max_freq", max_freq)
        if max_freq < min_freq:
            raise ValueError(f"max_freq={max_freq} must be >= min_freq={min_freq}")
        k = dim // 2
        freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), k, dtype=torch.float64))
        self.register_buffer("freqs", freqs.to(torch.get_default_dtype()))
        self.dim = dim

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        ang = c[:, None] * self.freqs.to(c.dtype)[None, :]
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class ConditionalMLP(nn.Module):
    """(x (N, in_dim), c (N,) or scalar) ↦ MLP([x, φ(x), e(c)]) (N, out_dim).

    φ(x) = [sin(2π x Bᵀ), cos(2π x Bᵀ)] (N, 2F) are optional random Fourier features of the input
    (``fourier`` = F > 0; B (F, in_dim) ~ N(0, fourier_scale²), fixed at construction and kept as a
    buffer): they let a small MLP represent structure much finer than the data's extent (Tancik et al.
    2020), e.g. the score of sharp mixture modes at small noise levels.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (128, 128, 128), activation: str = "silu",
                 embedding: str = "sinusoidal", embed_dim: int = 16, min_freq: float = 1.0, max_freq: float = 64.0,
                 fourier: int = 0, fourier_scale: float = 1.0):
        super().__init__()
        check_choice("embedding", embedding, EMBEDDINGS)
        check_int("in_dim", in_dim, minimum=1)
        check_int("fourier", fourier, minimum=0)
        check_positive("fourier_scale", fourier_scale)
        if embedding == "raw":
            self.embed: nn.Module = nn.Identity()
            e_dim = 1
        else:
            self.embed = SinusoidalEmbedding(embed_dim, min_freq, max_freq)
            e_dim = embed_dim
        self.in_dim, self.out_dim = in_dim, out_dim
        self.fourier = fourier
        if fourier:
            self.register_buffer("fourier_matrix", fourier_scale * torch.randn(fourier, in_dim))
        self.body = MLP(in_dim + 2 * fourier + e_dim, out_dim, hidden=hidden, activation=activation)

    def forward(self, x: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"{type(self).__name__} expects x of shape (N, {self.in_dim}), got {tuple(x.shape)}")
        c = _condition(c, x.shape[0], x)
        e = self.embed(c)
        if e.ndim == 1:
            e = e[:, None]
        parts = [x, e]
        if self.fourier:
            proj = (2 * math.pi) * x @ self.fourier_matrix.T
            parts = [x, torch.sin(proj), torch.cos(proj), e]
        return self.body(torch.cat(parts, dim=1))


class ScoreNet(nn.Module):
    """Noise-conditional score s(x, σ) ≈ ∇ₓ log (p * N(0, σ²I))(x): (N, d), σ (N,) or scalar ↦ (N, d).

    s(x, σ) = F(x, log σ) / σ with F a :class:`ConditionalMLP`.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128, 128), activation: str = "silu",
                 embedding: str = "sinusoidal", embed_dim: int = 16, fourier: int = 0, fourier_scale: float = 1.0):
        super().__init__()
        self.dim = dim
        self.net = ConditionalMLP(dim, dim, hidden, activation, embedding, embed_dim, min_freq=0.25, max_freq=8.0,
                                  fourier=fourier, fourier_scale=fourier_scale)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sig = _condition(sigma, x.shape[0], x)
        return self.net(x, torch.log(sig)) / sig[:, None]


class VelocityNet(nn.Module):
    """Time-dependent velocity field v(x, t): x (N, d), t (N,) or scalar ↦ (N, d)."""

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "silu",
                 embedding: str = "sinusoidal", embed_dim: int = 16):
        super().__init__()
        self.dim = dim
        self.net = ConditionalMLP(dim, dim, hidden, activation, embedding, embed_dim, min_freq=1.0, max_freq=64.0)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.net(x, t)

    def ode_func(self):
        """The field in torchdiffeq's argument order, f(t, x) with t a 0-d tensor."""
        return lambda t, x: self(x, t)


class RatioNet(nn.Module):
    """Noise-conditional log density ratio: (x (N, d), σ) ↦ logit (N,), ≈ log (p_d^σ / p_g^σ)(x) at the
    optimum of the logistic loss."""

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128, 128), activation: str = "leaky_relu",
                 embedding: str = "sinusoidal", embed_dim: int = 16):
        super().__init__()
        self.dim = dim
        self.net = ConditionalMLP(dim, 1, hidden, activation, embedding, embed_dim, min_freq=0.25, max_freq=8.0)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = _condition(sigma, x.shape[0], x)
        return self.net(x, torch.log(sigma))[:, 0]


def dsm_loss(score: nn.Module, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Denoising score matching, σ²-weighted: mean_i ‖σ_i s(x_i + σ_i ε_i, σ_i) + ε_i‖² (a scalar).

    x, noise ε ~ N(0, I): (N, d); sigma: (N,). Minimised by s(·, σ) = ∇ log (p * N(0, σ²I)) (Vincent 2011).
    """
    sigma = _condition(sigma, x.shape[0], x)
    xt = x + sigma[:, None] * noise
    return (sigma[:, None] * score(xt, sigma) + noise).pow(2).sum(dim=1).mean()

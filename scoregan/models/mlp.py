"""Fully connected networks: the generator z ↦ x and the discriminator x ↦ raw output."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from scoregan._checks import check_choice, check_int

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),  # type: ignore[dict-item]
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def make_activation(name: str) -> nn.Module:
    check_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """x (N, in_dim) ↦ (N, out_dim) through Linear-activation blocks of widths ``hidden``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256, 256),
                 activation: str = "relu", spectral_norm: bool = False):
        super().__init__()
        check_int("in_dim", in_dim, minimum=1)
        check_int("out_dim", out_dim, minimum=1)
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h, minimum=1)
        self.in_dim, self.out_dim = in_dim, out_dim
        widths = [in_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            lin = nn.Linear(a, b)
            layers.append(nn.utils.parametrizations.spectral_norm(lin) if spectral_norm else lin)
            if i < len(widths) - 2:
                layers.append(make_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"{type(self).__name__} expects input of shape (N, {self.in_dim}), got {tuple(x.shape)}")
        return self.net(x)


class Generator(MLP):
    """G: z (N, latent_dim) ↦ x (N, data_dim)."""

    def __init__(self, latent_dim: int, data_dim: int, **kw):
        super().__init__(latent_dim, data_dim, **kw)
        self.latent_dim, self.data_dim = latent_dim, data_dim


class Discriminator(MLP):
    """D: x (N, data_dim) ↦ raw output (N,): the logit (an estimate of log p_d/p_g) for GAN losses,
    the critic value for IPM losses."""

    def __init__(self, data_dim: int, **kw):
        super().__init__(data_dim, 1, **kw)
        self.data_dim = data_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)

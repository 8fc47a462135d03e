"""DCGAN-style conv networks for images (Radford et al. 2016), on the library's flat particles.

Particles are flat: an image network takes x as (N, d), d = C·H·W (or as (N, C, H, W)), views it
as (N, C, H, W) inside and answers in the input's layout. ``image_shape`` is (C, H, W).

Generator  z (N, k) ↦ Linear ↦ (N, c_0, H/2^u, W/2^u) ↦ u × [ConvT(4, 2, 1), BN, ReLU] ↦ conv3×3 ↦ tanh,
           the start size H/2^u the smallest one ≥ 4 reachable by halving (8 → 4, 28 → 7, 32 → 4).
Discriminator  x ↦ u × [Conv(4, 2, 1), LeakyReLU(0.2)] (then [Conv(3, 1, 1), LeakyReLU] up to two conv
           layers for small images: 8×8 has u = 1) ↦ flatten ↦ Linear: no batch statistics, so
           D(x_i) depends on x_i alone and per-sample input gradients ∇ₓD(x_i) are well defined.
``width`` is the channel count of the widest conv layer; each layer further from the 4×4 end has half.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from scoregan._checks import check_choice, check_int

OUTPUTS: tuple[str, ...] = ("tanh", "linear")

__all__ = ["OUTPUTS", "DCGANDiscriminator", "DCGANGenerator", "as_images", "check_image_shape", "from_images",
           "maybe_sn", "num_halvings"]


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """``image_shape`` as a (C, H, W) tuple of positive ints, else a ValueError naming it."""
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"image_shape must be (C, H, W) with positive integers, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def as_images(x: torch.Tensor, image_shape: tuple[int, int, int], who: str = "network") -> tuple[torch.Tensor, bool]:
    """x (N, C·H·W) or (N, C, H, W) ↦ (the (N, C, H, W) view, whether x was flat)."""
    c, h, w = image_shape
    if x.ndim == 2 and x.shape[1] == c * h * w:
        return x.reshape(x.shape[0], c, h, w), True
    if x.ndim == 4 and tuple(x.shape[1:]) == (c, h, w):
        return x, False
    raise ValueError(f"{who} expects x of shape (N, {c * h * w}) or (N, {c}, {h}, {w}), got {tuple(x.shape)}")


def from_images(y: torch.Tensor, flat: bool) -> torch.Tensor:
    """(N, C', H, W) ↦ (N, C'·H·W) when ``flat``, else unchanged."""
    return y.reshape(y.shape[0], -1) if flat else y


def num_halvings(h: int, w: int, minimum: int = 4) -> int:
    """The most halvings u with H/2^u and W/2^u integers ≥ ``minimum`` (0 if none)."""
    u = 0
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= minimum and w // 2 >= minimum:
        h, w, u = h // 2, w // 2, u + 1
    return u


def maybe_sn(layer: nn.Module, on: bool) -> nn.Module:
    """``layer`` wrapped in spectral normalisation W / σ_max(W.flatten(1)) when ``on``."""
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


def _channels(width: int, n: int) -> list[int]:
    """n channel counts, the last ``width`` and each earlier one half the next (at least 1)."""
    return [max(width >> (n - 1 - i), 1) for i in range(n)]


class ImageGenerator(nn.Module):
    """What the image generators share: checked arguments, the start size, flat output.

    Subclasses build ``fc`` (z ↦ the start feature map) and ``body`` (it ↦ (N, C, H, W)) and set
    ``_c0``, the start map's channels."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], width: int, output: str):
        super().__init__()
        check_int("latent_dim", latent_dim, minimum=1)
        check_int("width", width, minimum=1)
        check_choice("output", output, OUTPUTS)
        self.image_shape = check_image_shape(image_shape)
        c, h, w = self.image_shape
        self.latent_dim, self.data_dim, self.width = latent_dim, c * h * w, width
        self.halvings = num_halvings(h, w)
        self.start = (h >> self.halvings, w >> self.halvings)

    def images(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, latent_dim) ↦ (N, C, H, W)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__} expects z of shape (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self.body(self.fc(z).reshape(z.shape[0], self._c0, *self.start))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.images(z).reshape(z.shape[0], self.data_dim)


class ImageDiscriminator(nn.Module):
    """What the image discriminators share: checked arguments and x (flat or NCHW) ↦ fc(features(x)),
    (N,) for out_dim 1 else (N, out_dim). Subclasses build ``features`` (ending flat) and ``fc``."""

    def __init__(self, image_shape: Sequence[int], width: int, out_dim: int):
        super().__init__()
        check_int("width", width, minimum=1)
        check_int("out_dim", out_dim, minimum=1)
        self.image_shape = check_image_shape(image_shape)
        c, h, w = self.image_shape
        self.data_dim, self.out_dim = c * h * w, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img, _ = as_images(x, self.image_shape, type(self).__name__)
        out = self.fc(self.features(img))
        return out[:, 0] if self.out_dim == 1 else out


class DCGANGenerator(ImageGenerator):
    """G: z (N, latent_dim) ↦ x (N, C·H·W); :meth:`images` gives (N, C, H, W)."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], width: int = 64, output: str = "tanh"):
        super().__init__(latent_dim, image_shape, width, output)
        c, u = self.image_shape[0], self.halvings
        chans = list(reversed(_channels(width, u + 1)))  # widest at the start
        self.fc = nn.Linear(latent_dim, chans[0] * self.start[0] * self.start[1])
        layers: list[nn.Module] = [nn.BatchNorm2d(chans[0]), nn.ReLU()]
        for a, b in pairwise(chans):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        layers.append(nn.Conv2d(chans[-1], c, 3, 1, 1))
        if output == "tanh":
            layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)
        self._c0 = chans[0]


class DCGANDiscriminator(ImageDiscriminator):
    """D: x (N, C·H·W) or (N, C, H, W) ↦ raw output (N,) (out_dim 1) or features (N, out_dim)."""

    def __init__(self, image_shape: Sequence[int], width: int = 64, spectral_norm: bool = False, out_dim: int = 1):
        super().__init__(image_shape, width, out_dim)
        c, h, w = self.image_shape
        u = num_halvings(h, w)
        n = max(u, 2)  # small images: stride-1 3×3 convs make up at least two conv layers
        chans = _channels(width, n)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip([c, *chans[:-1]], chans)):
            conv = nn.Conv2d(a, b, 4, 2, 1) if i < u else nn.Conv2d(a, b, 3, 1, 1)
            layers += [maybe_sn(conv, spectral_norm), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers, nn.Flatten(1))
        self.fc = maybe_sn(nn.Linear(chans[-1] * math.prod((h >> u, w >> u)), out_dim), spectral_norm)

"""SNGAN-style residual conv networks for images (Miyato et al. 2018, the 32×32 ResNet pair).

Flat particles in and out as in :mod:`scoregan.models.conv` (x (N, C·H·W) or (N, C, H, W)).

Generator  z ↦ Linear ↦ (N, width, H/2^u, W/2^u) ↦ u up-blocks ↦ BN, ReLU, conv3×3 ↦ tanh, with
    up-block(x) = conv3×3(ReLU(BN(conv3×3(up(ReLU(BN(x))))))) + conv1×1(up(x)), up = nearest ×2,
    the start size the smallest one ≥ 4 reachable by halving (32 → 4 with u = 3, 28 → 7 with u = 2).
Discriminator  x ↦ optimised down block ↦ down block ↦ 2 blocks ↦ ReLU ↦ Σ_{h,w} ↦ Linear, with
    block(x) = pool(conv3×3(ReLU(conv3×3(ReLU(x))))) + pool(conv1×1(x)), pool = 2×2 average (or none);
    no normalisation layers, so D(x_i) depends on x_i alone. Spectral norm on every conv and linear layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scoregan.models.conv import ImageDiscriminator, ImageGenerator, maybe_sn

__all__ = ["ResNetDiscriminator", "ResNetGenerator"]


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2, ceil_mode=True)


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class _DownBlock(nn.Module):
    """Pre-activation block (``first``: the optimised first block, no leading ReLU, pool before the shortcut)."""

    def __init__(self, cin: int, cout: int, down: bool, sn: bool, first: bool = False):
        super().__init__()
        self.conv1 = maybe_sn(nn.Conv2d(cin, cout, 3, 1, 1), sn)
        self.conv2 = maybe_sn(nn.Conv2d(cout, cout, 3, 1, 1), sn)
        self.shortcut = maybe_sn(nn.Conv2d(cin, cout, 1), sn) if (cin != cout or down) else None
        self.down, self.first = down, first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:
            h = _pool(h)
        s = x
        if self.first:
            s = self.shortcut(_pool(x))
        elif self.shortcut is not None:
            s = self.shortcut(x)
            if self.down:
                s = _pool(s)
        return h + s


class _ReLUSumPool(nn.Module):
    """(N, C, H, W) ↦ Σ_{h,w} relu(x) (N, C): SNGAN's global sum pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).sum(dim=(2, 3))


class ResNetGenerator(ImageGenerator):
    """G: z (N, latent_dim) ↦ x (N, C·H·W); :meth:`images` gives (N, C, H, W)."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], width: int = 128, output: str = "tanh"):
        super().__init__(latent_dim, image_shape, width, output)
        c = self.image_shape[0]
        self.fc = nn.Linear(latent_dim, width * self.start[0] * self.start[1])
        body: list[nn.Module] = [*(_UpBlock(width, width) for _ in range(self.halvings)),
                                 nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, c, 3, 1, 1)]
        if output == "tanh":
            body.append(nn.Tanh())
        self.body = nn.Sequential(*body)
        self._c0 = width


class ResNetDiscriminator(ImageDiscriminator):
    """D: x (N, C·H·W) or (N, C, H, W) ↦ raw output (N,) (out_dim 1) or features (N, out_dim)."""

    def __init__(self, image_shape: Sequence[int], width: int = 128, spectral_norm: bool = True, out_dim: int = 1):
        super().__init__(image_shape, width, out_dim)
        c, sn = self.image_shape[0], spectral_norm
        self.features = nn.Sequential(
            _DownBlock(c, width, down=True, sn=sn, first=True),
            _DownBlock(width, width, down=True, sn=sn),
            _DownBlock(width, width, down=False, sn=sn),
            _DownBlock(width, width, down=False, sn=sn),
            _ReLUSumPool(),
        )
        self.fc = maybe_sn(nn.Linear(width, out_dim), sn)

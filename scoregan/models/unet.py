"""A noise-/time-conditional U-Net (Ho et al. 2020; Song & Ermon 2019) and its score, velocity and ratio heads.

Flat particles in and out as in :mod:`scoregan.models.conv`: x (N, C·H·W) or (N, C, H, W), answered
in the input's layout. The scalar condition c (N,) or scalar (log σ or t) is embedded as

    ``"sinusoidal"``  e(c) = [sin(ω c), cos(ω c)], ω geometric in [min_freq, max_freq]   (N, 2K)
    ``"fourier"``     e(c) = [sin(ω c), cos(ω c)], ω ~ N(0, fourier_scale²) fixed (a buffer)

then mapped by an MLP to (N, 4·channels). A residual block is
h = conv3×3(drop(SiLU(GN(conv3×3(SiLU(GN(x))) + Linear(SiLU(emb)))))) + skip(x); each further
resolution halves H and W by a stride-2 conv (ceil: 28 → 14 → 7 → 4), the lowest one has an optional
single-head self-attention block, and the up path concatenates the skips and upsamples (nearest, to
the skip's size) back. Group norms normalise each sample alone: no cross-sample dependence.

Heads: :class:`ScoreUNet` s(x, σ) = F(x, log σ) / σ like :class:`~scoregan.models.ScoreNet`;
:class:`VelocityUNet` v(x, t) like :class:`~scoregan.models.VelocityNet`; :class:`ConditionalDiscriminator`
(x, c) ↦ logit (N,) (the down path, global mean pooling, Linear) and :class:`RatioUNet` feeding it log σ
like :class:`~scoregan.models.RatioNet`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scoregan._checks import check_choice, check_int, check_positive
from scoregan.models.conv import as_images, check_image_shape, from_images
from scoregan.models.score_nets import SinusoidalEmbedding, _condition

UNET_EMBEDDINGS: tuple[str, ...] = ("sinusoidal", "fourier")

__all__ = ["UNET_EMBEDDINGS", "ConditionEmbedding", "ConditionalDiscriminator", "RatioUNet", "ScoreUNet", "UNet",
           "VelocityUNet"]

#: Condition frequencies of the noise-conditional heads (c = log σ), as in score_nets.py.
_NOISE_FREQS = {"min_freq": 0.25, "max_freq": 8.0, "fourier_scale": 4.0}


class ConditionEmbedding(nn.Module):
    """c (N,) ↦ MLP(e(c)) (N, out_dim), e sinusoidal (geometric ω) or random Fourier (ω ~ N(0, s²))."""

    def __init__(self, embedding: str, dim: int, out_dim: int, min_freq: float = 1.0, max_freq: float = 64.0,
                 fourier_scale: float = 16.0):
        super().__init__()
        check_choice("embedding", embedding, UNET_EMBEDDINGS)
        dim = max(dim + dim % 2, 2)
        if embedding == "sinusoidal":
            self.base: nn.Module | None = SinusoidalEmbedding(dim, min_freq, max_freq)
        else:
            check_positive("fourier_scale", fourier_scale)
            self.base = None
            self.register_buffer("freqs", fourier_scale * torch.randn(dim // 2))
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        if self.base is not None:
            e = self.base(c)
        else:
            ang = c[:, None] * self.freqs.to(c.dtype)[None, :]
            e = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
        return self.mlp(e)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(groups, cin), nn.GroupNorm(groups, cout)
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.emb = nn.Linear(emb_dim, cout)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return h + self.skip(x)


class _Attention(nn.Module):
    """x + proj(softmax(qᵀk / √C) v), single head over the H·W positions of each sample."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        a = torch.softmax(torch.einsum("ncq,nck->nqk", q, k) / math.sqrt(c), dim=-1)
        return x + self.proj(torch.einsum("nqk,nck->ncq", a, v).reshape(n, c, h, w))


class _Down(nn.Module):
    """Stride-2 3×3 conv: H ↦ ⌈H/2⌉."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 2, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)


class _Up(nn.Module):
    """Nearest upsampling to a given size, then a 3×3 conv."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


def _check_unet(channels: int, channel_mult: Sequence[int], num_res_blocks: int, groups: int,
                dropout: float) -> list[int]:
    """Validate the U-Net sizes; return the channel count of each resolution."""
    check_int("channels", channels, minimum=1)
    check_int("num_res_blocks", num_res_blocks, minimum=1)
    check_int("groups", groups, minimum=1)
    if not isinstance(channel_mult, Sequence) or len(channel_mult) == 0:
        raise ValueError(f"channel_mult must be a non-empty list of positive integers, got {channel_mult!r}")
    for i, m in enumerate(channel_mult):
        check_int(f"channel_mult[{i}]", m, minimum=1)
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    counts = [channels * m for m in channel_mult]
    bad = [c for c in [channels, *counts] if c % groups]
    if bad:
        raise ValueError(f"model.unet.groups = {groups} must divide every channel count of the U-Net "
                         f"(channels × channel_mult = {counts}, channels = {channels}); {bad} are not divisible")
    return counts


class _Encoder(nn.Module):
    """The shared front: condition embedding, input conv and the down path (keeping every skip)."""

    def __init__(self, image_shape: Sequence[int], channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 embedding: str, groups: int, dropout: float, min_freq: float, max_freq: float,
                 fourier_scale: float):
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        counts = _check_unet(channels, channel_mult, num_res_blocks, groups, dropout)
        self.emb_dim = 4 * channels
        self.embed = ConditionEmbedding(embedding, channels, self.emb_dim, min_freq, max_freq, fourier_scale)
        self.conv_in = nn.Conv2d(self.image_shape[0], channels, 3, 1, 1)
        self.blocks = nn.ModuleList()
        self.skip_channels, ch = [channels], channels
        for i, cout in enumerate(counts):
            for _ in range(num_res_blocks):
                self.blocks.append(_ResBlock(ch, cout, self.emb_dim, groups, dropout))
                ch = cout
                self.skip_channels.append(ch)
            if i < len(counts) - 1:
                self.blocks.append(_Down(ch))
                self.skip_channels.append(ch)
        self.counts, self.out_channels = counts, ch

    def forward(self, img: torch.Tensor, c: torch.Tensor | float) -> tuple[torch.Tensor, list[torch.Tensor],
                                                                          torch.Tensor]:
        """(N, C, H, W), c ↦ (lowest-resolution features, skips, embedding (N, 4·channels))."""
        emb = self.embed(_condition(c, img.shape[0], img))
        h = self.conv_in(img)
        skips = [h]
        for b in self.blocks:
            h = b(h, emb)
            skips.append(h)
        return h, skips, emb


class UNet(nn.Module):
    """F: (x (N, C·H·W) or (N, C, H, W), c (N,) or scalar) ↦ (N, C'·H·W) or (N, C', H, W), C' = out_channels."""

    def __init__(self, image_shape: Sequence[int], out_channels: int | None = None, channels: int = 32,
                 channel_mult: Sequence[int] = (1, 2), num_res_blocks: int = 1, attention: bool = True,
                 embedding: str = "sinusoidal", groups: int = 8, dropout: float = 0.0, min_freq: float = 1.0,
                 max_freq: float = 64.0, fourier_scale: float = 16.0):
        super().__init__()
        self.encoder = _Encoder(image_shape, channels, channel_mult, num_res_blocks, embedding, groups, dropout,
                                min_freq, max_freq, fourier_scale)
        self.image_shape = self.encoder.image_shape
        self.out_channels = self.image_shape[0] if out_channels is None else check_int("out_channels", out_channels,
                                                                                       minimum=1)
        ch, emb_dim = self.encoder.out_channels, self.encoder.emb_dim
        mid: list[nn.Module] = [_ResBlock(ch, ch, emb_dim, groups, dropout)]
        if attention:
            mid.append(_Attention(ch, groups))
        mid.append(_ResBlock(ch, ch, emb_dim, groups, dropout))
        self.mid = nn.ModuleList(mid)
        skips = list(self.encoder.skip_channels)
        self.ups = nn.ModuleList()
        counts = self.encoder.counts
        for i in reversed(range(len(counts))):
            for _ in range(num_res_blocks + 1):
                self.ups.append(_ResBlock(ch + skips.pop(), counts[i], emb_dim, groups, dropout))
                ch = counts[i]
            if i > 0:
                self.ups.append(_Up(ch))
        self.out = nn.Sequential(nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, self.out_channels, 3, 1, 1))

    def forward(self, x: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
        img, flat = as_images(x, self.image_shape, type(self).__name__)
        h, skips, emb = self.encoder(img, c)
        for b in self.mid:
            h = b(h, emb)
        for b in self.ups:
            h = b(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(b, _ResBlock) else b(h, skips[-1].shape[-2:])
        return from_images(self.out(h), flat)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) ↦ shaped to broadcast over ``like``'s non-batch dimensions."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class ScoreUNet(nn.Module):
    """Noise-conditional score s(x, σ) = F(x, log σ) / σ, F a :class:`UNet`: x (N, d) ↦ (N, d) (or NCHW ↦ NCHW)."""

    def __init__(self, image_shape: Sequence[int], **unet_kw):
        super().__init__()
        self.net = UNet(image_shape, **{**_NOISE_FREQS, **unet_kw})
        self.image_shape = self.net.image_shape
        self.dim = math.prod(self.image_shape)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sig = _condition(sigma, x.shape[0], x)
        return self.net(x, torch.log(sig)) / _per_sample(sig, x)


class VelocityUNet(nn.Module):
    """Time-dependent velocity field v(x, t): x (N, d), t (N,) or scalar ↦ (N, d) (or NCHW ↦ NCHW)."""

    def __init__(self, image_shape: Sequence[int], **unet_kw):
        super().__init__()
        self.net = UNet(image_shape, **unet_kw)
        self.image_shape = self.net.image_shape
        self.dim = math.prod(self.image_shape)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.net(x, t)

    def ode_func(self):
        """The field in torchdiffeq's argument order, f(t, x) with t a 0-d tensor."""
        return lambda t, x: self(x, t)


class ConditionalDiscriminator(nn.Module):
    """D: (x (N, C·H·W) or (N, C, H, W), c (N,) or scalar) ↦ logit (N,): the U-Net's down path, a middle
    block (with self-attention if ``attention``), GN, SiLU, mean over H·W, Linear. Per-sample (no batch
    statistics), so ∇ₓD(x_i, c_i) is well defined."""

    def __init__(self, image_shape: Sequence[int], channels: int = 32, channel_mult: Sequence[int] = (1, 2),
                 num_res_blocks: int = 1, embedding: str = "sinusoidal", groups: int = 8, attention: bool = False,
                 dropout: float = 0.0, min_freq: float = 1.0, max_freq: float = 64.0, fourier_scale: float = 16.0):
        super().__init__()
        self.encoder = _Encoder(image_shape, channels, channel_mult, num_res_blocks, embedding, groups, dropout,
                                min_freq, max_freq, fourier_scale)
        self.image_shape = self.encoder.image_shape
        self.dim = math.prod(self.image_shape)
        ch = self.encoder.out_channels
        mid: list[nn.Module] = [_ResBlock(ch, ch, self.encoder.emb_dim, groups, dropout)]
        if attention:
            mid.append(_Attention(ch, groups))
        self.mid = nn.ModuleList(mid)
        self.norm = nn.GroupNorm(groups, ch)
        self.fc = nn.Linear(ch, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
        img, _ = as_images(x, self.image_shape, type(self).__name__)
        h, _, emb = self.encoder(img, c)
        for b in self.mid:
            h = b(h, emb)
        return self.fc(F.silu(self.norm(h)).mean(dim=(2, 3)))[:, 0]


class RatioUNet(ConditionalDiscriminator):
    """Noise-conditional log density ratio: (x (N, d), σ) ↦ logit (N,) = D(x, log σ), like
    :class:`~scoregan.models.RatioNet`. Accepts the :class:`UNet` keywords (``out_channels`` is ignored)."""

    def __init__(self, image_shape: Sequence[int], **unet_kw):
        unet_kw.pop("out_channels", None)
        super().__init__(image_shape, **{**_NOISE_FREQS, **unet_kw})

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sig = _condition(sigma, x.shape[0], x)
        return super().forward(x, torch.log(sig))

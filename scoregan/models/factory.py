"""Config ↦ network: the one place every trainer builds its generator, discriminator, score, velocity
and ratio networks.

``model.family`` (mlp | dcgan | resnet) picks the generator/discriminator pair; ``model.conditional``
(mlp | unet) the noise-/time-conditional networks. Conv and U-Net families need an image data set:
``image_shape`` (C, H, W) (an (H, W) shape means one channel) with C·H·W = ``data_dim``. Every network
takes and returns flat particles (N, d). The trainer's ``embedding``/``embed_dim``/``fourier`` knobs
apply to the mlp networks; the U-Net reads ``model.unet``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import nn

from scoregan._checks import check_choice
from scoregan.models.conv import DCGANDiscriminator, DCGANGenerator
from scoregan.models.mlp import MLP, Discriminator, Generator
from scoregan.models.resnet import ResNetDiscriminator, ResNetGenerator
from scoregan.models.score_nets import RatioNet, ScoreNet, VelocityNet
from scoregan.models.unet import RatioUNet, ScoreUNet, VelocityUNet
from scoregan.schema_models import ModelConfig, NetConfig, UNetConfig

__all__ = ["make_discriminator", "make_generator", "make_ratio_net", "make_score_net", "make_velocity_net",
           "unet_kwargs"]

ImageShape = Sequence[int] | None

#: The conv families of ``model.family`` (besides mlp).
FAMILIES: tuple[str, ...] = ("dcgan", "resnet")


def _image_shape(field: str, value: str, data_dim: int, image_shape: ImageShape) -> tuple[int, int, int]:
    """The (C, H, W) of an image data set for a conv/U-Net family, else a ValueError naming ``field``."""
    if image_shape is None:
        raise ValueError(f"{field} = {value!r} needs an image data set (data.layout: image or an image data set); "
                         f"the data are vectors of dimension {data_dim}: use {field} = 'mlp'")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or math.prod(shape) != data_dim:
        raise ValueError(f"{field} = {value!r}: the image shape {tuple(image_shape)} does not hold the data "
                         f"dimension {data_dim}")
    return shape  # type: ignore[return-value]


def unet_kwargs(u: UNetConfig) -> dict:
    """The :class:`~scoregan.models.unet.UNet` keywords of a ``model.unet`` section."""
    return {"channels": u.channels, "channel_mult": tuple(u.channel_mult), "num_res_blocks": u.num_res_blocks,
            "attention": u.attention, "embedding": u.embedding, "groups": u.groups, "dropout": u.dropout}


def make_generator(model: ModelConfig, data_dim: int, image_shape: ImageShape = None) -> nn.Module:
    """G: z (N, latent_dim) ↦ x (N, data_dim) of ``model.family``."""
    if model.family == "mlp":
        g = model.generator
        return Generator(model.latent_dim, data_dim, hidden=g.hidden, activation=g.activation,
                         spectral_norm=g.spectral_norm)
    shape = _image_shape("model.family", model.family, data_dim, image_shape)
    cls = {"dcgan": DCGANGenerator, "resnet": ResNetGenerator}[check_choice("model.family", model.family, FAMILIES)]
    return cls(model.latent_dim, shape, width=model.conv.width, output=model.conv.output)


def make_discriminator(model: ModelConfig, data_dim: int, image_shape: ImageShape = None,
                       out_dim: int = 1) -> nn.Module:
    """D: x (N, data_dim) ↦ (N,) (out_dim 1) or features (N, out_dim) (the MMD-GAN feature map)."""
    if model.family == "mlp":
        dn = model.discriminator
        if out_dim == 1:
            return Discriminator(data_dim, hidden=dn.hidden, activation=dn.activation, spectral_norm=dn.spectral_norm)
        return MLP(data_dim, out_dim, hidden=dn.hidden, activation=dn.activation, spectral_norm=dn.spectral_norm)
    shape = _image_shape("model.family", model.family, data_dim, image_shape)
    cls = {"dcgan": DCGANDiscriminator, "resnet": ResNetDiscriminator}[check_choice("model.family", model.family,
                                                                                    FAMILIES)]
    return cls(shape, width=model.conv.width, spectral_norm=model.conv.spectral_norm, out_dim=out_dim)


def _conditional(model: ModelConfig, data_dim: int, image_shape: ImageShape, mlp: Callable[[], nn.Module],
                 unet: type[nn.Module]) -> nn.Module:
    """``mlp()`` for ``model.conditional`` mlp, else ``unet(image_shape, **model.unet)``."""
    if model.conditional == "mlp":
        return mlp()
    check_choice("model.conditional", model.conditional, ("mlp", "unet"))
    return unet(_image_shape("model.conditional", model.conditional, data_dim, image_shape), **unet_kwargs(model.unet))


def make_score_net(model: ModelConfig, net: NetConfig, data_dim: int, image_shape: ImageShape = None, *,
                   embedding: str, embed_dim: int, fourier: int = 0, fourier_scale: float = 1.0) -> nn.Module:
    """s(x, σ): (N, data_dim), σ ↦ (N, data_dim) of ``model.conditional``."""
    return _conditional(model, data_dim, image_shape, lambda: ScoreNet(
        data_dim, hidden=net.hidden, activation=net.activation, embedding=embedding, embed_dim=embed_dim,
        fourier=fourier, fourier_scale=fourier_scale), ScoreUNet)


def make_velocity_net(model: ModelConfig, net: NetConfig, data_dim: int, image_shape: ImageShape = None, *,
                      embedding: str, embed_dim: int) -> nn.Module:
    """v(x, t): (N, data_dim), t ↦ (N, data_dim) of ``model.conditional``."""
    return _conditional(model, data_dim, image_shape, lambda: VelocityNet(
        data_dim, hidden=net.hidden, activation=net.activation, embedding=embedding, embed_dim=embed_dim),
        VelocityUNet)


def make_ratio_net(model: ModelConfig, net: NetConfig, data_dim: int, image_shape: ImageShape = None, *,
                   embedding: str, embed_dim: int) -> nn.Module:
    """Noise-conditional logit (x (N, data_dim), σ) ↦ (N,) of ``model.conditional``."""
    return _conditional(model, data_dim, image_shape, lambda: RatioNet(
        data_dim, hidden=net.hidden, activation=net.activation, embedding=embedding, embed_dim=embed_dim),
        RatioUNet)

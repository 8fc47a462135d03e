"""The config ↦ network factory (scoregan.models.factory): mlp families build today's MLP networks, conv and
U-Net families the image networks, and image families without an image data set are refused by field."""

from __future__ import annotations

import pytest
import torch

from scoregan.models import (
    MLP,
    ConditionalDiscriminator,
    DCGANDiscriminator,
    DCGANGenerator,
    Discriminator,
    Generator,
    RatioNet,
    RatioUNet,
    ResNetDiscriminator,
    ResNetGenerator,
    ScoreNet,
    ScoreUNet,
    VelocityNet,
    VelocityUNet,
    make_discriminator,
    make_generator,
    make_ratio_net,
    make_score_net,
    make_velocity_net,
)
from scoregan.schema_models import ConvConfig, ModelConfig, NetConfig, UNetConfig


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_mlp_family_builds_todays_networks():
    m = ModelConfig()
    g, dn = m.generator, m.discriminator
    G = make_generator(m, 2, None)
    assert type(G) is Generator
    assert _count(G) == _count(Generator(m.latent_dim, 2, hidden=g.hidden, activation=g.activation,
                                         spectral_norm=g.spectral_norm))
    D = make_discriminator(m, 2, None)
    assert type(D) is Discriminator and _count(D) == _count(Discriminator(2, hidden=dn.hidden))
    F = make_discriminator(m, 2, None, out_dim=5)
    assert type(F) is MLP and F(torch.randn(3, 2)).shape == (3, 5)
    net = NetConfig(hidden=[16, 16], activation="silu")
    s = make_score_net(m, net, 2, None, embedding="sinusoidal", embed_dim=8, fourier=4, fourier_scale=2.0)
    assert type(s) is ScoreNet and _count(s) == _count(ScoreNet(2, hidden=[16, 16], embed_dim=8, fourier=4))
    v = make_velocity_net(m, net, 2, None, embedding="raw", embed_dim=8)
    assert type(v) is VelocityNet and _count(v) == _count(VelocityNet(2, hidden=[16, 16], embedding="raw"))
    r = make_ratio_net(m, net, 2, None, embedding="sinusoidal", embed_dim=8)
    assert type(r) is RatioNet and _count(r) == _count(RatioNet(2, hidden=[16, 16], embed_dim=8))


@pytest.mark.parametrize("family, gcls, dcls", [("dcgan", DCGANGenerator, DCGANDiscriminator),
                                                ("resnet", ResNetGenerator, ResNetDiscriminator)])
def test_conv_families_build_conv_networks(family, gcls, dcls):
    m = ModelConfig(latent_dim=4, family=family, conv=ConvConfig(width=8, spectral_norm=True))
    G = make_generator(m, 3 * 32 * 32, (3, 32, 32))
    assert type(G) is gcls and G(torch.randn(2, 4)).shape == (2, 3 * 32 * 32)
    D = make_discriminator(m, 64, (8, 8))  # (H, W): one channel
    assert type(D) is dcls and D.image_shape == (1, 8, 8) and D(torch.randn(2, 64)).shape == (2,)
    assert any(hasattr(mod, "parametrizations") for mod in D.modules())
    assert make_discriminator(m, 64, (1, 8, 8), out_dim=3)(torch.randn(2, 64)).shape == (2, 3)


def test_unet_conditional_builds_unet_heads():
    m = ModelConfig(conditional="unet", unet=UNetConfig(channels=8, groups=4, embedding="fourier"))
    net = NetConfig()
    kw = {"embedding": "sinusoidal", "embed_dim": 16}
    s = make_score_net(m, net, 64, (1, 8, 8), fourier=8, **kw)
    assert type(s) is ScoreUNet and s(torch.randn(2, 64), 0.5).shape == (2, 64)
    assert type(make_velocity_net(m, net, 64, (1, 8, 8), **kw)) is VelocityUNet
    r = make_ratio_net(m, net, 64, (1, 8, 8), **kw)
    assert type(r) is RatioUNet and isinstance(r, ConditionalDiscriminator)


def test_image_families_need_an_image_data_set():
    with pytest.raises(ValueError, match=r"model\.family = 'dcgan' needs an image data set"):
        make_generator(ModelConfig(family="dcgan"), 2, None)
    with pytest.raises(ValueError, match=r"model\.family = 'resnet'"):
        make_discriminator(ModelConfig(family="resnet"), 2, None)
    with pytest.raises(ValueError, match=r"model\.conditional = 'unet' needs an image data set"):
        make_score_net(ModelConfig(conditional="unet"), NetConfig(), 2, None, embedding="raw", embed_dim=2)
    with pytest.raises(ValueError, match="does not hold"):
        make_generator(ModelConfig(family="dcgan"), 65, (1, 8, 8))


def test_bad_groups_are_refused_by_field():
    m = ModelConfig(conditional="unet", unet=UNetConfig(channels=12, groups=8))
    with pytest.raises(ValueError, match=r"model\.unet\.groups"):
        make_velocity_net(m, NetConfig(), 64, (1, 8, 8), embedding="raw", embed_dim=2)

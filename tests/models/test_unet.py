"""The conditional U-Net and its heads (scoregan.models.unet): shapes on flat particles for 8×8, 28×28 and
32×32 images, conditioning, the σ parametrisation of the score, group-count checks and a short DSM fit."""

from __future__ import annotations

import math

import pytest
import torch

from scoregan.models import (
    ConditionalDiscriminator,
    RatioUNet,
    ScoreUNet,
    UNet,
    VelocityUNet,
    dsm_loss,
)

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
TINY = {"channels": 8, "groups": 4}


def _d(shape):
    return shape[0] * shape[1] * shape[2]


@pytest.mark.parametrize("mult", [(1, 2), (1, 2, 2)])
@pytest.mark.parametrize("shape", SHAPES)
def test_unet_shapes_and_layouts(shape, mult):
    torch.manual_seed(0)
    net = UNet(shape, channel_mult=mult, **TINY).eval()
    x, c = torch.randn(3, _d(shape)), torch.rand(3)
    out = net(x, c)
    assert out.shape == (3, _d(shape))
    nchw = net(x.reshape(3, *shape), c)
    assert nchw.shape == (3, *shape)
    assert torch.allclose(nchw.reshape(3, -1), out, atol=1e-6)
    assert UNet(shape, out_channels=2, channel_mult=mult, **TINY)(x, 0.5).shape == (3, 2 * shape[1] * shape[2])


@pytest.mark.parametrize("shape", SHAPES)
def test_heads_shapes(shape):
    torch.manual_seed(0)
    x, s = torch.randn(3, _d(shape)), torch.rand(3) + 0.1
    assert ScoreUNet(shape, **TINY)(x, s).shape == (3, _d(shape))
    assert VelocityUNet(shape, **TINY)(x, s).shape == (3, _d(shape))
    assert RatioUNet(shape, **TINY)(x, s).shape == (3,)
    assert ConditionalDiscriminator(shape, **TINY)(x.reshape(3, *shape), 0.3).shape == (3,)


@pytest.mark.parametrize("embedding", ["sinusoidal", "fourier"])
def test_unet_is_conditional(embedding):
    torch.manual_seed(0)
    net = UNet((1, 8, 8), embedding=embedding, **TINY)
    x = torch.randn(4, 64)
    assert not torch.allclose(net(x, 0.1), net(x, 0.9))
    assert torch.allclose(net(x, 0.3), net(x, torch.full((4,), 0.3)))
    d = ConditionalDiscriminator((1, 8, 8), embedding=embedding, **TINY)
    assert not torch.allclose(d(x, 0.1), d(x, 0.9))


def test_score_unet_is_parametrised_over_sigma():
    """s(x, σ) = F(x, log σ) / σ, in both layouts."""
    torch.manual_seed(0)
    s = ScoreUNet((1, 8, 8), **TINY)
    x, sig = torch.randn(4, 64), torch.tensor([0.1, 0.5, 1.0, 3.0])
    assert s.dim == 64
    assert torch.allclose(s(x, sig) * sig[:, None], s.net(x, torch.log(sig)), atol=1e-6)
    assert torch.allclose(s(x.reshape(4, 1, 8, 8), sig).reshape(4, 64), s(x, sig), atol=1e-6)


def test_ratio_unet_feeds_log_sigma_and_velocity_ode_func():
    torch.manual_seed(0)
    r = RatioUNet((1, 8, 8), **TINY)
    x, sig = torch.randn(4, 64), torch.tensor([0.1, 0.5, 1.0, 3.0])
    assert isinstance(r, ConditionalDiscriminator)
    assert torch.allclose(r(x, sig), ConditionalDiscriminator.forward(r, x, torch.log(sig)))
    v = VelocityUNet((1, 8, 8), **TINY)
    assert torch.allclose(v.ode_func()(torch.tensor(0.4), x), v(x, 0.4))


def test_conditional_discriminator_has_no_cross_sample_dependence():
    torch.manual_seed(0)
    d = ConditionalDiscriminator((1, 8, 8), attention=True, **TINY).train()
    x = torch.randn(3, 64, requires_grad=True)
    out = d(x, torch.rand(3))
    for i in range(3):
        (g,) = torch.autograd.grad(out[i], x, retain_graph=True)
        assert torch.cat([g[:i], g[i + 1:]]).abs().max() == 0 and g[i].abs().max() > 0


@pytest.mark.parametrize("cls", [UNet, ConditionalDiscriminator])
def test_groups_must_divide_every_channel_count(cls):
    with pytest.raises(ValueError, match=r"model\.unet\.groups"):
        cls((1, 8, 8), channels=12, channel_mult=(1, 2), groups=8)
    with pytest.raises(ValueError, match="embedding"):
        cls((1, 8, 8), embedding="raw", **TINY)


def test_short_dsm_fit_on_two_images_lowers_the_loss():
    torch.manual_seed(0)
    net = ScoreUNet((1, 8, 8), attention=False, **TINY)
    ramp = torch.linspace(-1, 1, 64)
    pts = torch.stack([ramp, -ramp])
    g = torch.Generator().manual_seed(1)

    def batch(n):
        x = pts[torch.randint(0, 2, (n,), generator=g)]
        sig = torch.exp(torch.empty(n).uniform_(math.log(0.05), math.log(1.0), generator=g))
        return x, sig, torch.randn(n, 64, generator=g)

    held = batch(256)
    with torch.no_grad():
        before = dsm_loss(net, *held).item()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(100):
        loss = dsm_loss(net, *batch(8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = dsm_loss(net, *held).item()
    assert math.isfinite(after) and after < 0.3 * before

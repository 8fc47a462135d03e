"""Conv generator/discriminator pairs (scoregan.models.conv, scoregan.models.resnet): shapes on flat
particles, no cross-sample dependence in the discriminators, spectral normalisation."""

from __future__ import annotations

import pytest
import torch

from scoregan.models import (
    DCGANDiscriminator,
    DCGANGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
)

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
GENERATORS = [DCGANGenerator, ResNetGenerator]
DISCRIMINATORS = [DCGANDiscriminator, ResNetDiscriminator]


def _d(shape):
    return shape[0] * shape[1] * shape[2]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", GENERATORS)
def test_generator_maps_latents_to_flat_images(cls, shape):
    torch.manual_seed(0)
    g = cls(4, shape, width=8)
    z = torch.randn(5, 4)
    x = g(z)
    assert x.shape == (5, _d(shape))
    assert (g.latent_dim, g.data_dim, g.image_shape) == (4, _d(shape), shape)
    assert x.abs().max() <= 1.0  # tanh output
    g.eval()
    assert torch.equal(g.images(z).reshape(5, -1), g(z))
    assert cls(4, shape, width=8, output="linear")(z).shape == (5, _d(shape))


@pytest.mark.parametrize("size", [16, 64])
def test_dcgan_generator_covers_other_sizes(size):
    assert DCGANGenerator(2, (1, size, size), width=8)(torch.randn(2, 2)).shape == (2, size * size)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", DISCRIMINATORS)
def test_discriminator_shapes_flat_and_nchw_agree(cls, shape):
    torch.manual_seed(0)
    d = cls(shape, width=8, spectral_norm=False)
    x = torch.randn(5, _d(shape))
    out = d(x)
    assert out.shape == (5,)
    assert torch.allclose(d(x.reshape(5, *shape)), out)
    feats = cls(shape, width=8, spectral_norm=False, out_dim=3)(x)
    assert feats.shape == (5, 3)
    with pytest.raises(ValueError, match="expects x of shape"):
        d(torch.randn(5, _d(shape) + 1))


@pytest.mark.parametrize("sn", [False, True])
@pytest.mark.parametrize("cls", DISCRIMINATORS)
def test_discriminator_has_no_cross_sample_dependence(cls, sn):
    """∂D(x_i)/∂x_j = 0 for j ≠ i in train mode (one forward pass), and perturbing x_j leaves D(x_i) in eval."""
    torch.manual_seed(0)
    shape = (1, 8, 8)
    d = cls(shape, width=8, spectral_norm=sn)
    x = torch.randn(4, _d(shape), requires_grad=True)
    d.train()
    out = d(x)
    for i in range(4):
        (g,) = torch.autograd.grad(out[i], x, retain_graph=True)
        others = torch.cat([g[:i], g[i + 1:]])
        assert others.abs().max() == 0 and g[i].abs().max() > 0
    d.eval()
    with torch.no_grad():
        base = d(x)
        y = x.detach().clone()
        y[2] += 1.0
        moved = d(y)
    assert torch.equal(torch.cat([moved[:2], moved[3:]]), torch.cat([base[:2], base[3:]]))
    assert moved[2] != base[2]


@pytest.mark.parametrize("cls", DISCRIMINATORS)
def test_spectral_norm_bounds_every_layer(cls):
    torch.manual_seed(0)
    d = cls((3, 32, 32), width=8, spectral_norm=True).train()
    for _ in range(5):
        d(torch.randn(8, 3 * 32 * 32))
    weights = [m.weight for m in d.modules() if hasattr(m, "parametrizations")]
    assert len(weights) >= 3
    for w in weights:
        assert torch.linalg.matrix_norm(w.detach().flatten(1), 2) <= 1.05


@pytest.mark.parametrize("cls", DISCRIMINATORS)
def test_gradient_penalty_backpropagates(cls):
    """Per-sample input gradients with a graph (WGAN-GP): the penalty reaches every weight matrix."""
    torch.manual_seed(0)
    d = cls((1, 8, 8), width=8, spectral_norm=False)
    x = torch.randn(6, 64, requires_grad=True)
    (g,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    ((g.norm(dim=1) - 1) ** 2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in d.parameters() if p.ndim > 1)

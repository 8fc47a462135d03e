"""Config sections of the networks: fully connected nets, conv generator/discriminator pairs, the U-Net.

``model.family`` picks the generator/discriminator family (``mlp`` for vectors; ``dcgan`` and ``resnet``
for images); ``model.conditional`` the family of the noise- and time-conditional networks (score,
velocity and ratio networks: ``mlp`` or ``unet``). Conv families need an image data set.
"""

from __future__ import annotations

from dataclasses import dataclass

from scoregan._spec import MAX_DEPTH, MAX_WIDTH, spec


@dataclass
class NetConfig:
    """A fully connected network."""

    hidden: list[int] = spec(default_factory=lambda: [128, 128, 128], min=1, max=MAX_WIDTH, max_len=MAX_DEPTH,
                             help="hidden layer widths")
    activation: str = spec("relu", choices=("relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "softplus"))
    spectral_norm: bool = spec(False, help="spectral normalisation on every linear layer")


@dataclass
class ConvConfig:
    """A conv generator/discriminator pair for images (``model.family`` dcgan or resnet)."""

    width: int = spec(64, min=4, max=1024, help="channels of the widest conv layer (DCGAN) / of every block (ResNet)")
    spectral_norm: bool = spec(False, help="spectral normalisation on every discriminator layer")
    output: str = spec("tanh", choices=("tanh", "linear"), help="the generator's last activation (data in [-1, 1])")


@dataclass
class UNetConfig:
    """The noise- or time-conditional U-Net of score, velocity and ratio networks (``model.conditional: unet``)."""

    channels: int = spec(32, min=4, max=1024, help="channels at the highest resolution")
    channel_mult: list[int] = spec(default_factory=lambda: [1, 2], min=1, max=16, max_len=6,
                                   help="channel multiplier per resolution (each further one halves H and W)")
    num_res_blocks: int = spec(1, min=1, max=8, help="residual blocks per resolution")
    attention: bool = spec(True, help="self-attention at the lowest resolution")
    embedding: str = spec("sinusoidal", choices=("sinusoidal", "fourier"), help="embedding of log σ or t")
    groups: int = spec(8, min=1, max=64, help="group-norm groups (must divide every channel count)")
    dropout: float = spec(0.0, min=0, max=1, exclusive_max=True)


@dataclass
class ModelConfig:
    """Generator and discriminator architectures."""

    latent_dim: int = spec(8, min=1, max=4096, help="dimension of the generator's Gaussian latent")
    generator: NetConfig = spec(default_factory=lambda: NetConfig(hidden=[64, 64, 64]))
    discriminator: NetConfig = spec(default_factory=lambda: NetConfig(activation="leaky_relu"))
    family: str = spec("mlp", choices=("mlp", "dcgan", "resnet"),
                       help="generator/discriminator family: mlp (vectors) or dcgan / resnet (images: data.layout image)")
    conv: ConvConfig = spec(default_factory=ConvConfig)
    conditional: str = spec("mlp", choices=("mlp", "unet"),
                            help="family of the score, velocity and ratio networks (unet: images)")
    unet: UNetConfig = spec(default_factory=UNetConfig)

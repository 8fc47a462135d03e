"""Networks: generators, discriminators, and conditional score, velocity and ratio networks (MLPs for
vectors; DCGAN / SNGAN-ResNet conv pairs and a conditional U-Net for images), and the config factory."""

from scoregan.models.conv import DCGANDiscriminator, DCGANGenerator
from scoregan.models.factory import (
    make_discriminator,
    make_generator,
    make_ratio_net,
    make_score_net,
    make_velocity_net,
)
from scoregan.models.mlp import (
    ACTIVATIONS,
    MLP,
    Discriminator,
    Generator,
    make_activation,
)
from scoregan.models.resnet import ResNetDiscriminator, ResNetGenerator
from scoregan.models.score_nets import (
    EMBEDDINGS,
    ConditionalMLP,
    RatioNet,
    ScoreNet,
    SinusoidalEmbedding,
    VelocityNet,
    dsm_loss,
)
from scoregan.models.unet import (
    ConditionalDiscriminator,
    RatioUNet,
    ScoreUNet,
    UNet,
    VelocityUNet,
)

__all__ = ["ACTIVATIONS", "EMBEDDINGS", "MLP", "ConditionalDiscriminator", "ConditionalMLP", "DCGANDiscriminator",
           "DCGANGenerator", "Discriminator", "Generator", "RatioNet", "RatioUNet", "ResNetDiscriminator",
           "ResNetGenerator", "ScoreNet", "ScoreUNet", "SinusoidalEmbedding", "UNet", "VelocityNet", "VelocityUNet",
           "dsm_loss", "make_activation", "make_discriminator", "make_generator", "make_ratio_net", "make_score_net",
           "make_velocity_net"]

"""Networks: generators, discriminators, and conditional score, velocity and ratio networks."""

from scoregan.models.mlp import ACTIVATIONS, MLP, Discriminator, Generator, make_activation
from scoregan.models.score_nets import (
    EMBEDDINGS,
    ConditionalMLP,
    RatioNet,
    ScoreNet,
    SinusoidalEmbedding,
    VelocityNet,
    dsm_loss,
)

__all__ = ["ACTIVATIONS", "EMBEDDINGS", "MLP", "ConditionalMLP", "Discriminator", "Generator", "RatioNet", "ScoreNet",
           "SinusoidalEmbedding", "VelocityNet", "dsm_loss", "make_activation"]

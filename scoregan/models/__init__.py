"""Networks: generators, discriminators (and, with the trainers, score and velocity networks)."""

from scoregan.models.mlp import ACTIVATIONS, MLP, Discriminator, Generator, make_activation

__all__ = ["ACTIVATIONS", "MLP", "Discriminator", "Generator", "make_activation"]

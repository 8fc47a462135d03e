"""Kernel flow-matching GAN: the IPM-GAN with its optimal discriminator in closed form (docs/theory.md §9).

The discriminator is the kernel witness between a data sample Y (the batch, or a larger reference
bank of recent batches) and the generated batch X,

    D̂(x) = (1/M) Σ_j k(x, y_j) − (1/N) Σ_i k(x, x_i),

and each generated particle moves along its gradient: the generator regresses G(z) onto the stopped
target G(z) + η ∇D̂(G(z)) (``flows.ipm_velocity`` and ``flows.flow_target``). No network but G is
trained. Any kernel of the core works (``trainer.kernel``, see :mod:`scoregan.trainers.kernel_fields`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from scoregan import flows
from scoregan._dist import gather
from scoregan.metrics import get_classifier
from scoregan.models.conv import DCGANDiscriminator
from scoregan.schema import TrainerConfig, spec
from scoregan.trainers.base import StepContext
from scoregan.trainers.generator import GeneratorRule
from scoregan.trainers.registry import register_trainer
from scoregan.trainers.kernel_fields import KernelFields, build_kernel


#: the encoders φ of ``trainer.feature_map``: the witness of k(φ(x), φ(y)), its gradient pulled back to pixels
FEATURE_MAPS = ("none", "random_conv", "classifier")


@dataclass
class KernelFlowConfig(KernelFields, TrainerConfig):
    name: str = spec("kernel-flow", help="update rule")
    step_size: float = spec(1.0, min=0, exclusive_min=True, help="η: each particle's target is x + η ∇D̂(x)")
    inner_steps: int = spec(1, min=1, help="regression steps of G onto each stopped target")
    bank_size: int = spec(0, min=0, help="data reference bank: the last bank_size real samples (0: the batch only)")
    ema: float = spec(0.0, min=0, max=0.99999, help="EMA decay of the sampling copy of G (0: sample G itself)")
    feature_map: str = spec("none", choices=FEATURE_MAPS,
                            help="where the witness is taken: none (the data space), random_conv (a fixed random conv "
                                 "encoder, images) or classifier (the cached image-metric classifier's penultimate "
                                 "features: the metric's own features, so its FD is no longer independent)")
    feature_dim: int = spec(256, min=1, max=65_536, help="random_conv: the encoder's output dimension")
    feature_seed: int = spec(0, min=0, max=2**31 - 1, help="random_conv: the seed of the encoder's weights")


@register_trainer
class KernelFlowGAN(GeneratorRule):
    """G(z) regressed onto G(z) + η ∇D̂(G(z)), D̂ the closed-form kernel witness (module doc)."""

    name = "kernel-flow"
    Config = KernelFlowConfig

    def build(self) -> None:
        self.build_generator()
        self.kernel = build_kernel(self.tcfg)
        self.bank: torch.Tensor | None = None
        self.phi = self._feature_map()

    def _feature_map(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """φ of ``trainer.feature_map`` (frozen, module "feature_map"), or None for the data space."""
        c = self.tcfg
        if c.feature_map == "none":
            return None
        if self.data.image_shape is None:
            raise ValueError(f"trainer.feature_map = {c.feature_map!r} needs an image data set (data.layout: image)")
        if c.feature_map == "classifier":
            net, _ = get_classifier(self.data, progress=self.cfg.train.progress)
            net = self.add_module("feature_map", net).requires_grad_(False).eval()
            return net.features
        with torch.random.fork_rng(devices=[]):  # its own seed: the training streams stay as they are
            torch.manual_seed(c.feature_seed)
            net = DCGANDiscriminator(self.data.image_shape, width=self.cfg.model.conv.width, out_dim=c.feature_dim)
        return self.add_module("feature_map", net).requires_grad_(False).eval()

    def reference(self, ctx: StepContext) -> torch.Tensor:
        """The data side of the witness, (M, d): this step's batch (every rank's), or the bank it was pushed into."""
        real = gather(ctx.real())
        size = self.tcfg.bank_size
        if size <= 0:
            return real
        if self.bank is None:
            self.bank = gather(ctx.real(ctx.share(size)))
        self.bank = torch.cat([real, self.bank])[:size]
        return self.bank

    def velocity(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """∇D̂(x) (N, d) for the witness between ``reference`` (M, d) and the generated particles: x (N, d)
        itself, with every rank's batch under data parallelism."""
        if self.phi is not None:
            return flows.feature_ipm_velocity(x, self.phi, self.kernel, reference, gather(x))
        return flows.ipm_velocity(x, self.kernel, reference, gather(x))

    def velocity_field(self, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
        """q ↦ ∇D̂(q), (N, d) → (N, d): the witness gradient between fresh batches drawn from ``generator``
        (CPU) in this order: Y, ``bank_size`` (or ``batch_size``) real points; z, ``batch_size`` latents;
        X = G(z) (G in eval mode). ``flows.ipm_velocity(q, kernel, Y, X)``: the field of :meth:`step`."""
        n_real = self.tcfg.bank_size or self.cfg.train.batch_size
        return self.witness_field(generator, self.kernel, n_real, "∇D̂: witness gradient")

    def step(self, ctx: StepContext) -> dict[str, float]:
        y = self.reference(ctx)
        z = self.latents(ctx)
        out = self.G(z)
        x = out.detach()
        v = self.velocity(x, y)
        target = flows.flow_target(x, v, self.tcfg.step_size)
        loss = self.regress(z, target, self.tcfg.inner_steps, output=out)
        logs = {"loss_g": loss}
        if ctx.step % self.cfg.train.log_every == 0:  # only the logged steps pay for the extra statistic
            logs["velocity"] = v.norm(dim=1).mean().item()
        return logs

    def extra_state(self) -> dict[str, Any]:
        return {} if self.bank is None else {"bank": self.bank}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        bank = state.get("bank")
        self.bank = None if bank is None else bank.to(device=self.device, dtype=self.dtype)

"""The update-rule interface: what a trainer variant supplies to the one loop.

A variant builds its networks and optimisers, then performs one training step at a time from a
:class:`StepContext` (which hands out real batches and latents from the loop's seeded generators).
Everything else (seeding, devices, checkpoints, logging, evaluation, figures, progress, callbacks)
belongs to the loop of the experiment layer (``scoregan.experiment.loop.Trainer``), written once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from scoregan.schema import ExperimentConfig, TrainerConfig
from scoregan._dist import average_gradients
from scoregan.data import Dataset


@dataclass(frozen=True)
class SourceGenerator:
    """A trained one-step generator G: z (N, latent_dim) -> x (N, d) that a rule starts from (the
    source of flow matching from a GAN's samples); the experiment layer loads it from a run."""

    network: nn.Module
    latent_dim: int
    dim: int


@dataclass
class StepContext:
    """What a step may draw from: real batches and noise, each from its own seeded generator.

    ``real(n)`` draws ``n`` (default ``batch_size``) target samples on the CPU generator ``data_rng``
    and moves them to the run's device and dtype; ``normal(n, d)``, ``uniform(n)`` and
    ``randint(high, n)`` draw per-sample noise on ``noise_rng`` (a generator on the run's device).

    Data parallel (``world_size`` > 1): every rank holds the same generators; each draw takes
    ``n · world_size`` rows and keeps the rank's block of ``n``, so the ranks together see exactly
    the batch one process would draw (``batch_size`` is the per-rank share of ``train.batch_size``).
    """

    step: int
    batch_size: int
    data: Dataset
    data_rng: torch.Generator
    noise_rng: torch.Generator
    device: torch.device
    dtype: torch.dtype
    rank: int = 0
    world_size: int = 1

    def _mine(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return x if self.world_size == 1 else x[self.rank * n:(self.rank + 1) * n]

    def share(self, n_total: int) -> int:
        """This rank's share of ``n_total`` rows (ValueError unless the ranks divide it evenly)."""
        if n_total % self.world_size:
            raise ValueError(f"{n_total} rows do not split evenly over {self.world_size} processes")
        return n_total // self.world_size

    def real(self, n: int | None = None) -> torch.Tensor:
        n = n or self.batch_size
        x = self._mine(self.data.sample(n * self.world_size, generator=self.data_rng), n)
        return x.to(device=self.device, dtype=self.dtype)

    def normal(self, n: int, d: int) -> torch.Tensor:
        z = torch.randn(n * self.world_size, d, generator=self.noise_rng, device=self.device, dtype=self.dtype)
        return self._mine(z, n)

    def uniform(self, n: int) -> torch.Tensor:
        """U[0, 1) draws (n,)."""
        u = torch.rand(n * self.world_size, generator=self.noise_rng, device=self.device, dtype=self.dtype)
        return self._mine(u, n)

    def randint(self, high: int, n: int) -> torch.Tensor:
        """Uniform integers in [0, high), (n,)."""
        return self._mine(torch.randint(0, high, (n * self.world_size,), generator=self.noise_rng, device=self.device), n)


class UpdateRule(ABC):
    """A trainer variant. Subclasses set ``name`` and ``Config`` and implement :meth:`build`,
    :meth:`step` and :meth:`sample`; networks and optimisers registered with :meth:`add_module`
    and :meth:`add_optimizer` are checkpointed and moved to the device by the base class."""

    name: ClassVar[str]
    Config: ClassVar[type[TrainerConfig]]
    #: a generator network G(z) in ``modules["generator"]`` (what the diagnostics differentiate)
    has_generator: ClassVar[bool] = False
    #: how ``modules["discriminator"]``'s one output per point reads as ψ ≈ log p_d/p_g (a
    #: :class:`~scoregan.sampling.DiscriminatorGuidance` link: "logit", "fgan", "probability"); None
    #: without a scalar discriminator (no gradient diagnostics, no discriminator guidance)
    discriminator_link: ClassVar[str | None] = None
    #: the discriminator is an IPM-style critic: read with its link, but not a log-ratio
    discriminator_is_critic: ClassVar[bool] = False

    def __init__(self, cfg: ExperimentConfig, data: Dataset, device: torch.device, dtype: torch.dtype, *,
                 source: SourceGenerator | None = None):
        self.cfg = cfg
        self.source = source
        self.tcfg = cfg.trainer
        self.data = data
        self.device = device
        self.dtype = dtype
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # -- to implement --------------------------------------------------------------------------
    @abstractmethod
    def build(self) -> None:
        """Create networks and optimisers (called once, after the global seed is set)."""

    @abstractmethod
    def step(self, ctx: StepContext) -> dict[str, float]:
        """One training step (one generator update); returns scalar losses for logging."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` generated samples (n, d), drawn from ``generator`` only, without gradients."""

    def velocity_field(self, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The field v(x), (N, d) → (N, d), that currently moves the generated particles (for figures).

        Its randomness (real and generated batches) is drawn once, here, from the CPU ``generator`` only,
        so building it never perturbs training's random streams; calling it keeps no graph, leaves no
        gradient on any parameter and evaluates networks in eval mode. It takes x on any device and
        dtype and answers in x's. The callable may carry a ``label`` (str) naming it in figures.
        None (the default) where the rule has no such field.
        """
        return None

    # -- shared --------------------------------------------------------------------------------
    def add_module(self, name: str, module: nn.Module) -> nn.Module:
        module = module.to(device=self.device, dtype=self.dtype)
        self.modules[name] = module
        return module

    def add_optimizer(self, name: str, opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
        self.optimizers[name] = opt
        return opt

    def adam(self, params, lr: float) -> torch.optim.Optimizer:
        o = self.cfg.optim
        return torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)

    def clip(self, module: nn.Module) -> None:
        """Before each optimiser step: average the gradients over the ranks (data parallel), then clip
        their global norm to ``optim.grad_clip``."""
        average_gradients(module.parameters())
        if self.cfg.optim.grad_clip is not None:
            nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.grad_clip)

    def extra_state(self) -> dict[str, Any]:
        """Anything beyond modules and optimisers that a resume needs (tensors and plain data)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.modules) ^ set(state["modules"])
        if missing:
            raise ValueError(f"checkpoint networks {sorted(state['modules'])} do not match this trainer's {sorted(self.modules)}")
        for k, m in self.modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.load_extra_state(state.get("extra", {}))

    def train(self, mode: bool = True) -> None:
        for m in self.modules.values():
            m.train(mode)

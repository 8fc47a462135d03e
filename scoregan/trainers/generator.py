"""What every one-step generator rule shares: the network G: z ↦ x, its optimiser, latents, sampling,
and the flow-matching generator update (regress G(z) onto a stopped particle target).

The particle view (docs/theory.md §1 and §9): a generator trained by gradient descent moves each sample x = G(z)
along a velocity v(x). Rules that know v in closed form or from score networks (the score-matching
GAN, the kernel flow-matching GAN) take that step explicitly: they form the stopped target
x + η v(x) with :func:`scoregan.flows.flow_target` and regress G(z) onto it,

    L(θ) = ½ mean_i ‖G_θ(z_i) − (x_i + η v(x_i))‖²,      ∇_θ L = −(η / N) Σ_i J_G(z_i)ᵀ v(x_i) at θ,

so one regression step is a generator step along v; further steps on the same target
(``inner_steps``) fit the moved particles more closely (a proximal step).

A rule whose config has ``ema`` > 0 also keeps an exponential moving average of G's weights
(module "generator_ema", updated after every generator step by :meth:`GeneratorRule.update_ema`);
samples then come from the average, which smooths the step-to-step jitter of the mode weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from scoregan import flows
from scoregan.diagnostics.steepness import eval_mode
from scoregan.objectives.kernels import Kernel
from scoregan.models.factory import make_generator
from scoregan.trainers.base import StepContext, UpdateRule
from scoregan.trainers.ema import EMA


class GeneratorRule(UpdateRule):
    """An update rule whose model is a one-step generator G (module "generator", optimiser "generator")."""

    has_generator = True

    def build_generator(self) -> torch.nn.Module:
        self.G = self.add_module("generator", make_generator(self.cfg.model, self.data.dim, self.data.image_shape))
        self.opt_g = self.add_optimizer("generator", self.adam(self.G.parameters(), self.cfg.optim.lr_g))
        self.ema_decay = float(getattr(self.tcfg, "ema", 0.0) or 0.0)
        self.G_ema, self._ema = None, None
        if self.ema_decay > 0:
            self.G_ema = self.add_module("generator_ema", copy.deepcopy(self.G))
            self.G_ema.requires_grad_(False)
            self._ema = EMA(self.G_ema, self.G, self.ema_decay)
        return self.G

    def update_ema(self) -> None:
        """G_ema ← ema · G_ema + (1 − ema) · G (no-op without ``ema``); call after each generator step."""
        if self._ema is not None:
            self._ema.update()

    def latents(self, ctx: StepContext, n: int | None = None) -> torch.Tensor:
        """z ~ N(0, I), (n, latent_dim), from the loop's noise generator."""
        return ctx.normal(n or ctx.batch_size, self.cfg.model.latent_dim)

    def generate(self, ctx: StepContext) -> torch.Tensor:
        return self.G(self.latents(ctx))

    def regress(self, z: torch.Tensor, target: torch.Tensor, steps: int = 1, *,
                output: torch.Tensor | None = None) -> float:
        """``steps`` Adam steps on ½ mean_i ‖G(z_i) − target_i‖² (target stopped), then the EMA update;
        returns the first loss.

        ``output``: G(z) already computed with its graph (saves the first forward pass).
        """
        target = target.detach()
        first = 0.0
        for i in range(steps):
            x = output if (i == 0 and output is not None) else self.G(z)
            loss = 0.5 * (x - target).pow(2).sum(dim=1).mean()
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.clip(self.G)
            self.opt_g.step()
            if i == 0:
                first = loss.item()
        self.update_ema()
        return first

    def witness_field(self, generator: torch.Generator, kernel: Kernel, n_real: int,
                      label: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """q ↦ ∇D̂(q), (N, d) → (N, d): the kernel witness gradient between fresh batches drawn from
        ``generator`` (CPU) in this order: Y, ``n_real`` real points; z, ``batch_size`` latents; X = G(z)
        (G in eval mode); ``flows.ipm_velocity(q, kernel, Y, X)``, with ``label`` for figures."""
        y = self.data.sample(n_real, generator=generator).to(self.device, self.dtype)
        z = torch.randn(self.cfg.train.batch_size, self.cfg.model.latent_dim, generator=generator, dtype=self.dtype)
        with eval_mode(self.G), torch.no_grad():
            x = self.G(z.to(self.device))

        def field(q: torch.Tensor) -> torch.Tensor:
            return flows.ipm_velocity(q.detach().to(self.device, self.dtype), kernel, y, x).detach().to(q)

        field.label = label  # type: ignore[attr-defined]
        return field

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n samples (n, d) of G (of its moving average when ``ema`` > 0), latents from ``generator``."""
        z = torch.randn(n, self.cfg.model.latent_dim, generator=generator, device=self.device, dtype=self.dtype)
        return (self.G_ema if self.G_ema is not None else self.G)(z)

"""Adversarial baselines: a generator and a trained discriminator, backprop through D.

:class:`AdversarialRule` holds the shared machinery (networks, alternating updates, n_critic,
optional gradient penalty); a variant only states its two losses on the discriminator's raw
outputs. Shipped here: non-saturating SGAN and WGAN-GP. The rest of the family (saturating SGAN,
LSGAN, hinge, f-GANs, MMD-GAN) are further subclasses of the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scoregan.config import TrainerConfig, spec
from scoregan.models import Discriminator, Generator
from scoregan.objectives import Divergence, GeneratorLoss, divergence, generator_loss
from scoregan.trainers.base import StepContext, UpdateRule


@dataclass
class AdversarialConfig(TrainerConfig):
    n_critic: int = spec(1, min=1, help="discriminator updates per generator update")
    gp_weight: float = spec(0.0, min=0, help="weight of the gradient penalty (0 = none)")
    gp_center: float = spec(1.0, min=0, help="target gradient norm of the penalty (1: WGAN-GP, 0: zero-centred)")


def gradient_penalty(disc: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     rng: torch.Generator, center: float = 1.0) -> torch.Tensor:
    """E[(‖∇ₓD(x̂)‖ − center)²] on x̂ = εx + (1 − ε)x̃, ε ~ U[0, 1] per pair (Gulrajani et al. 2017)."""
    eps = torch.rand(real.shape[0], 1, generator=rng, device=real.device, dtype=real.dtype)
    xhat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(xhat).sum(), xhat, create_graph=True)
    return (grad.norm(dim=1) - center).pow(2).mean()


class AdversarialRule(UpdateRule):
    """Alternating updates: ``n_critic`` discriminator steps on fresh batches, one generator step."""

    Config = AdversarialConfig

    def build(self) -> None:
        m, d = self.cfg.model, self.data.dim
        g, dn = m.generator, m.discriminator
        self.G = self.add_module("generator", Generator(m.latent_dim, d, hidden=g.hidden, activation=g.activation,
                                                        spectral_norm=g.spectral_norm))
        self.D = self.add_module("discriminator", Discriminator(d, hidden=dn.hidden, activation=dn.activation,
                                                                spectral_norm=dn.spectral_norm))
        self.opt_g = self.add_optimizer("generator", self.adam(self.G.parameters(), self.cfg.optim.lr_g))
        self.opt_d = self.add_optimizer("discriminator", self.adam(self.D.parameters(), self.cfg.optim.lr_d))

    # The two losses of a variant, on raw discriminator outputs (N,).
    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, ctx: StepContext) -> torch.Tensor:
        return self.G(ctx.normal(ctx.batch_size, self.cfg.model.latent_dim))

    def step(self, ctx: StepContext) -> dict[str, float]:
        logs: dict[str, float] = {}
        for _ in range(self.tcfg.n_critic):
            real = ctx.real()
            with torch.no_grad():
                fake = self.generate(ctx)
            loss_d = self.d_loss(self.D(real), self.D(fake))
            if self.tcfg.gp_weight > 0:
                gp = gradient_penalty(self.D, real, fake, ctx.noise_rng, self.tcfg.gp_center)
                logs["gp"] = gp.item()
                loss_d = loss_d + self.tcfg.gp_weight * gp
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.clip(self.D)
            self.opt_d.step()
        fake = self.generate(ctx)
        loss_g = self.g_loss(self.D(fake))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.clip(self.G)
        self.opt_g.step()
        logs.update(loss_d=loss_d.item(), loss_g=loss_g.item())
        return logs

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.cfg.model.latent_dim, generator=generator, device=self.device, dtype=self.dtype)
        return self.G(z)


def fgan_discriminator_loss(div: Divergence, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """−(E_d T(x) − E_g f*(T(x))) with T = activation(v): the variational lower bound of D_f, negated.

    The raw output v estimates log r at the optimum. For ``sgan`` this is the logistic loss
    E_d softplus(−v) + E_g softplus(v).
    """
    return -div.activation(real_out).mean() + div.f_star_of_activation(fake_out).mean()


class FGANRule(AdversarialRule):
    """An f-GAN: the discriminator maximises the variational bound of ``divergence``; the generator
    minimises ``loss`` of the discriminator output (both from :mod:`scoregan.objectives`)."""

    divergence_name: str = "sgan"
    loss_name: str = "non_saturating"

    def build(self) -> None:
        super().build()
        self.div: Divergence = divergence(self.divergence_name)
        self.loss: GeneratorLoss = generator_loss(self.loss_name)

    def d_loss(self, real_out, fake_out):
        return fgan_discriminator_loss(self.div, real_out, fake_out)

    def g_loss(self, fake_out):
        return self.loss.of_log_ratio(fake_out, self.div).mean()


class NSGAN(FGANRule):
    """Non-saturating SGAN: D by the logistic loss; G minimises E softplus(−v(G(z))) = −E log σ(v)."""

    name = "nsgan"


@dataclass
class WGANGPConfig(AdversarialConfig):
    n_critic: int = spec(5, min=1, help="critic updates per generator update")
    gp_weight: float = spec(10.0, min=0, help="gradient penalty weight λ")


class WGANGP(AdversarialRule):
    """WGAN-GP: critic maximises E D(real) − E D(fake) − λ E(‖∇D‖ − 1)²; G minimises −E D(G(z))."""

    name = "wgan-gp"
    Config = WGANGPConfig

    def d_loss(self, real_out, fake_out):
        return fake_out.mean() - real_out.mean()

    def g_loss(self, fake_out):
        return -fake_out.mean()

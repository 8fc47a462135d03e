"""Adversarial baselines: a generator and a trained discriminator, backprop through D.

:class:`AdversarialRule` holds the shared machinery (networks, alternating updates, n_critic,
optional gradient penalty); a variant states its two losses on the discriminator's raw outputs.
Each variant is a config away (``trainer.name``):

    ``sgan``      saturating SGAN: D logistic; G minimises E log(1 − sigmoid(D))
    ``nsgan``     non-saturating SGAN: G minimises −E log sigmoid(D)
    ``lsgan``     least squares (Mao et al. 2017, a-b-c = 0-1-1), on the raw output
    ``hinge``     hinge D loss; G minimises −E D
    ``fgan``      f-GAN with any divergence of the core (``trainer.divergence``, ``trainer.alpha``) and any
                  generator loss (``trainer.generator_loss``); D's raw output v estimates log r,
                  T = divergence.activation(v)
    ``wgan-gp``   WGAN-GP (Gulrajani et al. 2017)
    ``mmd-gan``   MMD-GAN with learned features φ and a gradient penalty on the witness (Bińkowski et al. 2018)
    ``gmmn``      a fixed-kernel MMD generator, no discriminator (Li et al. 2015; Dziugaite et al. 2015)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from scoregan import flows
from scoregan._autograd import input_gradient
from scoregan._dist import gather
from scoregan.schema import ConfigError, TrainerConfig, spec
from scoregan.models.factory import make_discriminator
from scoregan.objectives import DIVERGENCES, GENERATOR_LOSSES, Divergence, GeneratorLoss, divergence, generator_loss
from scoregan.objectives.kernels import kernel_witness, mmd2
from scoregan.trainers.base import StepContext
from scoregan.trainers.generator import GeneratorRule
from scoregan.trainers.registry import register_trainer
from scoregan.trainers.kernel_fields import KernelFields, build_kernel


@dataclass
class AdversarialConfig(TrainerConfig):
    n_critic: int = spec(1, min=1, help="discriminator updates per generator update")
    gp_weight: float = spec(0.0, min=0, help="weight of the gradient penalty (0 = none)")
    gp_center: float = spec(1.0, min=0, help="target gradient norm of the penalty (1: WGAN-GP, 0: zero-centred)")
    ema: float = spec(0.0, min=0, max=0.99999, help="EMA decay of the sampling copy of G (0: sample G itself)")


def gradient_penalty(disc: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor, center: float = 1.0) -> torch.Tensor:
    """E[(‖∇ₓD(x̂)‖ − center)²] on x̂ = εx + (1 − ε)x̃, ε (N,) ~ U[0, 1] per pair (Gulrajani et al. 2017)."""
    eps = eps.reshape(-1, 1).to(real)
    grad = input_gradient(disc, eps * real + (1 - eps) * fake, create_graph=True)
    return (grad.norm(dim=1) - center).pow(2).mean()


class AdversarialRule(GeneratorRule):
    """Alternating updates: ``n_critic`` discriminator steps on fresh batches, one generator step."""

    Config = AdversarialConfig
    discriminator_link = "logit"

    def build(self) -> None:
        self.build_generator()
        self.D = self.add_module("discriminator", self.build_discriminator())
        self.opt_d = self.add_optimizer("discriminator", self.adam(self.D.parameters(), self.cfg.optim.lr_d))

    def build_discriminator(self) -> torch.nn.Module:
        return make_discriminator(self.cfg.model, self.data.dim, self.data.image_shape)

    # The two losses of a variant, on raw discriminator outputs (N,).
    def d_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalised(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function whose input gradient the penalty constrains (the discriminator itself by default)."""
        return self.D

    def generator_objective(self, ctx: StepContext, fake: torch.Tensor) -> torch.Tensor:
        """What G minimises, given its batch (with graph)."""
        return self.g_loss(self.D(fake))

    def velocity_field(self, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """x ↦ −∇ₓ ℓ_G(D(x)), (N, d) → (N, d): the push G's backprop gives each particle, for every
        variant with a scalar discriminator (``discriminator_link`` set; None otherwise, e.g. MMD-GAN's
        feature map). ℓ_G is the per-sample generator loss (``g_loss`` is its mean); for the f-GAN family
        this is ``flows.fgan_velocity_from_discriminator(x, D, divergence, loss)`` = w(r)(s_d − s_g) at the
        optimum; for hinge and WGAN-GP it is ∇D. D is fixed, so ``generator`` draws nothing; D is
        evaluated in eval mode and only x receives gradients."""
        if self.discriminator_link is None:
            return None

        def field(x: torch.Tensor) -> torch.Tensor:
            q = x.detach().to(self.device, self.dtype)
            was = self.D.training
            self.D.eval()
            try:
                if isinstance(self, FGANRule):
                    v = flows.fgan_velocity_from_discriminator(q, self.D, self.div, self.loss)
                else:
                    with torch.enable_grad():
                        qg = q.requires_grad_(True)
                        (g,) = torch.autograd.grad(self.g_loss(self.D(qg)) * qg.shape[0], qg)
                    v = -g
            finally:
                self.D.train(was)
            return v.detach().to(x)

        field.label = "∇D: critic gradient" if self.discriminator_is_critic else "velocity −∇ℓ_G(D)"  # type: ignore[attr-defined]
        return field

    def step(self, ctx: StepContext) -> dict[str, float]:
        logs: dict[str, float] = {}
        for _ in range(self.tcfg.n_critic):
            real = ctx.real()
            with torch.no_grad():
                fake = self.generate(ctx)
            real_out, fake_out = self.D(real), self.D(fake)
            loss_d = self.d_loss(real_out, fake_out)
            if self.tcfg.gp_weight > 0:
                gp = gradient_penalty(self.penalised(real_out, fake_out), real, fake, ctx.uniform(real.shape[0]),
                                      self.tcfg.gp_center)
                logs["gp"] = gp.item()
                loss_d = loss_d + self.tcfg.gp_weight * gp
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.clip(self.D)
            self.opt_d.step()
        loss_g = self.generator_objective(ctx, self.generate(ctx))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.clip(self.G)
        self.opt_g.step()
        self.update_ema()
        logs.update(loss_d=loss_d.item(), loss_g=loss_g.item())
        return logs


# ------------------------------------------------------------------------------------------ f-GANs
def fgan_discriminator_loss(div: Divergence, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """−(E_d T(x) − E_g f*(T(x))) with T = activation(v): the variational lower bound of D_f, negated.

    The raw output v estimates log r at the optimum. For ``sgan`` this is the logistic loss
    E_d softplus(−v) + E_g softplus(v) minus log 4.
    """
    return -div.activation(real_out).mean() + div.f_star_of_activation(fake_out).mean()


def divergence_of(c: Any) -> Divergence:
    """The divergence of a config with ``divergence`` and ``alpha`` fields."""
    if c.divergence == "alpha":
        if c.alpha is None:
            raise ValueError("divergence 'alpha' needs trainer.alpha (e.g. 0.5)")
        return divergence("alpha", alpha=c.alpha)
    if c.alpha is not None:
        raise ValueError(f"trainer.alpha is used only with divergence 'alpha', not {c.divergence!r}")
    return divergence(c.divergence)


class FGANRule(AdversarialRule):
    """An f-GAN: the discriminator maximises the variational bound of ``divergence``; the generator
    minimises ``loss`` of the discriminator output (both from :mod:`scoregan.objectives`)."""

    divergence_name: str = "sgan"
    loss_name: str = "non_saturating"

    def build(self) -> None:
        super().build()
        self.div: Divergence = self.make_divergence()
        self.loss: GeneratorLoss = generator_loss(self.make_loss_name())

    def make_divergence(self) -> Divergence:
        return divergence(self.divergence_name)

    def make_loss_name(self) -> str:
        return self.loss_name

    def d_loss(self, real_out, fake_out):
        return fgan_discriminator_loss(self.div, real_out, fake_out)

    def g_loss(self, fake_out):
        return self.loss.of_log_ratio(fake_out, self.div).mean()


@register_trainer
class NonSaturatingGAN(FGANRule):
    """Non-saturating SGAN: D by the logistic loss; G minimises E softplus(−v(G(z))) = −E log σ(v)."""

    name = "nsgan"


@register_trainer
class SaturatingGAN(FGANRule):
    """Saturating SGAN (the original minimax): G minimises E log(1 − σ(v)) = −E softplus(v)."""

    name = "sgan"
    loss_name = "saturating"


@dataclass
class FGANConfig(AdversarialConfig):
    divergence: str = spec("kl", choices=DIVERGENCES, help="the f-divergence D maximises the bound of")
    alpha: float | None = spec(None, help="α of divergence 'alpha'")
    generator_loss: str = spec("fgan", choices=GENERATOR_LOSSES, help="ℓ_G on D's output (fgan: −f*(T))")

    def __post_init__(self) -> None:
        try:
            divergence_of(self)
        except ValueError as exc:
            raise ConfigError(f"trainer.divergence = {self.divergence!r}: {exc}") from None


@register_trainer
class FGAN(FGANRule):
    """f-GAN with the divergence and generator loss of the config (``trainer.divergence``, ``trainer.generator_loss``)."""

    name = "fgan"
    Config = FGANConfig
    discriminator_link = "fgan"

    def make_divergence(self) -> Divergence:
        return divergence_of(self.tcfg)

    def make_loss_name(self) -> str:
        return self.tcfg.generator_loss


# ------------------------------------------------------------------------------------------ others
@register_trainer
class LSGAN(AdversarialRule):
    """Least-squares GAN on the raw output: D minimises ½E(D(x) − 1)² + ½E D(G(z))², G ½E(D(G(z)) − 1)².
    The optimal D is p_d/(p_d + p_g)."""

    name = "lsgan"
    discriminator_link = "probability"  # the optimal output is p_d/(p_d + p_g)

    def d_loss(self, real_out, fake_out):
        return 0.5 * (real_out - 1).pow(2).mean() + 0.5 * fake_out.pow(2).mean()

    def g_loss(self, fake_out):
        return 0.5 * (fake_out - 1).pow(2).mean()


@register_trainer
class HingeGAN(AdversarialRule):
    """Hinge loss: D minimises E relu(1 − D(x)) + E relu(1 + D(G(z))); G minimises −E D(G(z))."""

    name = "hinge"
    discriminator_is_critic = True

    def d_loss(self, real_out, fake_out):
        return torch.relu(1 - real_out).mean() + torch.relu(1 + fake_out).mean()

    def g_loss(self, fake_out):
        return -fake_out.mean()


@dataclass
class WGANGPConfig(AdversarialConfig):
    n_critic: int = spec(5, min=1, help="critic updates per generator update")
    gp_weight: float = spec(10.0, min=0, help="gradient penalty weight λ")


@register_trainer
class WGANGP(AdversarialRule):
    """WGAN-GP: critic maximises E D(real) − E D(fake) − λ E(‖∇D‖ − 1)²; G minimises −E D(G(z))."""

    name = "wgan-gp"
    Config = WGANGPConfig
    discriminator_is_critic = True

    def d_loss(self, real_out, fake_out):
        return fake_out.mean() - real_out.mean()

    def g_loss(self, fake_out):
        return -fake_out.mean()


# ------------------------------------------------------------------------------------------ MMD
@dataclass
class MMDGANConfig(KernelFields, AdversarialConfig):
    n_critic: int = spec(5, min=1, help="feature-network updates per generator update")
    gp_weight: float = spec(1.0, min=0, help="weight of the gradient penalty on the witness")
    feature_dim: int = spec(16, min=1, help="output dimension of the learned feature map φ")
    unbiased: bool = spec(True, help="unbiased (U-statistic) MMD² estimate")


@register_trainer
class MMDGAN(AdversarialRule):
    """MMD-GAN: φ (the "discriminator", x ↦ R^feature_dim) maximises MMD²_k(φ(real), φ(fake)) minus a
    gradient penalty on the witness f(x) = mean_j k(φ(x), φ(real_j)) − mean_j k(φ(x), φ(fake_j));
    G minimises MMD²_k(φ(G(z)), φ(real))."""

    discriminator_link = None  # φ is a feature map

    name = "mmd-gan"
    Config = MMDGANConfig

    def build(self) -> None:
        super().build()
        self.kernel = build_kernel(self.tcfg)

    def build_discriminator(self) -> torch.nn.Module:
        return make_discriminator(self.cfg.model, self.data.dim, self.data.image_shape, out_dim=self.tcfg.feature_dim)

    def d_loss(self, real_out, fake_out):  # the whole batch of every rank (gathered with its graph)
        return -mmd2(self.kernel, gather(real_out, grad=True), gather(fake_out, grad=True), unbiased=self.tcfg.unbiased)

    def penalised(self, real_out, fake_out):
        # the kernel of d_loss's MMD² (one per step, not one per query), over every rank's batch
        witness = kernel_witness(self.kernel, gather(real_out, grad=True), gather(fake_out, grad=True))
        return lambda x: witness.value(self.D(x))

    def generator_objective(self, ctx: StepContext, fake: torch.Tensor) -> torch.Tensor:
        return mmd2(self.kernel, gather(self.D(fake), grad=True), gather(self.D(ctx.real()), grad=True),
                    unbiased=self.tcfg.unbiased)


@dataclass
class GMMNConfig(KernelFields, TrainerConfig):
    name: str = spec("gmmn", help="update rule")
    bandwidth: list[float] | float | str = spec(default_factory=lambda: [0.5, 1.0, 2.0, 4.0],
                                                help="gaussian / laplace bandwidth h: a number, 'median', "
                                                     "or a list of scales (multi-scale gaussian)")
    unbiased: bool = spec(True, help="unbiased (U-statistic) MMD² estimate")
    ema: float = spec(0.0, min=0, max=0.99999, help="EMA decay of the sampling copy of G (0: sample G itself)")


@register_trainer
class GMMN(GeneratorRule):
    """Generative moment matching network: G minimises MMD²_k(G(z), real) for a fixed kernel k."""

    name = "gmmn"
    Config = GMMNConfig

    def build(self) -> None:
        self.build_generator()
        self.kernel = build_kernel(self.tcfg)

    def velocity_field(self, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
        """q ↦ ∇D̂(q): the witness gradient between ``batch_size`` real points and G(z) of ``batch_size``
        latents, drawn in that order from ``generator`` (CPU); each particle's −∇MMD² is (2/N) ∇D̂ there."""
        return self.witness_field(generator, self.kernel, self.cfg.train.batch_size, "∇D̂: MMD witness gradient")

    def step(self, ctx: StepContext) -> dict[str, float]:
        real = ctx.real()
        loss = mmd2(self.kernel, gather(self.generate(ctx), grad=True), gather(real), unbiased=self.tcfg.unbiased)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.G)
        self.opt_g.step()
        self.update_ema()
        return {"loss_g": loss.item()}

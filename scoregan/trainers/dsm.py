"""Denoising score matching with EDM preconditioning (Karras et al. 2022): a noise-conditional denoiser.

A raw network F(x, c) (N, d) ↦ (N, d) is wrapped into the denoiser

    D(x, σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ)),
    c_skip = σ_d² / (σ² + σ_d²),   c_out = σ σ_d / √(σ² + σ_d²),
    c_in = 1 / √(σ² + σ_d²),        c_noise = ¼ ln σ,

(σ_d = ``sigma_data``, the data's per-coordinate std) and trained on

    L = E_{σ, y, ε} λ(σ) ‖D(y + σ ε, σ) − y‖²,   λ(σ) = (σ² + σ_d²) / (σ σ_d)² = 1 / c_out²,

y ~ data, ε ~ N(0, I), ln σ ~ N(P_mean, P_std²) (``lognormal``) or σ log-uniform in [σ_min, σ_max]
(``loguniform``). For data of per-coordinate variance σ_d², c_in and c_out give F's input and its
regression target unit variance at every σ. The minimiser is D*(x, σ) = E[y | y + σ ε = x], hence (Tweedie) the score of the perturbed
data s(x, σ) = ∇ log (p * N(0, σ² I))(x) = (D(x, σ) − x) / σ², what every sampler of
:mod:`scoregan.sampling` reads. Samples start from x = σ_max ε and run Heun's probability-flow ODE,
the reverse SDE (Euler–Maruyama) or predictor–corrector over the grid ``edm_sigmas(steps, σ_min, σ_max, ρ)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from scoregan.models.factory import unet_kwargs
from scoregan.models.score_nets import EMBEDDINGS, ConditionalMLP
from scoregan.models.unet import UNet
from scoregan.sampling import edm_sigmas, sample_heun, sample_pc, sample_sde
from scoregan.schema import ConfigError, NetConfig, TrainerConfig, spec
from scoregan.schema_models import ModelConfig
from scoregan.trainers.base import StepContext, UpdateRule
from scoregan.trainers.ema import EMA
from scoregan.trainers.registry import register_trainer
from scoregan.trainers.score_gan import log_uniform

__all__ = ["DSMConfig", "DenoisingScoreMatching", "EDMDenoiser", "edm_loss", "edm_preconditioning", "edm_weight",
           "make_denoiser_net"]

SAMPLERS: tuple[str, ...] = ("heun", "sde", "pc")

#: Frequencies of the condition embedding on c_noise = ¼ ln σ: those of the noise-conditional heads
#: on ln σ (scoregan.models.unet, 0.25–8, Fourier scale 4), times 4.
_C_NOISE_FREQS = {"min_freq": 1.0, "max_freq": 32.0}
_UNET_FREQS = {**_C_NOISE_FREQS, "fourier_scale": 16.0}


def edm_preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                          torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise), each shaped like σ (any shape, σ > 0), in σ's dtype."""
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    root = torch.sqrt(s2 + d2)
    return d2 / (s2 + d2), sigma * sigma_data / root, 1.0 / root, 0.25 * torch.log(sigma)


def edm_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """λ(σ) = (σ² + σ_d²) / (σ σ_d)² = 1 / c_out(σ)², shaped like σ."""
    return (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data) ** 2


def _per_sample(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A scalar or (N,) / (N, 1) noise level as an (N,) tensor in x's dtype and device."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() == 1:
        return s.expand(x.shape[0])
    if s.numel() != x.shape[0]:
        raise ValueError(f"sigma must be a scalar or have one value per row of x ({x.shape[0]}), got {s.numel()}")
    return s


class EDMDenoiser(nn.Module):
    """D(x, σ) = c_skip x + c_out F(c_in x, c_noise): x (N, d), σ scalar or (N,) ↦ (N, d); module doc."""

    def __init__(self, net: nn.Module, sigma_data: float):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data!r}")
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        s = _per_sample(sigma, x)
        c_skip, c_out, c_in, c_noise = (c[:, None] if i < 3 else c
                                        for i, c in enumerate(edm_preconditioning(s, self.sigma_data)))
        return c_skip * x + c_out * self.net(c_in * x, c_noise)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """s(x, σ) = (D(x, σ) − x) / σ²: (N, d)."""
        s = _per_sample(sigma, x)[:, None]
        return (self(x, sigma) - x) / (s * s)


def edm_loss(denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y: torch.Tensor, sigma: torch.Tensor,
             noise: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """mean_i λ(σ_i) ‖D(y_i + σ_i ε_i, σ_i) − y_i‖² (a scalar): y, ε = ``noise`` ~ N(0, I) (N, d), σ (N,).

    For y ~ N(μ, s² I) in d dimensions its minimum over D at σ is λ(σ) d s² σ² / (s² + σ²), reached by
    D*(x, σ) = (s² x + σ² μ) / (s² + σ²)."""
    s = _per_sample(sigma, y)
    err = denoiser(y + s[:, None] * noise, s) - y
    return (edm_weight(s, sigma_data) * err.pow(2).sum(dim=1)).mean()


def make_denoiser_net(model: ModelConfig, net: NetConfig, data_dim: int, image_shape: Sequence[int] | None, *,
                      embedding: str, embed_dim: int) -> nn.Module:
    """The raw F(x, c_noise): (N, data_dim), (N,) ↦ (N, data_dim) of ``model.conditional`` (a
    :class:`ConditionalMLP` on flat x, or a :class:`UNet` on the images of ``model.unet``)."""
    if model.conditional == "mlp":
        return ConditionalMLP(data_dim, data_dim, net.hidden, net.activation, embedding, embed_dim, **_C_NOISE_FREQS)
    if model.conditional != "unet":
        raise ValueError(f"model.conditional = {model.conditional!r} must be 'mlp' or 'unet'")
    if image_shape is None or math.prod(image_shape) != data_dim:
        raise ValueError(f"model.conditional = 'unet' needs an image data set whose image shape holds the data "
                         f"dimension {data_dim} (got image shape {image_shape}); use model.conditional = 'mlp'")
    return UNet(tuple(image_shape), **{**_UNET_FREQS, **unet_kwargs(model.unet)})


@dataclass
class DSMConfig(TrainerConfig):
    name: str = spec("dsm", help="update rule")
    sigma_data: float = spec(0.5, min=0, exclusive_min=True, help="σ_d, the data's per-coordinate std (EDM: 0.5 "
                             "for images in [-1, 1])")
    sigma_sampling: str = spec("lognormal", choices=("lognormal", "loguniform"),
                               help="training noise levels: ln σ ~ N(p_mean, p_std²), or log-uniform in "
                                    "[sigma_min, sigma_max]")
    p_mean: float = spec(-1.2, help="mean of ln σ (lognormal)")
    p_std: float = spec(1.2, min=0, exclusive_min=True, help="std of ln σ (lognormal)")
    sigma_min: float = spec(0.002, min=0, exclusive_min=True, help="smallest σ: the sampler grid's last non-zero "
                            "level (and the loguniform low end)")
    sigma_max: float = spec(80.0, min=0, exclusive_min=True, help="largest σ: the samplers start from N(0, "
                            "sigma_max² I) (and the loguniform high end)")
    ema: float = spec(0.999, min=0, max=0.99999, help="EMA decay of the sampling copy of D (0: sample with D itself)")
    net: NetConfig = spec(default_factory=lambda: NetConfig(hidden=[256, 256, 256], activation="silu"),
                          help="the MLP F(x, c_noise) (model.conditional: mlp)")
    embedding: str = spec("sinusoidal", choices=EMBEDDINGS, help="c_noise embedding of the MLP")
    embed_dim: int = spec(32, min=2, help="width of the MLP's sinusoidal c_noise embedding")
    sampler: str = spec("heun", choices=SAMPLERS, help="evaluation sampler: heun (probability-flow ODE, EDM "
                        "Alg. 1), sde (reverse SDE, Euler–Maruyama), pc (predictor–corrector)")
    sample_steps: int = spec(18, min=1, max=100_000, help="noise levels of the sampler grid (heun: 2·steps − 1 NFE)")
    rho: float = spec(7.0, min=0, exclusive_min=True, help="ρ of the EDM grid (σ_max^{1/ρ} … σ_min^{1/ρ})^ρ")

    def __post_init__(self) -> None:
        if self.sigma_min >= self.sigma_max:
            raise ConfigError(f"trainer.sigma_min = {self.sigma_min} must be < trainer.sigma_max = {self.sigma_max}")


@register_trainer
class DenoisingScoreMatching(UpdateRule):
    """EDM-preconditioned denoising score matching; module doc."""

    name = "dsm"
    Config = DSMConfig

    def build(self) -> None:
        c, d = self.tcfg, self.data.dim
        net = make_denoiser_net(self.cfg.model, c.net, d, self.data.image_shape, embedding=c.embedding,
                                embed_dim=c.embed_dim)
        self.D = self.add_module("denoiser", EDMDenoiser(net, c.sigma_data))
        self.opt = self.add_optimizer("denoiser", self.adam(self.D.parameters(), self.cfg.optim.lr_g))
        self.D_ema = self.add_module("denoiser_ema", copy.deepcopy(self.D)) if c.ema > 0 else None
        self._ema = None
        if self.D_ema is not None:
            self.D_ema.requires_grad_(False)
            self._ema = EMA(self.D_ema, self.D, c.ema)
        self.last_nfe = 0

    # -- training -----------------------------------------------------------------------------------
    def sigmas(self, ctx: StepContext, n: int) -> torch.Tensor:
        """Training noise levels (n,) drawn on the step's noise generator."""
        c = self.tcfg
        if c.sigma_sampling == "lognormal":
            return torch.exp(c.p_mean + c.p_std * ctx.normal(n, 1)[:, 0])
        return log_uniform(ctx.uniform(n), c.sigma_min, c.sigma_max)

    def step(self, ctx: StepContext) -> dict[str, float]:
        y = ctx.real()
        n = y.shape[0]
        sigma = self.sigmas(ctx, n)
        loss = edm_loss(self.D, y, sigma, ctx.normal(n, self.data.dim), self.tcfg.sigma_data)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.D)
        self.opt.step()
        if self._ema is not None:
            self._ema.update()
        return {"loss_dsm": loss.item()}

    # -- the model ----------------------------------------------------------------------------------
    @property
    def denoiser(self) -> EDMDenoiser:
        """The denoiser samples use (the EMA copy when ``ema`` > 0)."""
        return self.D_ema if self.D_ema is not None else self.D

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """D(x, σ) (N, d) of the sampling copy."""
        return self.denoiser(x, sigma)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """s(x, σ) = (D(x, σ) − x) / σ² (N, d) of the sampling copy: x (N, d), σ scalar or (N,)."""
        return self.denoiser.score(x, sigma)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        c = self.tcfg
        x = c.sigma_max * torch.randn(n, self.data.dim, generator=generator, device=self.device, dtype=self.dtype)
        sigmas = edm_sigmas(c.sample_steps, c.sigma_min, c.sigma_max, c.rho, device=self.device)
        run = {"heun": sample_heun, "sde": sample_sde, "pc": sample_pc}[c.sampler]
        x, info = run(self.score, x, sigmas, generator=generator, return_info=True)
        self.last_nfe = int(info.nfe)
        return x

    def velocity_field(self, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """x ↦ D(x, σ_d) − x = σ_d² s(x, σ_d), (N, d) → (N, d): where denoising at the data's scale moves
        a point (the sampling copy in eval mode; ``generator`` draws nothing). None unless d = 2."""
        if self.data.dim != 2:
            return None
        sd = self.tcfg.sigma_data

        def field(x: torch.Tensor) -> torch.Tensor:
            q = x.detach().to(self.device, self.dtype)
            D = self.denoiser
            was = D.training
            D.eval()
            try:
                with torch.no_grad():
                    v = D(q, sd) - q
            finally:
                D.train(was)
            return v.to(x)

        field.label = f"D(x, σ={sd:g}) − x"  # type: ignore[attr-defined]
        return field

"""Discriminator Guidance (Kim et al. 2022): a noise-conditional discriminator that corrects a trained score.

A frozen score model s_θ(x, σ) (a ``dsm`` run, ``trainer.score_run``) samples p_θ. A discriminator
D(x, σ) (logit, (N, d), σ (N,) ↦ (N,)) is trained by logistic regression between perturbed data and
perturbed model samples,

    L = E_{σ, y, ε} softplus(−D(y + σ ε, σ)) + E_{σ', x, ε'} softplus(D(x + σ' ε', σ')),

y ~ p_d (``ctx.real()``), x from a ``pool`` of model samples drawn once by the score run's sampler,
ln σ ~ N(p_mean, p_std²) clamped to [sigma_min, sigma_max]. Its optimum is
D*(x, σ) = logit p_d^σ/(p_d^σ + p_θ^σ), i.e. D* = log p_d^σ − log p_θ^σ, so

    s_θ(x, σ) + ∇ₓ D*(x, σ) = ∇ₓ log p_d^σ(x)

and sampling with the guided score (λ = ``guidance_scale``) targets the data at every level.
:meth:`DiscriminatorGuidanceRule.sample` runs the score run's sampler on that guided score, so the
loop's evaluation measures the guided samples. The pool is drawn lazily before the first step on its
own generator (``train.seed``) and kept in the checkpoint's extra state: a resume does not redraw it.
The score network is not part of this rule's checkpoint: the run reads it from ``score_run``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scoregan.models.factory import unet_kwargs
from scoregan.models.score_nets import EMBEDDINGS, RatioNet
from scoregan.models.unet import RatioUNet
from scoregan.sampling import DiscriminatorGuidance, edm_sigmas, sample_heun, sample_pc, sample_sde
from scoregan.schema import ConfigError, NetConfig, TrainerConfig, spec
from scoregan.trainers.base import StepContext, UpdateRule
from scoregan.trainers.registry import register_trainer

__all__ = ["DGConfig", "DiscriminatorGuidanceRule", "ScoreSource", "dg_loss", "score_source_problem"]

_SAMPLERS = {"heun": sample_heun, "sde": sample_sde, "pc": sample_pc}
#: model samples drawn per call of the score run's sampler while filling the pool
_POOL_CHUNK = 256


@dataclass(frozen=True)
class ScoreSource:
    """A trained score model a rule builds on: ``rule`` (a loaded ``dsm`` rule, eval mode) of ``run_dir``;
    the experiment layer loads it (``scoregan.experiment.runs.build_rule``)."""

    rule: UpdateRule
    run_dir: str


def dg_loss(D: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
            sigma_real: torch.Tensor, sigma_fake: torch.Tensor, noise_real: torch.Tensor,
            noise_fake: torch.Tensor) -> torch.Tensor:
    """mean softplus(−D(y + σ ε, σ)) + mean softplus(D(x + σ' ε', σ')) (a scalar): BCE with logits, real → 1,
    fake → 0. real, noise_real (N, d), sigma_real (N,); fake, noise_fake (M, d), sigma_fake (M,)."""
    lr = D(real + sigma_real[:, None] * noise_real, sigma_real)
    lf = D(fake + sigma_fake[:, None] * noise_fake, sigma_fake)
    return F.softplus(-lr).mean() + F.softplus(lf).mean()


def score_source_problem(source: ScoreSource, where: str, data_name: str, dim: int) -> str | None:
    """One line saying why ``source`` cannot serve a rule on data set ``data_name`` of dimension ``dim``
    (``where`` names the option), or None."""
    r = source.rule
    if r.cfg.trainer.name != "dsm" or not callable(getattr(r, "score", None)):
        return f"{where} = {source.run_dir!r}: a {r.cfg.trainer.name!r} run, not a score model (trainer dsm)"
    if r.data.dim != dim:
        return f"{where} = {source.run_dir!r} generates dimension {r.data.dim}, this data set has {dim}"
    if r.cfg.data.name != data_name:
        return f"{where} = {source.run_dir!r} was trained on data set {r.cfg.data.name!r}, this one is {data_name!r}"
    return None


@dataclass
class DGConfig(TrainerConfig):
    name: str = spec("dg", help="update rule")
    score_run: str | None = spec(None, path=True, help="run directory of the trained score model (a dsm run); "
                                 "required")
    pool: int = spec(512, min=2, help="model samples drawn once from the score run's sampler (fake examples)")
    sample_steps: int | None = spec(None, min=1, max=100_000, help="noise levels of the sampler grid for the pool "
                                    "and the guided samples (default: the score run's)")
    p_mean: float | None = spec(None, help="mean of ln σ (default: the score run's)")
    p_std: float | None = spec(None, min=0, exclusive_min=True, help="std of ln σ (default: the score run's)")
    sigma_min: float = spec(0.002, min=0, exclusive_min=True, help="σ of training are clamped to >= sigma_min")
    sigma_max: float = spec(80.0, min=0, exclusive_min=True, help="σ of training are clamped to <= sigma_max")
    guidance_scale: float = spec(1.0, min=0, help="λ of the guided score s_θ + λ ∇ D (1: the exact correction)")
    net: NetConfig = spec(default_factory=lambda: NetConfig(hidden=[128, 128, 128], activation="silu"),
                          help="the MLP D(x, ln σ) (model.conditional: mlp)")
    embedding: str = spec("sinusoidal", choices=EMBEDDINGS, help="ln σ embedding of the MLP")
    embed_dim: int = spec(16, min=2, help="width of the MLP's sinusoidal ln σ embedding")

    def __post_init__(self) -> None:
        if self.sigma_min >= self.sigma_max:
            raise ConfigError(f"trainer.sigma_min = {self.sigma_min} must be < trainer.sigma_max = {self.sigma_max}")


def make_noise_discriminator(cfg: Any, dim: int, image_shape: tuple[int, ...] | None) -> nn.Module:
    """D: (x (N, dim), σ) ↦ logit (N,) on c = ln σ: a :class:`RatioUNet` from ``model.unet`` (model.conditional
    unet, image data) or a :class:`RatioNet` (an MLP) from ``trainer.net``."""
    c, model = cfg.trainer, cfg.model
    if model.conditional == "unet":
        if image_shape is None:
            raise ConfigError("model.conditional = 'unet' needs an image data set; use model.conditional = 'mlp'")
        net: nn.Module = RatioUNet(tuple(image_shape), **unet_kwargs(model.unet))
    else:
        net = RatioNet(dim, c.net.hidden, c.net.activation, c.embedding, c.embed_dim)
    return net


@register_trainer
class DiscriminatorGuidanceRule(UpdateRule):
    """A noise-conditional discriminator on a frozen score model; module doc."""

    name = "dg"
    Config = DGConfig
    has_generator = False

    #: set by the experiment layer before :meth:`build` (scoregan.experiment.runs.build_rule)
    score_source: ScoreSource | None = None

    def build(self) -> None:
        c, d = self.tcfg, self.data.dim
        if c.score_run is None:
            raise ConfigError("trainer.score_run must name a trained score model's run directory (a dsm run)")
        src = self.score_source
        if src is None:
            raise ConfigError("trainer.score_run: the rule needs the loaded score run (score_source); "
                              "scoregan.experiment.runs.build_rule loads it")
        problem = score_source_problem(src, "trainer.score_run", self.cfg.data.name, d)
        if problem:
            raise ConfigError(problem)
        self.score_rule = src.rule
        self.score_rule.train(False)
        sc = self.score_rule.tcfg
        self.p_mean = sc.p_mean if c.p_mean is None else c.p_mean
        self.p_std = sc.p_std if c.p_std is None else c.p_std
        self.steps = sc.sample_steps if c.sample_steps is None else c.sample_steps
        self.D = self.add_module("noise_discriminator", make_noise_discriminator(self.cfg, d, self.data.image_shape))
        self.opt = self.add_optimizer("noise_discriminator", self.adam(self.D.parameters(), self.cfg.optim.lr_d))
        self.pool_x: torch.Tensor | None = None
        self.last_nfe = 0

    # -- the score model's sampler, plain or guided ---------------------------------------------------
    def guidance(self) -> DiscriminatorGuidance:
        """ψ(x, σ) = D(x, σ): ∇ψ corrects s_θ toward the data score (module doc)."""
        return DiscriminatorGuidance(self.D, noise_conditional=True, link="logit")

    def _run_sampler(self, n: int, generator: torch.Generator, guided: bool) -> torch.Tensor:
        sc = self.score_rule.tcfg
        x = sc.sigma_max * torch.randn(n, self.data.dim, generator=generator, device=self.device, dtype=self.dtype)
        sigmas = edm_sigmas(self.steps, sc.sigma_min, sc.sigma_max, sc.rho, device=self.device)
        kw = {"guidance": self.guidance(), "guidance_scale": self.tcfg.guidance_scale} if guided else {}
        was = self.D.training
        self.D.eval()
        try:
            with torch.no_grad():  # the guidance takes its own input gradient (torch.enable_grad)
                x, info = _SAMPLERS[sc.sampler](self.score_rule.score, x, sigmas, generator=generator,
                                                return_info=True, **kw)
        finally:
            self.D.train(was)
        self.last_nfe = int(info.nfe)
        return x.detach()

    def draw_pool(self) -> torch.Tensor:
        """``pool`` unguided model samples (pool, d) on their own generator (``train.seed``)."""
        g = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed + 104_729)
        n = self.tcfg.pool
        return torch.cat([self._run_sampler(min(_POOL_CHUNK, n - i), g, guided=False)
                          for i in range(0, n, _POOL_CHUNK)])

    # -- training -----------------------------------------------------------------------------------
    def sigmas(self, ctx: StepContext, n: int) -> torch.Tensor:
        """ln σ ~ N(p_mean, p_std²), clamped to [sigma_min, sigma_max]: (n,)."""
        s = torch.exp(self.p_mean + self.p_std * ctx.normal(n, 1)[:, 0])
        return s.clamp(self.tcfg.sigma_min, self.tcfg.sigma_max)

    def step(self, ctx: StepContext) -> dict[str, float]:
        if self.pool_x is None:
            self.pool_x = self.draw_pool()
        y = ctx.real()
        n, d = y.shape
        fake = self.pool_x[ctx.randint(self.pool_x.shape[0], n)]
        s_real, s_fake = self.sigmas(ctx, n), self.sigmas(ctx, n)
        loss = dg_loss(self.D, y, fake, s_real, s_fake, ctx.normal(n, d), ctx.normal(n, d))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.D)
        self.opt.step()
        return {"loss_d": loss.item()}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """The score run's sampler on s_θ + λ ∇D (n, d); sets ``last_nfe`` (score evaluations)."""
        return self._run_sampler(n, generator, guided=True)

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        if getattr(self, "score_rule", None) is not None:
            self.score_rule.train(False)

    def extra_state(self) -> dict[str, Any]:
        return {} if self.pool_x is None else {"pool": self.pool_x}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pool = state.get("pool")
        self.pool_x = None if pool is None else pool.to(self.device, self.dtype)

"""Score-matching GAN: the f-GAN flow written in scores and taken explicitly (docs/theory.md §3 and §9).

For a divergence f and a generator loss ℓ_G the generated particles move along

    v(x) = w(r(x)) (s_d(x) − s_g(x)),      (``flows.fgan_velocity``)

on noise-perturbed proxies p ↦ p * N(0, σ²I) (scores of data near a manifold are ill-defined):

- s_d(x, σ): a noise-conditional data score network fitted once by denoising score matching on data
  (cached on disk, keyed by everything that determines it, so later runs reuse it; an unreadable cache
  file is refitted with a warning and replaced atomically; the fit shows a progress bar when
  ``train.progress``; the fitted network is module "data_score" of every checkpoint, so a run directory
  resumes and samples without the cache), or the exact
  score of the perturbed target when it is a Gaussian mixture (``data_score: exact``);
- s_g(x, σ): a noise-conditional score network of the generator, fitted online by denoising score
  matching on the generator's current samples (``score_steps`` updates per generator step), or
  (``generator_score: batch``) the score of the perturbed empirical measure of a fresh generated batch
  (:func:`scoregan.scores.empirical_score`): no network, so it never lags the generator (on 25
  Gaussians of std 0.05 it covers 25/25 modes where the online network covers 24);
- for any (f, ℓ_G) whose weight w is not constant, a noise-conditional ratio network whose logit,
  trained by the logistic loss on perturbed real against perturbed generated samples, estimates
  log r_σ = log p_d^σ / p_g^σ (reverse KL with the f-GAN loss, or the hinge loss, has w ≡ 1 and
  needs none).

Each step perturbs the generated batch, x̃ = G(z) + σ ε, evaluates v at x̃ (the gradient of
D_f(p_d^σ ‖ p_g^σ) with respect to the particle), and regresses G(z) onto the stopped target
G(z) + η λ(σ) v(x̃) (``flows.flow_target``), with λ(σ) = σ² (``sigma_weighting: sigma2``; then
λ v = σ²(s_d − s_g) is the difference of the two Tweedie denoisers, a displacement in data units;
with ``sigma_pivot`` p, σ·max(σ, p): the levels below p, which resolve sharp modes, count more),
σ, or 1. σ is ``fixed``, ``anneal``ed geometrically from sigma_max to sigma_min over the first
``anneal_fraction`` of training, drawn per sample log-uniformly in [sigma_min, sigma_max]
(``schedule``; from ``sigma_levels`` geometric levels when set, as NCSN does), or drawn log-uniformly
in [σ_lo(t), sigma_max] with the low end annealed like ``anneal`` (``progressive``: coarse to fine).

The score networks can take random Fourier features of x (``fourier_features``), which lets a small
MLP resolve the scores of sharp modes at small σ (without them a DSM fit of 25 modes of std 0.05
points the wrong way at σ ≤ 0.1; with 64 features its cosine to the exact score is > 0.95 there).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from scoregan import flows
from scoregan._dist import gather
from scoregan.checkpoint import save_atomic
from scoregan.diagnostics.steepness import eval_mode
from scoregan.schema import SEED_MAX, ConfigError, NetConfig, TrainerConfig, spec
from scoregan.models.factory import make_ratio_net, make_score_net
from scoregan.models.score_nets import EMBEDDINGS, dsm_loss
from scoregan.objectives import DIVERGENCES, GENERATOR_LOSSES, divergence, generator_loss
from scoregan.objectives.divergences import Divergence
from scoregan.scores.empirical import empirical_score
from scoregan.trainers.adversarial import divergence_of, fgan_discriminator_loss
from scoregan.trainers.base import StepContext
from scoregan.trainers.dg import ScoreSource, score_source_problem
from scoregan.trainers.generator import GeneratorRule
from scoregan.trainers.registry import register_trainer

SIGMA_MODES = ("fixed", "anneal", "schedule", "progressive")
CACHE_ENV = "SCOREGAN_CACHE"


def default_cache_dir() -> Path:
    """``$SCOREGAN_CACHE`` or ``~/.cache/scoregan``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "scoregan")


def _score_net_config() -> NetConfig:
    return NetConfig(hidden=[128, 128, 128], activation="silu")


@dataclass
class ScoreGANConfig(TrainerConfig):
    name: str = spec("score-gan", help="update rule")
    divergence: str = spec("reverse_kl", choices=DIVERGENCES, help="the f-divergence of the flow")
    alpha: float | None = spec(None, help="α of divergence 'alpha'")
    generator_loss: str = spec("fgan", choices=GENERATOR_LOSSES, help="generator loss ℓ_G: sets the weight w(r)")
    step_size: float = spec(1.0, min=0, exclusive_min=True, help="η: targets are x + η λ(σ) v(x̃)")
    inner_steps: int = spec(1, min=1, help="regression steps of G onto each stopped target")
    ema: float = spec(0.0, min=0, max=0.99999, help="EMA decay of the sampling copy of G (0: sample G itself)")
    sigma_mode: str = spec("anneal", choices=SIGMA_MODES,
                           help="noise level: fixed, annealed, a per-sample schedule, or a schedule whose low end anneals")
    sigma: float = spec(0.1, min=0, exclusive_min=True, help="σ when sigma_mode is fixed")
    sigma_min: float = spec(0.05, min=0, exclusive_min=True, help="smallest σ (anneal end, schedule low end)")
    sigma_max: float = spec(2.0, min=0, exclusive_min=True, help="largest σ (anneal start, schedule high end)")
    anneal_fraction: float = spec(0.6, min=0, max=1, help="share of train.steps over which σ (anneal) or the low "
                                                          "end (progressive) anneals from sigma_max to sigma_min")
    sigma_levels: int | None = spec(None, min=2, help="schedule: draw σ from this many geometric levels in "
                                                     "[sigma_min, sigma_max] (null: continuous log-uniform)")
    sigma_weighting: str = spec("sigma2", choices=("sigma2", "sigma", "none"),
                                help="λ(σ): σ² (the denoiser difference), σ, or 1")
    sigma_pivot: float | None = spec(None, min=0, exclusive_min=True,
                                     help="with sigma2: λ = σ·pivot below σ = pivot (boosts the sharpening levels)")
    data_score: str = spec("network", choices=("network", "exact", "run"),
                           help="s_d: a DSM network, the exact perturbed score of a mixture target, or the score "
                                "model of a trained dsm run (score_run; Distribution Matching Distillation)")
    score_run: str | None = spec(None, path=True, help="data_score 'run': the run directory of a trained dsm run")
    score_net: NetConfig = spec(default_factory=_score_net_config, help="the data score network s_d(x, σ)")
    generator_score: str = spec("network", choices=("network", "batch"),
                                help="s_g: a DSM network fitted online, or the score of the perturbed empirical "
                                     "measure of a fresh generated batch (no network, never lags G)")
    generator_score_batch: int = spec(1024, min=2, help="batch: fresh generated centres of the empirical s_g")
    generator_score_net: NetConfig = spec(default_factory=_score_net_config, help="the generator score network s_g")
    ratio_net: NetConfig = spec(default_factory=lambda: NetConfig(hidden=[128, 128, 128], activation="leaky_relu"),
                                help="the ratio network (logit ≈ log r_σ), used when w(r) is not constant")
    embedding: str = spec("sinusoidal", choices=EMBEDDINGS, help="noise-level embedding of the conditional nets")
    embed_dim: int = spec(16, min=2, help="width of the sinusoidal embedding")
    fourier_features: int = spec(0, min=0, help="random Fourier features of x in the score networks (0: none)")
    fourier_scale: float = spec(1.0, min=0, exclusive_min=True, help="std of their frequencies (cycles per unit)")
    data_score_steps: int = spec(3000, min=1, help="DSM steps fitting s_d on data (once; then cached)")
    data_score_batch: int = spec(512, min=2, help="batch of the s_d fit")
    data_score_lr: float = spec(1e-3, min=0, exclusive_min=True, help="Adam learning rate of the s_d fit")
    data_score_seed: int = spec(0, min=0, max=SEED_MAX, help="seed of the s_d fit (its init, data and noise draws)")
    data_score_cache: str | None = spec("auto", help="directory of cached s_d fits ('auto': $SCOREGAN_CACHE or "
                                                     "~/.cache/scoregan; null: no cache)")
    score_steps: int = spec(1, min=1, help="DSM updates of s_g per generator step")
    score_lr: float = spec(1e-3, min=0, exclusive_min=True, help="Adam learning rate of s_g")
    generator_score_init: str = spec("random", choices=("random", "data"),
                                     help="start s_g from its own random init, or from the fitted s_d (as DMD does: "
                                          "both networks then share one architecture)")
    score_warmup: int = spec(200, min=0, help="DSM updates of s_g on the initial generator before the first step")
    ratio_steps: int = spec(1, min=1, help="updates of the ratio network per generator step")
    ratio_lr: float = spec(1e-3, min=0, exclusive_min=True, help="Adam learning rate of the ratio network")

    def __post_init__(self) -> None:
        if self.generator_score_init == "data" and (self.data_score == "exact" or self.generator_score != "network"):
            raise ConfigError("trainer.generator_score_init = 'data' needs trainer.data_score = 'network' or 'run' "
                              f"and trainer.generator_score = 'network', got {self.data_score!r} and "
                              f"{self.generator_score!r}")
        if (self.data_score == "run") != (self.score_run is not None):
            raise ConfigError(f"trainer.score_run = {self.score_run!r} goes with trainer.data_score = 'run' (got "
                              f"data_score {self.data_score!r}): set both or neither")
        if self.sigma_min > self.sigma_max:
            raise ConfigError(f"trainer.sigma_min = {self.sigma_min} must be <= trainer.sigma_max = {self.sigma_max}")
        if self.sigma_mode == "fixed" and not (self.sigma_min <= self.sigma <= self.sigma_max):
            raise ConfigError(f"trainer.sigma = {self.sigma} must lie in [sigma_min, sigma_max] = "
                              f"[{self.sigma_min}, {self.sigma_max}] (the range s_d is fitted on)")
        try:
            divergence_of(self)
        except ValueError as exc:
            raise ConfigError(f"trainer.divergence = {self.divergence!r}: {exc}") from None


def weight_is_constant(div: Divergence, loss_name: str) -> bool:
    """Whether w(r) of (f, ℓ_G) is the same for every r (then no ratio network is needed)."""
    u = torch.linspace(-8.0, 8.0, 33, dtype=torch.float64)
    w = flows.weight(div, loss_name, u)
    return bool(torch.allclose(w, w[16].expand_as(w), rtol=1e-9, atol=0.0))


class ScoreView(torch.nn.Module):
    """A denoiser with ``score(x, σ)`` (a dsm run's :class:`~scoregan.trainers.dsm.EDMDenoiser`) as a score
    network: forward(x (N, d), σ (N,) or scalar) = s(x, σ) (N, d); its weights are the denoiser's."""

    def __init__(self, denoiser: torch.nn.Module):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.denoiser.score(x, sigma)


@register_trainer
class ScoreGAN(GeneratorRule):
    """Score-matching GAN (module doc): networks "generator", "data_score", "generator_score",
    optionally "ratio"."""

    name = "score-gan"
    Config = ScoreGANConfig

    #: set by the experiment layer before :meth:`build` when ``trainer.score_run`` names a dsm run
    score_source: ScoreSource | None = None

    def build(self) -> None:
        c, d = self.tcfg, self.data.dim
        self.build_generator()
        self.div = divergence_of(c)
        self.loss = generator_loss(c.generator_loss)
        if c.data_score == "exact" and self.data.mixture is None:
            raise ValueError(f"trainer.data_score = 'exact' needs a Gaussian-mixture target; {self.data.name!r} is not one")
        if (c.generator_score_init == "data" and self.cfg.model.conditional == "mlp"
                and c.generator_score_net != c.score_net):
            raise ValueError("trainer.generator_score_init = 'data' needs trainer.generator_score_net = "
                             f"trainer.score_net (one architecture), got {c.generator_score_net} and {c.score_net}")
        self.s_d = self.add_module("data_score", self._score_net(c.score_net)) if c.data_score == "network" else None
        if self.s_d is not None:
            self.s_d.requires_grad_(False)
        self.teacher = self._teacher() if c.data_score == "run" else None
        self.s_g = None
        if c.generator_score == "network":
            net = (ScoreView(copy.deepcopy(self.teacher.denoiser)) if self.teacher is not None
                   and c.generator_score_init == "data" else self._score_net(c.generator_score_net))
            self.s_g = self.add_module("generator_score", net.requires_grad_(True))
            self.opt_s = self.add_optimizer("generator_score", self.adam(self.s_g.parameters(), c.score_lr))
        self.ratio = None
        if not weight_is_constant(self.div, c.generator_loss):
            rn = c.ratio_net
            self.ratio = self.add_module("ratio", make_ratio_net(self.cfg.model, rn, d, self.data.image_shape,
                                                                 embedding=c.embedding, embed_dim=c.embed_dim))
            self.opt_r = self.add_optimizer("ratio", self.adam(self.ratio.parameters(), c.ratio_lr))
        self.sgan = divergence("sgan")
        self.ready = False  # s_d fitted (or loaded) and s_g warmed up: done in the first step

    def _teacher(self) -> ScoreView:
        """s_d of ``data_score: run``: the frozen sampling copy of the trained dsm run ``score_run`` (loaded by
        the experiment layer as ``score_source``, as for the dg trainer; not part of this run's checkpoint)."""
        src = self.score_source
        if src is None:
            raise ConfigError("trainer.score_run: the rule needs the loaded score run (score_source); "
                              "scoregan.experiment.runs.build_rule loads it")
        problem = score_source_problem(src, "trainer.score_run", self.cfg.data.name, self.data.dim)
        if problem:
            raise ConfigError(problem)
        src.rule.train(False)
        teacher = ScoreView(src.rule.denoiser).to(self.device, self.dtype)
        return teacher.requires_grad_(False)

    def _score_net(self, net: NetConfig) -> torch.nn.Module:
        c = self.tcfg
        return make_score_net(self.cfg.model, net, self.data.dim, self.data.image_shape, embedding=c.embedding,
                              embed_dim=c.embed_dim, fourier=c.fourier_features, fourier_scale=c.fourier_scale)

    # -- noise levels ------------------------------------------------------------------------------
    def sigmas(self, ctx: StepContext, n: int) -> torch.Tensor:
        """σ per sample (n,) for this step (``sigma_mode``)."""
        c = self.tcfg
        if c.sigma_mode == "fixed":
            return torch.full((n,), c.sigma, device=self.device, dtype=self.dtype)
        horizon = max(1.0, c.anneal_fraction * self.cfg.train.steps)
        annealed = c.sigma_max * (c.sigma_min / c.sigma_max) ** min(1.0, (ctx.step - 1) / horizon)
        if c.sigma_mode == "anneal":
            return torch.full((n,), annealed, device=self.device, dtype=self.dtype)
        if c.sigma_mode == "progressive":
            return log_uniform(ctx.uniform(n), annealed, c.sigma_max)
        if c.sigma_levels is not None:
            levels = torch.logspace(math.log10(c.sigma_min), math.log10(c.sigma_max), c.sigma_levels,
                                    device=self.device, dtype=self.dtype)
            idx = ctx.randint(c.sigma_levels, n)
            return levels[idx]
        return log_uniform(ctx.uniform(n), c.sigma_min, c.sigma_max)

    # -- the data score ----------------------------------------------------------------------------
    def data_score(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """s_d(x, σ) (N, d): the fitted network, or the exact score of the perturbed mixture."""
        if self.s_d is not None:
            return self.s_d(x, sigma)
        if self.teacher is not None:
            return self.teacher(x, sigma)
        out = torch.empty_like(x)
        for s in torch.unique(sigma):
            idx = sigma == s
            out[idx] = self.data.mixture.perturbed(float(s)).score(x[idx])
        return out

    def data_score_key(self) -> str:
        """A digest of everything that determines the s_d fit (target, network, σ range, optimisation)."""
        c = self.tcfg
        dcfg = asdict(self.cfg.data)  # the split too (data.holdout, data.seed): the fit sees the training points
        if dcfg.get("path"):  # files are keyed by their contents, not their names
            content = getattr(self.data, "content_key", None)
            dcfg["path"] = content() if callable(content) else hashlib.sha256(Path(dcfg["path"]).read_bytes()).hexdigest()
        m = self.cfg.model
        net = asdict(c.score_net) if m.conditional == "mlp" else {"unet": asdict(m.unet)}
        desc = {"data": self.data.name, "params": self.data.params(), "data_config": dcfg, "net": net,
                "embedding": c.embedding, "embed_dim": c.embed_dim,
                "fourier": [c.fourier_features, c.fourier_scale], "sigma": [c.sigma_min, c.sigma_max],
                "steps": c.data_score_steps, "batch": c.data_score_batch, "lr": c.data_score_lr,
                "betas": [self.cfg.optim.beta1, self.cfg.optim.beta2], "seed": c.data_score_seed,
                "dtype": str(self.dtype), "device": self.device.type, "version": 4}
        return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def data_score_path(self) -> Path | None:
        cache = self.tcfg.data_score_cache
        if cache is None:
            return None
        root = default_cache_dir() if cache == "auto" else Path(cache)
        return root / "data_scores" / f"{self.data.name}-{self.data_score_key()}.pt"

    def load_cached_data_score(self, path: Path) -> float | None:
        """Load s_d from the cache file ``path`` and return its fit loss; ``None`` (with a warning naming
        the file) when the file is corrupt, truncated or not a data-score fit: the caller refits it."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.s_d.load_state_dict(state["weights"])
            return float(state["loss"])
        except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError, ValueError, OSError) as exc:
            warnings.warn(f"data-score cache {str(path)!r} is unreadable ({type(exc).__name__}: corrupt, truncated or "
                          "not a data-score fit); refitting s_d and overwriting it", RuntimeWarning, stacklevel=2)
            return None

    def fit_data_score(self) -> dict[str, float]:
        """Fit s_d by DSM on fresh data (its own seeded init and draws), or load the cached fit (a corrupt
        cache file is refitted and replaced atomically). A progress bar when ``train.progress``."""
        path = self.data_score_path()
        if path is not None and path.is_file():
            loss = self.load_cached_data_score(path)
            if loss is not None:
                return {"data_score_loss": loss, "data_score_cached": 1.0}
        c = self.tcfg
        with torch.random.fork_rng(devices=[]):  # the init draws on the CPU generator; the run's stays untouched
            torch.manual_seed(c.data_score_seed)
            net = self._score_net(c.score_net).to(device=self.device, dtype=self.dtype)
        opt = self.adam(net.parameters(), c.data_score_lr)
        data_rng = torch.Generator().manual_seed(c.data_score_seed + 1)
        noise_rng = torch.Generator(device=self.device).manual_seed(c.data_score_seed + 2)
        tail = []
        bar = tqdm(range(c.data_score_steps), desc="data score s_d (DSM fit, cached)", leave=False,
                   disable=not self.cfg.train.progress, mininterval=0.5)
        for i in bar:
            x = self.data.sample(c.data_score_batch, generator=data_rng).to(self.device, self.dtype)
            u = torch.rand(x.shape[0], generator=noise_rng, device=self.device, dtype=self.dtype)
            sig = log_uniform(u, c.sigma_min, c.sigma_max)
            eps = torch.randn(x.shape, generator=noise_rng, device=self.device, dtype=self.dtype)
            loss = dsm_loss(net, x, sig, eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= c.data_score_steps - 100:
                tail.append(loss.item())
            if i % 100 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
        bar.close()
        mean_loss = sum(tail) / len(tail)
        self.s_d.load_state_dict(net.state_dict())
        if path is not None:
            save_atomic({"weights": self.s_d.state_dict(), "loss": mean_loss}, path)
        return {"data_score_loss": mean_loss, "data_score_cached": 0.0}

    # -- the online networks -----------------------------------------------------------------------
    def perturb(self, ctx: StepContext, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps = ctx.normal(x.shape[0], x.shape[1])
        return x + sigma[:, None] * eps, eps

    def fit_generator_score(self, ctx: StepContext, steps: int) -> float:
        """``steps`` DSM updates of s_g on fresh generated batches; returns the last loss."""
        loss = torch.zeros(())
        for _ in range(steps):
            with torch.no_grad():
                x = self.generate(ctx)
            sig = self.sigmas(ctx, x.shape[0])
            loss = dsm_loss(self.s_g, x, sig, ctx.normal(x.shape[0], x.shape[1]))
            self.opt_s.zero_grad(set_to_none=True)
            loss.backward()
            self.clip(self.s_g)
            self.opt_s.step()
        return loss.item()

    def fit_ratio(self, ctx: StepContext) -> float:
        """Logistic-loss updates of the ratio network on perturbed real vs generated: logit → log r_σ."""
        loss = torch.zeros(())
        for _ in range(self.tcfg.ratio_steps):
            real = ctx.real()
            with torch.no_grad():
                fake = self.generate(ctx)
            sig = self.sigmas(ctx, real.shape[0])
            real_t, _ = self.perturb(ctx, real, sig)
            fake_t, _ = self.perturb(ctx, fake, sig)
            loss = fgan_discriminator_loss(self.sgan, self.ratio(real_t, sig), self.ratio(fake_t, sig))
            self.opt_r.zero_grad(set_to_none=True)
            loss.backward()
            self.clip(self.ratio)
            self.opt_r.step()
        return loss.item()

    # -- the generator -----------------------------------------------------------------------------
    def generator_score(self, ctx: StepContext | None, x: torch.Tensor, sigma: torch.Tensor,
                        centres: torch.Tensor | None = None) -> torch.Tensor:
        """s_g(x, σ) (N, d): the online network, or the perturbed empirical score of ``centres`` (M, d),
        by default a fresh batch G(z) drawn from ``ctx``."""
        if self.s_g is not None:
            return self.s_g(x, sigma)
        if centres is None:
            if ctx is None:
                raise ValueError("the generator score needs the step context (or centres) when "
                                 "trainer.generator_score = 'batch'")
            centres = gather(self.G(self.latents(ctx, ctx.share(self.tcfg.generator_score_batch))))
        return empirical_score(x, centres, sigma)

    def velocity(self, x_noisy: torch.Tensor, sigma: torch.Tensor, ctx: StepContext | None = None, *,
                 centres: torch.Tensor | None = None) -> torch.Tensor:
        """λ(σ) w(r_σ) (s_d − s_g) at the perturbed particles x̃ (N, d), from ``flows.fgan_velocity``
        (``ctx`` draws the centres of the empirical s_g when ``generator_score`` is ``batch``, unless
        ``centres`` are given)."""
        with torch.no_grad():
            sd = self.data_score(x_noisy, sigma)
            sg = self.generator_score(ctx, x_noisy, sigma, centres)
            log_r = self.ratio(x_noisy, sigma) if self.ratio is not None else torch.zeros_like(sigma)
            v = flows.fgan_velocity(sd, sg, log_r, self.div, self.loss)
        return v * self.sigma_weight(sigma)[:, None]

    def velocity_field(self, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """x ↦ λ(σ) w(r_σ(x)) (s_d − s_g)(x, σ), (N, d) → (N, d), at one noise level (``sigma`` when fixed,
        else ``sigma_min``), from the networks in eval mode; with ``generator_score: batch`` the centres
        G(z) are drawn once from ``generator``. None before the first step (s_d not fitted yet)."""
        if not self.ready:
            return None
        c = self.tcfg
        level = c.sigma if c.sigma_mode == "fixed" else c.sigma_min
        centres = None
        if self.s_g is None:
            z = torch.randn(c.generator_score_batch, self.cfg.model.latent_dim, generator=generator, dtype=self.dtype)
            with eval_mode(self.G), torch.no_grad():
                centres = self.G(z.to(self.device))

        def field(x: torch.Tensor) -> torch.Tensor:
            q = x.detach().to(self.device, self.dtype)
            sigma = torch.full((q.shape[0],), level, device=self.device, dtype=self.dtype)
            with eval_mode(self.s_d, self.s_g, self.ratio):
                return self.velocity(q, sigma, centres=centres).to(x)

        field.label = f"velocity λw(r)(s_d − s_g) at σ = {level:g}"  # type: ignore[attr-defined]
        return field

    def sigma_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """λ(σ) (N,): σ², σ or 1 (``sigma_weighting``); with ``sigma_pivot`` p, σ² becomes σ · max(σ, p)."""
        c = self.tcfg
        if c.sigma_weighting == "sigma2":
            return sigma * (sigma if c.sigma_pivot is None else sigma.clamp(min=c.sigma_pivot))
        return sigma if c.sigma_weighting == "sigma" else torch.ones_like(sigma)

    def step(self, ctx: StepContext) -> dict[str, float]:
        logs: dict[str, float] = {}
        if not self.ready:
            if self.s_d is not None:
                logs.update(self.fit_data_score())
                if self.tcfg.generator_score_init == "data" and self.s_g is not None:
                    self.s_g.load_state_dict(self.s_d.state_dict())
            if self.tcfg.score_warmup and self.s_g is not None:
                self.fit_generator_score(ctx, self.tcfg.score_warmup)
            self.ready = True
        if self.s_g is not None:
            logs["loss_sg"] = self.fit_generator_score(ctx, self.tcfg.score_steps)
        if self.ratio is not None:
            logs["loss_ratio"] = self.fit_ratio(ctx)
        z = self.latents(ctx)
        out = self.G(z)
        x = out.detach()
        sigma = self.sigmas(ctx, x.shape[0])
        x_noisy, _ = self.perturb(ctx, x, sigma)
        v = self.velocity(x_noisy, sigma, ctx)
        target = flows.flow_target(x, v, self.tcfg.step_size)
        logs["loss_g"] = self.regress(z, target, self.tcfg.inner_steps, output=out)
        logs["sigma"] = sigma.mean().item()
        return logs

    def extra_state(self) -> dict[str, Any]:
        return {"ready": self.ready}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ready = bool(state.get("ready", False))


def log_uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """σ (n,) with log σ uniform on [log lo, log hi], from U[0, 1) draws u (n,)."""
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))

"""Conditional flow matching (Lipman et al. 2023; Tong et al. 2024): I-CFM and OT-CFM (docs/theory.md §9).

A velocity network v(x, t) regresses the conditional velocity of straight paths between pairs
(x0, x1), x0 from the source (N(0, s²I), or a trained one-step generator's output) and x1 from the data:

    x_t = (1 − t) x0 + t x1 + σ ε,    u_t(x_t | x0, x1) = x1 − x0,    L = E ‖v(x_t, t) − (x1 − x0)‖²,

t ~ U[0, 1], ε ~ N(0, I). ``cfm`` pairs x0 and x1 independently (I-CFM); ``ot-cfm`` pairs each
minibatch by its exact optimal transport plan for the squared distance, which for two batches of
equal size with uniform weights is a permutation (an assignment problem, solved exactly by
``scipy.optimize.linear_sum_assignment``, or by POT's network simplex when it is installed). Samples
integrate ẋ = v(x, t) from t = 0 to 1 with
:mod:`scoregan.sampling.ode` (``nfe`` reported); with a Gaussian source the exact log-likelihood of
a point follows from the change of variables (:meth:`FlowMatching.log_prob`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from scoregan._checks import check_choice, check_matrix
from scoregan.schema import ConfigError, NetConfig, TrainerConfig, spec
from scoregan.models.factory import make_velocity_net
from scoregan.models.score_nets import EMBEDDINGS
from scoregan.sampling.ode import FIXED_METHODS, ODE_METHODS, LikelihoodSolution, integrate, log_likelihood
from scoregan.trainers.base import StepContext, UpdateRule
from scoregan.trainers.ema import EMA
from scoregan.trainers.registry import register_trainer

OT_SOLVERS: tuple[str, ...] = ("auto", "scipy", "pot")


def _pot_available() -> bool:
    try:
        import ot  # noqa: F401
    except ImportError:
        return False
    return True


def _pot_permutation(cost: np.ndarray) -> np.ndarray | None:
    """POT's network simplex on uniform weights: an optimal vertex of the Birkhoff polytope, i.e. a
    permutation (Birkhoff–von Neumann). None if it did not converge or returned anything else."""
    import ot

    n = cost.shape[0]
    w = np.full(n, 1.0 / n)
    plan, log = ot.emd(w, w, cost, numItermax=10_000_000, log=True)
    if log.get("result_code") != 1:
        return None
    perm = plan.argmax(axis=1)
    if np.count_nonzero(plan > 0.5 / n) != n or len(np.unique(perm)) != n:
        return None
    return perm


def minibatch_ot_permutation(x0: torch.Tensor, x1: torch.Tensor, solver: str = "auto") -> torch.Tensor:
    """The exact OT coupling of two equal-size batches (N, d) with uniform weights and cost ‖x0_i − x1_j‖²:
    a permutation π (N,) (int64, on x0's device) minimising Σ_i ‖x0_i − x1_{π(i)}‖².

    solver: "scipy" (``linear_sum_assignment``, the Jonker–Volgenant assignment algorithm), "pot" (POT's
    exact network simplex, which returns a permutation for uniform weights; often faster on clustered
    data), or "auto" (POT when it is installed, else scipy). Both are exact; they can differ only on ties.
    """
    check_choice("solver", solver, OT_SOLVERS)
    check_matrix("x0", x0)
    check_matrix("x1", x1, dim=x0.shape[1])
    if x0.shape[0] != x1.shape[0]:
        raise ValueError(f"x0 and x1 must have the same number of rows for a permutation coupling, "
                         f"got {x0.shape[0]} and {x1.shape[0]}")
    a, b = x0.detach().to("cpu", torch.float64).numpy(), x1.detach().to("cpu", torch.float64).numpy()
    cost = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
    if solver == "pot" and not _pot_available():
        raise ValueError("solver='pot' needs the POT package (pip install pot); use 'scipy' or 'auto'")
    perm = _pot_permutation(cost) if solver == "pot" or (solver == "auto" and _pot_available()) else None
    if perm is None:
        rows, cols = linear_sum_assignment(cost)
        perm = np.empty_like(cols)
        perm[rows] = cols
    return torch.as_tensor(perm, dtype=torch.int64, device=x0.device)


@dataclass
class CFMConfig(TrainerConfig):
    name: str = spec("cfm", help="update rule")
    coupling: str = spec("independent", choices=("independent", "ot"),
                         help="pairing of source and data batches: independent (I-CFM) or exact minibatch OT")
    ot_solver: str = spec("auto", choices=OT_SOLVERS, help="exact OT solver of the ot coupling: scipy's "
                          "linear_sum_assignment, POT's network simplex, or auto (POT when installed)")
    sigma: float = spec(0.0, min=0, help="std σ of the conditional path N((1 − t) x0 + t x1, σ² I)")
    source: str = spec("gaussian", choices=("gaussian", "generator"), help="x0: N(0, source_std² I) or G(z)")
    source_std: float = spec(1.0, min=0, exclusive_min=True, help="std of the Gaussian source")
    source_run: str | None = spec(None, path=True, help="run directory of a trained one-step generator (source: generator)")
    velocity_net: NetConfig = spec(default_factory=lambda: NetConfig(hidden=[64, 64, 64], activation="silu"),
                                   help="the velocity network v(x, t)")
    embedding: str = spec("sinusoidal", choices=EMBEDDINGS, help="time embedding of v(x, t)")
    embed_dim: int = spec(16, min=2, help="width of the sinusoidal time embedding")
    ema: float = spec(0.0, min=0, max=0.99999, help="EMA decay of the sampling copy of v (0: sample with v itself)")
    solver: str = spec("dopri5", choices=ODE_METHODS, help="ODE solver for sampling")
    ode_steps: int | None = spec(None, min=1, help="steps of a fixed-grid solver (euler, midpoint, rk4)")
    atol: float = spec(1e-4, min=0, exclusive_min=True, help="absolute tolerance of an adaptive solver")
    rtol: float = spec(1e-4, min=0, exclusive_min=True, help="relative tolerance of an adaptive solver")

    def __post_init__(self) -> None:
        fixed = self.solver in FIXED_METHODS
        if fixed and self.ode_steps is None:
            raise ConfigError(f"trainer.ode_steps is required with trainer.solver = {self.solver!r}")
        if not fixed and self.ode_steps is not None:
            raise ConfigError(f"trainer.ode_steps = {self.ode_steps} applies to the fixed-grid solvers "
                              f"{', '.join(FIXED_METHODS)}; trainer.solver = {self.solver!r} uses atol / rtol")
        if self.source == "generator":
            if self.source_run is None:
                raise ConfigError("trainer.source_run must name a trained generator's run directory "
                                  "when trainer.source = 'generator'")
        elif self.source_run is not None:
            raise ConfigError("trainer.source_run is used only with trainer.source = 'generator'")


@dataclass
class OTCFMConfig(CFMConfig):
    name: str = spec("ot-cfm", help="update rule")
    coupling: str = spec("ot", choices=("independent", "ot"),
                         help="pairing of source and data batches: independent (I-CFM) or exact minibatch OT")


@register_trainer
class FlowMatching(UpdateRule):
    """Conditional flow matching with an independent coupling (I-CFM); module doc."""

    name = "cfm"
    Config = CFMConfig

    def build(self) -> None:
        c, d = self.tcfg, self.data.dim
        net = make_velocity_net(self.cfg.model, c.velocity_net, d, self.data.image_shape, embedding=c.embedding,
                                embed_dim=c.embed_dim)
        self.v = self.add_module("velocity", net)
        self.opt = self.add_optimizer("velocity", self.adam(self.v.parameters(), self.cfg.optim.lr_g))
        self.v_ema = self.add_module("velocity_ema", copy.deepcopy(self.v)) if c.ema > 0 else None
        self._ema = None
        if self.v_ema is not None:
            self.v_ema.requires_grad_(False)
            self._ema = EMA(self.v_ema, self.v, c.ema)
        self.source_G = None
        if c.source == "generator":
            if self.source is None:
                raise ValueError("trainer.source = 'generator' needs the trained generator of trainer.source_run; "
                                 "build the rule with source=SourceGenerator(...) (scoregan.experiment.runs.build_rule "
                                 "loads it)")
            if self.source.dim != d:
                raise ValueError(f"trainer.source_run = {c.source_run!r} generates dimension {self.source.dim}, "
                                 f"but the target has dimension {d}")
            self.source_latent = self.source.latent_dim
            self.source_G = self.add_module("source_generator", self.source.network)
            self.source_G.requires_grad_(False)
            self.source_G.eval()
        self.last_nfe = 0

    # -- pairs ------------------------------------------------------------------------------------
    def source_batch(self, n: int, noise) -> torch.Tensor:
        """x0 (n, d) from ``noise(n, k)`` (standard normal draws)."""
        if self.source_G is None:
            return self.tcfg.source_std * noise(n, self.data.dim)
        with torch.no_grad():
            return self.source_G(noise(n, self.source_latent))

    def pairs(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        x1 = ctx.real()
        x0 = self.source_batch(x1.shape[0], ctx.normal)
        if self.tcfg.coupling == "ot":
            x1 = x1[minibatch_ot_permutation(x0, x1, self.tcfg.ot_solver)]
        return x0, x1

    def conditional(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
                    eps: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, u_t) = ((1 − t) x0 + t x1 + σ ε, x1 − x0) for t (N,)."""
        xt = (1 - t)[:, None] * x0 + t[:, None] * x1
        if eps is not None:
            xt = xt + self.tcfg.sigma * eps
        return xt, x1 - x0

    def step(self, ctx: StepContext) -> dict[str, float]:
        x0, x1 = self.pairs(ctx)
        n = x0.shape[0]
        t = ctx.uniform(n)
        eps = ctx.normal(n, self.data.dim) if self.tcfg.sigma > 0 else None
        xt, u = self.conditional(x0, x1, t, eps)
        loss = (self.v(xt, t) - u).pow(2).sum(dim=1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.v)
        self.opt.step()
        if self._ema is not None:
            self._ema.update()
        return {"loss_v": loss.item()}

    # -- sampling and likelihood --------------------------------------------------------------------
    @property
    def field(self) -> torch.nn.Module:
        """The velocity network samples use (the EMA copy when ``ema`` > 0)."""
        return self.v_ema if self.v_ema is not None else self.v

    def _solver(self) -> dict:
        c = self.tcfg
        return {"method": c.solver, "atol": c.atol, "rtol": c.rtol, "steps": c.ode_steps}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        noise = lambda m, k: torch.randn(m, k, generator=generator, device=self.device, dtype=self.dtype)
        sol = integrate(self.field, self.source_batch(n, noise), **self._solver())
        self.last_nfe = sol.nfe
        return sol.x

    def log_prob(self, x: torch.Tensor, *, divergence: str = "auto", n_probes: int = 1,
                 generator: torch.Generator | None = None) -> LikelihoodSolution:
        """log p1(x) (N,) of the model at data points x (N, d), exact by the change of variables
        (Gaussian source only: a generator's output has no density here)."""
        if self.source_G is not None:
            raise ValueError("log_prob needs trainer.source = 'gaussian': a generator source has no tractable density")
        s, d = self.tcfg.source_std, self.data.dim

        def source_log_prob(z: torch.Tensor) -> torch.Tensor:
            return -0.5 * (z / s).pow(2).sum(1) - d * (math.log(s) + 0.5 * math.log(2 * math.pi))

        return log_likelihood(self.field, x.to(self.device, self.dtype), source_log_prob, divergence=divergence,
                              n_probes=n_probes, generator=generator, **self._solver())


@register_trainer
class OTFlowMatching(FlowMatching):
    """OT-CFM: each minibatch paired by its exact optimal transport permutation."""

    name = "ot-cfm"
    Config = OTCFMConfig

"""Guided Langevin refinement of a trained run (``scoregan sample RUN_DIR --langevin``).

Every chain starts from the generator's own draws x0 = G(z0), z0 ~ N(0, I) (the same draws as
``scoregan sample`` with the same seed). What guides it depends on the trainer (docs/theory.md §10):

- a scalar discriminator (GAN, f-GAN, LSGAN, hinge, WGAN-GP): ψ = log r read through the rule's
  ``discriminator_link`` (:class:`DiscriminatorGuidance`);
- a closed-form kernel witness (kernel-flow, and gmmn, which has the same kernel and no network):
  ψ = D̂(x) = (1/M) Σ_j k(x, y_j) − (1/N) Σ_i k(x, x_i) with the run's kernel, a bank y_1..y_M of
  the run's data (seed + 3) and the current particles x_1..x_N (:class:`KernelGuidance`, bound to
  the ensemble at every step). ∇D̂ is the MMD gradient flow's direction (the flow the run trained
  with), not a log-ratio: the chain samples about p_g·e^{λD̂}, not p_d (the report's ``note``);
- a data score network (score-gan): no guidance, the chain is annealed-Langevin's at one level on
  s_d(x, σ) ≈ ∇log(p_d * N(0, σ²I)) itself, data space only (below).

Two spaces:

- ``space="latent"``: z ← z + η ∇_z(log N(z; 0, I) + λ·ψ(G(z))) + √(2η) ξ, then x = G(z)
  (:func:`~scoregan.sampling.latent_langevin`; the witness through :class:`PullbackGuidance`, with
  the repulsion between the decoded particles G(z_i)). Its stationary law pushes forward to p_d when
  ψ = log p_d/p_g exactly and λ = 1. Score-gan runs are refused: s_d pulled back through G is not
  the gradient of a latent log-density of p_d (that needs log r, i.e. also s_g).
- ``space="data"``: x ← x + η (s(x) + λ∇ψ(x)) + √(2η) ξ at noise level h, then Tweedie's
  denoising step x + h²(s + λ∇ψ). For the guided runs s = ŝ_g, the exact score of a Gaussian kernel
  density estimate of p_g (a bank of generator samples, h by Scott's rule), so ŝ_g + ∇log r ≈ s_d at
  noise level h. For score-gan s = s_d(·, σ) with h = σ the run's smallest noise level (``sigma``
  for ``sigma_mode: fixed``, else ``sigma_min``), the level its data score resolves the modes at: the
  chain then targets p_d * N(0, σ²I) and the last step denoises it (s_g + ∇log r would estimate the
  same score with the lagging online s_g, and exists only with a ratio network). The scores vary on
  the scale h (Lipschitz constant about 1/h²), so ``step_size`` is relative there: η = step_size·h²
  (stable for step_size ≲ 0.5). Meant for low-dimensional data (a KDE score degrades with d).

Latent space has a fixed scale (the N(0, I) prior), so there ``step_size`` is η itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoregan._dist import gather, mean_over_ranks, world
from scoregan._checks import check_choice, check_int, check_positive
from scoregan.data import ImageDataset
from scoregan.experiment.distributed import setup
from scoregan.experiment.evaluation import compare_to_target, nonfinite_rows
from scoregan.experiment.runs import Run, load_run
from scoregan.objectives import Kernel
from scoregan.sampling.guidance import (
    DiscriminatorGuidance,
    KernelGuidance,
    PullbackGuidance,
)
from scoregan.sampling.langevin import check_guidance_scale, langevin, latent_langevin
from scoregan.sampling.plots import plot_before_after
from scoregan.sampling.steps import StandardNormal
from scoregan.scores import BankScore, scott_bandwidth
from scoregan.trainers.adversarial import divergence_of
from scoregan.trainers.score_gan import ScoreGAN

__all__ = ["guidance_for_run", "langevin_from_run", "data_score_sigma", "REFERENCE_SIZE", "EVALS",
           "CHEAP_DISTANCES"]

SPACES = ("latent", "data")
#: the evaluation levels of :func:`langevin_from_run`: no metrics, all but exact W2, all of them
EVALS = ("none", "cheap", "full")
#: the distances of the cheap report (exact W2, O(n³), dominates a full report's cost)
CHEAP_DISTANCES = ("sliced_w2", "mmd2", "energy", "fd")
#: default M, the data points of a kernel run's witness bank
REFERENCE_SIZE = 2048


def _is_kernel_run(run: Run) -> bool:
    return run.discriminator is None and isinstance(getattr(run.rule, "kernel", None), Kernel)


def guidance_for_run(run: Run, *, reference_size: int = REFERENCE_SIZE,
                     seed: int = 0) -> DiscriminatorGuidance | KernelGuidance:
    """The guidance field ψ of a trained run (module docstring).

    A scalar discriminator is read through its rule's ``discriminator_link`` (the (non-)saturating
    GAN's logit, an f-GAN critic's log r, the least-squares GAN's D = p_d/(p_d + p_g)); a kernel run
    (no discriminator, a ``kernel``) gives ``KernelGuidance(kernel, y)`` with y (reference_size, d)
    data drawn with a CPU generator seeded ``seed + 3``. ValueError naming the trainer otherwise
    (a feature-map discriminator, a score-gan run: see :func:`langevin_from_run`, flow matching).
    """
    name, link = run.config.trainer.name, type(run.rule).discriminator_link
    if _is_kernel_run(run):
        check_int("reference_size", reference_size, minimum=1)
        y = run.data.sample(reference_size, generator=torch.Generator().manual_seed(seed + 3))
        return KernelGuidance(run.rule.kernel, y.to(run.device, getattr(torch, run.config.train.dtype)))
    if run.discriminator is None:
        hint = " (score-gan runs are refined by their data score: langevin_from_run)" if name == "score-gan" else ""
        raise ValueError(f"run_dir={str(run.run_dir)!r}: this run has no discriminator or kernel witness to guide "
                         f"with (trainer {name!r}){hint}")
    if link is None:
        raise ValueError(f"run_dir={str(run.run_dir)!r}: the discriminator of trainer {name!r} is not a scalar "
                         f"critic (mmd-gan's is a feature map x -> R^feature_dim); Langevin guidance needs a "
                         f"GAN, f-GAN, LSGAN, hinge, WGAN-GP, kernel-flow, gmmn or score-gan run")
    if link == "fgan":
        return DiscriminatorGuidance(run.discriminator, link="fgan", divergence=divergence_of(run.config.trainer))
    return DiscriminatorGuidance(run.discriminator, link=link)


def data_score_sigma(run: Run) -> float:
    """σ of a score-gan run's data-space chain: ``trainer.sigma`` when fixed, else ``sigma_min``."""
    c = run.config.trainer
    return float(c.sigma if c.sigma_mode == "fixed" else c.sigma_min)


class _DataScore:
    """s_d(x, σ) (N, d) of a score-gan rule at a scalar σ (a noise-conditional score for the driver)."""

    def __init__(self, rule: ScoreGAN) -> None:
        self.rule = rule

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        with torch.no_grad():
            return self.rule.data_score(x, torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device))


def _scalars(prefix: str, report: dict[str, Any]) -> dict[str, float | int]:
    return {f"{k}_{prefix}": v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _quality(samples: torch.Tensor, run: Run, seed: int, level: str) -> dict[str, Any]:
    """The toy metrics of ``samples`` against fresh target samples (seed + 1; metrics seed + 2);
    ``level`` "cheap" leaves out exact W2."""
    distances = CHEAP_DISTANCES if level == "cheap" else ("w2", *CHEAP_DISTANCES)
    return compare_to_target(samples, run.data, reference_seed=seed + 1, metric_seed=seed + 2, distances=distances,
                             heldout=False)[0]


def _eval_level(metrics: str | bool) -> str:
    if isinstance(metrics, bool):
        return "full" if metrics else "none"
    return check_choice("metrics", metrics, EVALS)


def langevin_from_run(
    run_dir: str | Path,
    *,
    n: int,
    steps: int,
    step_size: float,
    guidance_scale: float = 1.0,
    space: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    mala: bool = False,
    bandwidth: float | None = None,
    reference_size: int = REFERENCE_SIZE,
    device: str | torch.device = "cpu",
    checkpoint: str = "last",
    metrics: str | bool = "cheap",
    progress: bool = False,
) -> dict[str, Any]:
    """Refine ``n`` samples of a trained run by guided Langevin dynamics (the chains of the module docstring).

    Args:
        run_dir: a run directory written by ``scoregan train``: a scalar-discriminator run (read as
            log r through its rule's ``discriminator_link``; a hinge or WGAN critic is used like a
            logit but is not a log-ratio, see :class:`DiscriminatorGuidance`), a kernel run
            (kernel-flow, gmmn: its witness) or a score-gan run (its data score). The generator is
            the one ``scoregan sample`` draws with (its moving average with ``trainer.ema`` > 0).
        n: number of samples; steps: Langevin steps; guidance_scale: λ (score-gan: 1 only, no guidance).
        step_size: η in latent space; in data space η = step_size·h² (module docstring).
        space: ``"latent"`` (chain on z, returns G(z)) or ``"data"`` (chain on x); None: latent,
            data for score-gan runs (which refuse latent).
        seed: seeds z0 (the same draws as ``scoregan sample --seed``), the chain noise, the
            evaluation's reference samples (seed + 1, + 2) and a kernel run's data bank (seed + 3).
        out: an ``.npz`` path: arrays ``x`` (refined samples, as ``scoregan sample`` writes),
            ``x0`` (the generator's draws) and ``z`` (latent space); a before/after figure
            (``.png``) and the scalar report (``.json``) beside it.
        mala: Metropolis-adjust every step (the acceptance rate is reported; not for score-gan,
            whose score network has no log-density).
        bandwidth: data-space noise level h: the KDE bandwidth (Scott's rule on the bank when None),
            or σ of a score-gan run's s_d (:func:`data_score_sigma` when None).
        reference_size: M, the data points of a kernel run's witness (default 2048).
        device, checkpoint: where and which checkpoint to load (:func:`scoregan.experiment.runs.load_run`).
        metrics: ``"cheap"`` (default: sliced W2, MMD², energy, Fréchet distance and mode statistics,
            before and after), ``"full"`` (and exact W2, O(n³)) or ``"none"``; True / False mean
            "full" / "none".
        progress: a tqdm bar over the Langevin steps.

    Returns:
        a dict: ``samples`` (n, d) and ``initial`` (n, d) CPU tensors (``latents`` too in latent
        space), and scalars: the settings, ``guidance`` ("discriminator", "kernel witness" or
        "data score"), ``eta``, ``logit_before`` / ``logit_after`` (discriminator runs: mean ψ, with
        ``link``), ``witness_before`` / ``witness_after`` (kernel runs: mean D̂ over the particles,
        ensemble = those particles, with ``kernel`` and ``reference_size``), ``sigma`` (score-gan),
        ``bandwidth`` (data space), ``note`` (when the chain does not target p_d), ``acceptance_rate``
        (with ``mala``), ``nonfinite_after``, ``eval`` (the metrics level) and each metric as
        ``<name>_before`` / ``<name>_after`` (``w2_*`` only with "full"; for mixtures
        ``hq_fraction_*``, ``modes_covered_*``...).
    """
    check_int("n", n, minimum=1)
    check_int("steps", steps, minimum=1)
    check_positive("step_size", step_size)
    check_guidance_scale(guidance_scale)
    if space is not None:
        check_choice("space", space, SPACES)
    check_int("seed", seed, minimum=0)
    check_int("reference_size", reference_size, minimum=1)
    level = _eval_level(metrics)
    if bandwidth is not None:
        check_positive("bandwidth", bandwidth)
    if out is not None and Path(out).suffix != ".npz":
        raise ValueError(f"out must be an .npz path, got {str(out)!r}")
    setup(str(device))  # joins the process group under torchrun (particles are then sharded)
    run = load_run(run_dir, device=device, checkpoint=checkpoint)
    score_run = isinstance(run.rule, ScoreGAN)
    space = space or ("data" if score_run else "latent")
    if score_run:
        _check_score_run(space, guidance_scale, mala)
        guidance = None
    else:
        guidance = guidance_for_run(run, reference_size=reference_size, seed=seed)
    G = run.sampling_generator
    dtype = getattr(torch, run.config.train.dtype)
    g = torch.Generator(device=run.device).manual_seed(seed)
    z0 = torch.randn(n, run.latent_dim, generator=g, device=run.device, dtype=dtype)
    rank, size = world()
    if size > 1:  # under torchrun each rank moves its block of the particles, with its own chain noise
        if n % size:
            raise ValueError(f"n={n} particles do not split evenly over {size} processes")
        z0 = z0[rank * (n // size):(rank + 1) * (n // size)]
    with torch.no_grad():
        x0 = G(z0)
    kind = "data score" if score_run else ("kernel witness" if isinstance(guidance, KernelGuidance) else "discriminator")
    report: dict[str, Any] = {"run_dir": str(run_dir), "space": space, "n": n, "steps": steps, "step_size": step_size,
                              "guidance_scale": guidance_scale, "seed": seed, "trainer": run.config.trainer.name,
                              "guidance": kind, "train_step": run.step, "eval": level}
    report.update(_guidance_notes(run, guidance, reference_size))
    common = {"guidance_scale": guidance_scale, "mala": mala, "generator": g, "return_info": True,
              "progress": progress}
    if size > 1:  # the chain noise of each rank its own; the data-space bank still drawn from g (the same)
        common["generator"] = torch.Generator(device=run.device).manual_seed(seed + 1_000_003 * (rank + 1))
    x, info = _chain(run, guidance, space, z0, x0, steps, step_size, bandwidth, common, report, bank_rng=g)
    return _finish(report, run, guidance, x0, x, info, level, out)


def _guidance_notes(run: Run, guidance: Any, reference_size: int) -> dict[str, Any]:
    """What the report says of the guidance: the link, the kernel, and a note where the chain's law is not p_d."""
    if isinstance(guidance, DiscriminatorGuidance):
        out: dict[str, Any] = {"link": guidance.link}
        if type(run.rule).discriminator_is_critic:
            out["note"] = "IPM-style critic, not a log-ratio: the chain samples p_g·exp(λ·critic), not p_d"
        return out
    if isinstance(guidance, KernelGuidance):
        return {"kernel": run.config.trainer.kernel, "reference_size": reference_size,
                "note": "kernel witness, not a log-ratio: the drift is the MMD gradient flow's direction; "
                        "the chain samples about p_g·exp(λ·witness), not p_d"}
    return {}


def _chain(run: Run, guidance: Any, space: str, z0: torch.Tensor, x0: torch.Tensor, steps: int, step_size: float,
           bandwidth: float | None, common: dict[str, Any], report: dict[str, Any], *,
           bank_rng: torch.Generator) -> tuple[torch.Tensor, Any]:
    """Run the chain of the module docstring for ``space`` (the data-space bank drawn from ``bank_rng``);
    its settings go into ``report``. (x, info)."""
    G = run.sampling_generator
    if space == "latent":
        if isinstance(guidance, KernelGuidance):
            z, info = langevin(z0, score=StandardNormal(), guidance=PullbackGuidance(G, guidance), sigmas=1.0,
                               steps_per_level=steps, step_size=step_size, denoise=False, **common)
            with torch.no_grad():
                x = G(z)
        else:
            z, x, info = latent_langevin(z0, G, guidance, steps=steps, step_size=step_size, **common)
        report["latents"], report["eta"] = z.detach().cpu(), step_size
        return x, info
    if isinstance(run.rule, ScoreGAN):
        score, h = _DataScore(run.rule), float(bandwidth) if bandwidth is not None else data_score_sigma(run)
        report["sigma"] = h
    else:
        with torch.no_grad():
            bank = G(torch.randn(max(report["n"], 2048), run.latent_dim, generator=bank_rng, device=run.device,
                                 dtype=x0.dtype))
        score, h = BankScore(bank), float(bandwidth) if bandwidth is not None else scott_bandwidth(bank)
    report["bandwidth"], report["eta"] = h, step_size * h * h
    return langevin(x0, score=score, guidance=guidance, sigmas=h, steps_per_level=steps,
                    step_size=step_size * h * h, **common)


def _finish(report: dict[str, Any], run: Run, guidance: Any, x0: torch.Tensor, x: torch.Tensor, info: Any,
            level: str, out: str | Path | None) -> dict[str, Any]:
    """Complete the report (acceptance, ψ before and after, metrics) and write ``out`` unless non-finite."""
    if info.acceptance_rate is not None:
        report["acceptance_rate"] = info.acceptance_rate
    if guidance is not None:  # each rank's mean over its block, averaged over the (equal) blocks
        name = "witness" if report["guidance"] == "kernel witness" else "logit"
        report.update(mean_over_ranks({f"{name}_before": float(guidance.value(x0).mean()),
                                       f"{name}_after": float(guidance.value(x).mean())}, x.device))
    x0, x = gather(x0.detach()), gather(x.detach())  # every rank's block, in rank order
    if "latents" in report:
        report["latents"] = gather(report["latents"].to(x.device)).cpu()
    x0c, xc = x0.to("cpu", torch.float32), x.to("cpu", torch.float32)
    report["nonfinite_after"] = nonfinite_rows(xc)
    if level != "none" and report["nonfinite_after"] == 0:
        report.update(_scalars("before", _quality(x0c, run, report["seed"], level)))
        report.update(_scalars("after", _quality(xc, run, report["seed"], level)))
    report["samples"], report["initial"] = xc, x0c
    if out is not None and world()[0] == 0:  # written once
        if report["nonfinite_after"]:
            raise ValueError(f"{report['nonfinite_after']} of {report['n']} refined samples are NaN or infinite: "
                             f"nothing written to {str(out)!r} (the chain diverged: lower --step-size)")
        _write(Path(out), report, run)
    return report


def _check_score_run(space: str, guidance_scale: float, mala: bool) -> None:
    """A score-gan run's chain is s_d's own, in data space (module docstring): ValueError otherwise."""
    if space != "data":
        raise ValueError("score-gan runs are refined in data space by their data score s_d(x, σ) (pulled back "
                         "through G it is no latent log-density): use space='data' (--space data)")
    if guidance_scale != 1.0:
        raise ValueError(f"guidance_scale={guidance_scale!r}: a score-gan run's chain follows its data score alone "
                         f"(no guidance field to scale); drop it")
    if mala:
        raise ValueError("mala=True needs log p_d, which a score-gan run's data score network does not give; drop it")


def _write(out: Path, report: dict[str, Any], run: Run) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    shape = run.data.image_shape  # drawn as images when the points are images (flat digits too)
    arrays = {"x": report["samples"].numpy(), "x0": report["initial"].numpy()}
    if isinstance(run.data, ImageDataset):  # image data: (n, C, H, W), as api.sample writes them
        arrays = {k: v.reshape(v.shape[0], *shape) for k, v in arrays.items()}
    if "latents" in report:
        arrays["z"] = report["latents"].numpy()
    np.savez(out, **arrays)
    scalars = {k: v for k, v in report.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    scalars = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in scalars.items()}
    out.with_suffix(".json").write_text(json.dumps(scalars, indent=2) + "\n")
    n = report["samples"].shape[0]
    ref = run.data.sample(n, generator=torch.Generator().manual_seed(report["seed"] + 1))
    mix = getattr(run.data, "mixture", None)
    lam = "" if report["guidance"] == "data score" else f", λ={report['guidance_scale']:g}"
    if torch.isfinite(report["samples"]).all():
        plot_before_after(report["initial"], report["samples"], ref, out.with_suffix(".png"),
                          means=None if mix is None else mix.means,
                          titles=("generator", f"{report['guidance']} Langevin ({report['space']}{lam})"),
                          suptitle=f"{run.config.name}: {n} samples", image_shape=shape)

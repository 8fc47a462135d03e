"""Discriminator-guided Langevin refinement of a trained run (``scoregan sample RUN_DIR --langevin``).

Two chains, both started from the generator's own draws x0 = G(z0), z0 ~ N(0, I) (the same draws
as ``scoregan sample`` with the same seed):

- ``space="latent"``: z ← z + η ∇_z(log N(z; 0, I) + λ·logit D(G(z))) + √(2η) ξ, then x = G(z)
  (:func:`~scoregan.sampling.latent_langevin`). Its stationary law pushes forward to p_d when
  logit D = log p_d/p_g exactly and λ = 1.
- ``space="data"``: x ← x + η (ŝ_g(x) + λ∇logit D(x)) + √(2η) ξ, where ŝ_g is the exact score of
  a Gaussian kernel density estimate of p_g (a bank of generator samples, bandwidth h by Scott's
  rule): ŝ_g = ∇log(p̂_g * N(0, h²I)), so ŝ_g + ∇log r ≈ s_d at noise level h, and the run ends
  with Tweedie's denoising step x + h²(ŝ_g + λ∇ψ). The KDE score varies on the scale h (its
  Lipschitz constant is about 1/h²), so here ``step_size`` is relative: η = step_size·h²
  (stable for step_size ≲ 0.5). Meant for low-dimensional data (the KDE score degrades with
  the dimension).

Latent space has a fixed scale (the N(0, I) prior), so there ``step_size`` is η itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoregan._checks import check_choice, check_int, check_positive
from scoregan.experiment.evaluation import compare_to_target, nonfinite_rows
from scoregan.experiment.runs import Run, load_run
from scoregan.sampling.guidance import DiscriminatorGuidance
from scoregan.sampling.langevin import check_guidance_scale, langevin, latent_langevin
from scoregan.sampling.plots import plot_before_after
from scoregan.scores import BankScore, scott_bandwidth
from scoregan.trainers.adversarial import divergence_of

__all__ = ["guidance_for_run", "langevin_from_run"]

SPACES = ("latent", "data")

def guidance_for_run(run: Run) -> DiscriminatorGuidance:
    """The :class:`DiscriminatorGuidance` of a trained run, read through its rule's
    ``discriminator_link`` (the (non-)saturating GAN's logit, an f-GAN critic's log r, the
    least-squares GAN's D = p_d/(p_d + p_g)); ValueError naming the trainer where there is no scalar
    discriminator."""
    name, link = run.config.trainer.name, type(run.rule).discriminator_link
    if run.discriminator is None:
        raise ValueError(f"run_dir={str(run.run_dir)!r}: this run has no discriminator to guide with "
                         f"(trainer {name!r})")
    if link is None:
        raise ValueError(f"run_dir={str(run.run_dir)!r}: the discriminator of trainer {name!r} is not a scalar "
                         f"critic (mmd-gan's is a feature map x -> R^feature_dim); Langevin guidance needs a "
                         f"GAN, f-GAN, LSGAN, hinge or WGAN-GP run")
    if link == "fgan":
        return DiscriminatorGuidance(run.discriminator, link="fgan", divergence=divergence_of(run.config.trainer))
    return DiscriminatorGuidance(run.discriminator, link=link)


def _scalars(prefix: str, report: dict[str, Any]) -> dict[str, float | int]:
    return {f"{k}_{prefix}": v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _quality(samples: torch.Tensor, run: Run, seed: int) -> dict[str, Any]:
    """The toy metrics of ``samples`` against fresh target samples (seed + 1; metrics seed + 2)."""
    return compare_to_target(samples, run.data, reference_seed=seed + 1, metric_seed=seed + 2, heldout=False)[0]


def langevin_from_run(
    run_dir: str | Path,
    *,
    n: int,
    steps: int,
    step_size: float,
    guidance_scale: float = 1.0,
    space: str = "latent",
    seed: int = 0,
    out: str | Path | None = None,
    mala: bool = False,
    bandwidth: float | None = None,
    device: str | torch.device = "cpu",
    checkpoint: str = "last",
    metrics: bool = True,
) -> dict[str, Any]:
    """Refine ``n`` samples of a trained GAN run by discriminator-guided Langevin dynamics.

    Args:
        run_dir: a run directory written by ``scoregan train`` with a scalar discriminator, read as
            log r through its rule's ``discriminator_link`` (the logit for the GAN
            trainers, log r for the f-GAN, D = p_d/(p_d + p_g) for the LSGAN); a hinge or WGAN
            critic is used like a logit but is not a log-ratio (see :class:`DiscriminatorGuidance`).
            The generator is the one ``scoregan sample`` draws with (its moving average with
            ``trainer.ema`` > 0).
        n: number of samples; steps: Langevin steps; guidance_scale: λ.
        step_size: η in latent space; in data space η = step_size·h² (module docstring).
        space: ``"latent"`` (chain on z, returns G(z)) or ``"data"`` (chain on x with a KDE score
            of the generator; see the module docstring).
        seed: seeds z0 (the same draws as ``scoregan sample --seed``), the chain noise, and the
            evaluation's reference samples.
        out: an ``.npz`` path: arrays ``x`` (refined samples, as ``scoregan sample`` writes),
            ``x0`` (the generator's draws) and ``z`` (latent space); a before/after figure
            (``.png``) and the scalar report (``.json``) beside it.
        mala: Metropolis-adjust every step (the acceptance rate is reported).
        bandwidth: KDE bandwidth h for ``space="data"`` (Scott's rule on the bank when None).
        device, checkpoint: where and which checkpoint to load (:func:`scoregan.experiment.runs.load_run`).
        metrics: compute the toy metrics before and after (W2, MMD, mode statistics...).

    Returns:
        a dict: ``samples`` (n, d) and ``initial`` (n, d) CPU tensors (``latents`` too in latent
        space), and scalars: the settings, ``logit_before`` / ``logit_after`` (mean discriminator
        logit), ``acceptance_rate`` (with ``mala``), and each metric as ``<name>_before`` /
        ``<name>_after`` (for mixtures: ``hq_fraction_*``, modes covered...).
    """
    check_int("n", n, minimum=1)
    check_int("steps", steps, minimum=1)
    check_positive("step_size", step_size)
    check_guidance_scale(guidance_scale)
    check_choice("space", space, SPACES)
    check_int("seed", seed, minimum=0)
    if bandwidth is not None:
        check_positive("bandwidth", bandwidth)
    if out is not None and Path(out).suffix != ".npz":
        raise ValueError(f"out must be an .npz path, got {str(out)!r}")
    run = load_run(run_dir, device=device, checkpoint=checkpoint)
    G, guidance = run.sampling_generator, guidance_for_run(run)
    dtype = getattr(torch, run.config.train.dtype)
    g = torch.Generator(device=run.device).manual_seed(seed)
    z0 = torch.randn(n, run.latent_dim, generator=g, device=run.device, dtype=dtype)
    with torch.no_grad():
        x0 = G(z0)
    report: dict[str, Any] = {"run_dir": str(run_dir), "space": space, "n": n, "steps": steps, "step_size": step_size,
                              "guidance_scale": guidance_scale, "seed": seed, "trainer": run.config.trainer.name,
                              "link": guidance.link, "train_step": run.step}
    if type(run.rule).discriminator_is_critic:
        report["note"] = "IPM-style critic, not a log-ratio: the chain samples p_g·exp(λ·critic), not p_d"
    if space == "latent":
        z, x, info = latent_langevin(z0, G, guidance, steps=steps, step_size=step_size, guidance_scale=guidance_scale,
                                     generator=g, mala=mala, return_info=True)
        report["latents"], report["eta"] = z.detach().cpu(), step_size
    else:
        bank_n = max(n, 2048)
        with torch.no_grad():
            bank = G(torch.randn(bank_n, run.latent_dim, generator=g, device=run.device, dtype=dtype))
        h = float(bandwidth) if bandwidth is not None else scott_bandwidth(bank)
        report["bandwidth"], report["eta"] = h, step_size * h * h
        x, info = langevin(x0, score=BankScore(bank), guidance=guidance, sigmas=h, steps_per_level=steps,
                           step_size=step_size * h * h, guidance_scale=guidance_scale, mala=mala, generator=g,
                           return_info=True)
    if info.acceptance_rate is not None:
        report["acceptance_rate"] = info.acceptance_rate
    report["logit_before"] = float(guidance.value(x0).mean())
    report["logit_after"] = float(guidance.value(x).mean())
    x0c, xc = x0.detach().to("cpu", torch.float32), x.detach().to("cpu", torch.float32)
    report["nonfinite_after"] = nonfinite_rows(xc)
    if metrics and report["nonfinite_after"] == 0:
        report.update(_scalars("before", _quality(x0c, run, seed)))
        report.update(_scalars("after", _quality(xc, run, seed)))
    report["samples"], report["initial"] = xc, x0c
    if out is not None:
        _write(Path(out), report, run)
    return report


def _write(out: Path, report: dict[str, Any], run: Run) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"x": report["samples"].numpy(), "x0": report["initial"].numpy()}
    if "latents" in report:
        arrays["z"] = report["latents"].numpy()
    np.savez(out, **arrays)
    scalars = {k: v for k, v in report.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    scalars = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in scalars.items()}
    out.with_suffix(".json").write_text(json.dumps(scalars, indent=2) + "\n")
    n = report["samples"].shape[0]
    ref = run.data.sample(n, generator=torch.Generator().manual_seed(report["seed"] + 1))
    mix = getattr(run.data, "mixture", None)
    if torch.isfinite(report["samples"]).all():
        plot_before_after(report["initial"], report["samples"], ref, out.with_suffix(".png"),
                          means=None if mix is None else mix.means,
                          titles=("generator", f"guided Langevin ({report['space']}, λ={report['guidance_scale']:g})"),
                          suptitle=f"{run.config.name}: {n} samples")

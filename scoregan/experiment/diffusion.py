"""Diffusion sampling from a trained score model (a ``dsm`` run): unguided, kernel- or discriminator-guided.

    x_K = σ_max ε,   then a sampler of :mod:`scoregan.sampling` down the EDM grid σ_max … σ_min, 0
    on the score s(x, σ) + λ(σ) ∇ψ_σ(x),   ψ_σ the kernel witness between a bank of real points
    (perturbed to level σ) and the current particles,   λ(σ) = guidance_scale · σ_data² / σ²

(the witness gradient of a Gaussian kernel is O(1/h²) with h ~ the data spacing while the score at
level σ is O(1/σ): the 1/σ² weight lets guidance matter where the score model is least accurate, at
the small noise levels, and fade where the data are still a blur). ``langevin`` runs the annealed
Langevin sampler on the same levels (guidance there is the σ-free witness). ``discriminator`` guidance
(Kim et al. 2022) adds λ ∇ₓ D(x, σ), D the noise-conditional discriminator of a ``dg`` run
(``guidance_run``) trained against THIS score run: logit D* = log p_d^σ − log p_θ^σ, so s_θ + ∇D* is
the data score at every level (constant λ = guidance_scale). The report holds the NFE,
the wall time and, with ``evaluate``, the metrics of :func:`scoregan.experiment.evaluation.compare_to_target`
(the image metrics on image data sets).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoregan.data import ImageDataset
from scoregan.experiment.evaluation import compare_to_target
from scoregan.experiment.runs import Run, load_run
from scoregan.objectives import kernel
from scoregan.plotting import plot_samples
from scoregan.sampling import (DiscriminatorGuidance, KernelGuidance, edm_sigmas, langevin, sample_heun, sample_ode,
                               sample_pc, sample_sde)
from scoregan.sampling.kernel_guidance import NOISE_MODES

SAMPLERS = {"heun": sample_heun, "sde": sample_sde, "pc": sample_pc}
DIFFUSION_SAMPLERS = (*SAMPLERS, "ode", "langevin")
GUIDANCES = ("none", "kernel", "discriminator")
__all__ = ["DIFFUSION_SAMPLERS", "GUIDANCES", "NOISE_MODES", "check_options", "diffusion_from_run", "discriminator_guide"]


def check_options(*, n: int, sampler: str, steps: int, guidance: str, guidance_scale: float, bank: int,
                  guidance_run: str | Path | None = None, kernel_noise: str = "perturb") -> None:
    """One line naming the option for each bad value, before any work."""
    if n < 1:
        raise ValueError(f"--n {n}: must be >= 1")
    if sampler not in DIFFUSION_SAMPLERS:
        raise ValueError(f"--sampler {sampler!r}: choose from {', '.join(DIFFUSION_SAMPLERS)}")
    if steps < 1:
        raise ValueError(f"--steps {steps}: must be >= 1")
    if guidance not in GUIDANCES:
        raise ValueError(f"--guidance {guidance!r}: choose from {', '.join(GUIDANCES)}")
    if not (guidance_scale >= 0 and np.isfinite(guidance_scale)):
        raise ValueError(f"--guidance-scale {guidance_scale}: must be a finite number >= 0")
    if bank < 2:
        raise ValueError(f"--bank {bank}: must be >= 2")
    if kernel_noise not in NOISE_MODES:
        raise ValueError(f"--kernel-noise {kernel_noise!r}: choose from {', '.join(NOISE_MODES)}")
    if guidance == "discriminator" and guidance_run is None:
        raise ValueError("--guidance discriminator needs --guidance-run DG_RUN (a dg run trained on this score run)")
    if guidance_run is not None and guidance != "discriminator":
        raise ValueError(f"--guidance-run {str(guidance_run)!r} acts only with --guidance discriminator")
    if guidance == "discriminator" and sampler == "langevin":
        raise ValueError("--guidance discriminator: use --sampler heun, sde or pc (its D is noise-conditional)")


def discriminator_guide(guidance_run: str | Path, score: Run) -> DiscriminatorGuidance:
    """The guidance ∇ₓ D(x, σ) of the ``dg`` run ``guidance_run``; a one-line ValueError unless that run was
    trained against the score run ``score`` (the same resolved directory); its last checkpoint."""
    where = f"--guidance-run {str(guidance_run)!r}"
    g = load_run(guidance_run)
    if g.config.trainer.name != "dg":
        raise ValueError(f"{where}: a {g.config.trainer.name!r} run, not a discriminator-guidance run (trainer dg)")
    trained_on = Path(g.config.trainer.score_run).resolve()
    if trained_on != Path(score.run_dir).resolve():
        raise ValueError(f"{where}: trained against score run {str(trained_on)!r}, not {str(score.run_dir)!r}")
    return g.rule.guidance()


def diffusion_from_run(run_dir: str | Path, *, n: int, seed: int = 0, sampler: str = "heun", steps: int = 18,
                       guidance: str = "none", guidance_scale: float = 1.0, bank: int = 1024,
                       out: str | Path | None = None, checkpoint: str = "last", evaluate: bool = False,
                       guidance_run: str | Path | None = None,
                       kernel_noise: str = "perturb") -> tuple[torch.Tensor, dict[str, Any]]:
    """``n`` samples of a score-model run (``trainer.name: dsm``) and their report (module doc);
    ``kernel_noise`` is how kernel guidance takes the bank to level σ (:data:`NOISE_MODES`)."""
    check_options(n=n, sampler=sampler, steps=steps, guidance=guidance, guidance_scale=guidance_scale, bank=bank,
                  guidance_run=guidance_run, kernel_noise=kernel_noise)
    run = load_run(run_dir, checkpoint=checkpoint)
    rule = run.rule
    if not callable(getattr(rule, "score", None)) or run.config.trainer.name != "dsm":
        raise ValueError(f"--sampler {sampler!r} needs a score-model run (trainer 'dsm'); {str(run_dir)!r} is a "
                         f"{run.config.trainer.name!r} run (GAN runs: --langevin)")
    size = getattr(run.data, "points", None)
    if guidance == "kernel" and size is not None and bank > size.shape[0]:
        raise ValueError(f"--bank {bank}: the data set has {size.shape[0]} training points")
    c, device, dtype = run.config.trainer, run.device, torch.float32
    sigmas = edm_sigmas(steps, c.sigma_min, c.sigma_max, c.rho, dtype=dtype, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    x0 = sigmas[0] * torch.randn(n, run.data.dim, generator=g, device=device, dtype=dtype)
    guide = None
    if guidance == "kernel":
        ref = run.data.sample(bank, generator=torch.Generator().manual_seed(seed + 7)).to(device, dtype)
        guide = KernelGuidance(kernel("gaussian", bandwidth="median"), ref,
                               **({} if sampler == "langevin" else {"noise": kernel_noise, "noise_seed": seed + 11}))
    elif guidance == "discriminator":
        guide = discriminator_guide(guidance_run, run)
    rule.train(False)
    t0 = time.perf_counter()
    with torch.no_grad():
        if sampler == "langevin":
            levels = sigmas[:-1].clamp_min(max(c.sigma_min, 1e-2))
            x, info = langevin(x0, score=rule.score, guidance=guide, sigmas=levels, steps_per_level=1,
                               step_size=0.1 * float(levels[-1]) ** 2, guidance_scale=guidance_scale if guide else 1.0,
                               generator=g, return_info=True)
            nfe = len(levels) + 1
        else:
            scale = (lambda s: guidance_scale * c.sigma_data**2 / float(s) ** 2) if guidance == "kernel" else \
                guidance_scale if guide is not None else 1.0
            if sampler == "ode":  # adaptive dopri5 in ln σ from σ_max to σ_min (``steps`` does not apply)
                x, info = sample_ode(rule.score, x0, c.sigma_max, c.sigma_min, guidance=guide, guidance_scale=scale,
                                     atol=1e-4, rtol=1e-4, return_info=True)
            else:
                x, info = SAMPLERS[sampler](rule.score, x0, sigmas, guidance=guide, guidance_scale=scale,
                                            generator=g, return_info=True)
            nfe = info.nfe
    wall = time.perf_counter() - t0
    x = x.detach().to("cpu", torch.float32)
    report: dict[str, Any] = {"sampler": sampler, "steps": steps, "nfe": int(nfe), "guidance": guidance,
                              "guidance_scale": guidance_scale, "bank": bank if guide is not None else 0,
                              "seed": seed, "n": n, "sample_wall_s": wall}
    if guidance == "kernel" and sampler != "langevin":
        report["kernel_noise"] = kernel_noise
    if guidance_run is not None:
        report["guidance_run"] = str(Path(guidance_run).resolve())
    if evaluate:
        metrics, _ = compare_to_target(x, run.data, reference_seed=seed + 1, metric_seed=seed + 2,
                                       distances=run.config.eval.distances,
                                       image_metrics=run.config.eval.image_metrics, inception=run.config.eval.inception)
        report.update(metrics)
    if out is not None:
        _write(x, run, Path(out), report, seed)
    return x, report


def _write(x: torch.Tensor, run: Any, out: Path, report: dict[str, Any], seed: int) -> None:
    """out.npz (array 'x', NCHW for image data), out.png (figure with an image grid), out.json (report)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    images = isinstance(run.data, ImageDataset)
    np.savez(out, x=(x.reshape(x.shape[0], *run.data.image_shape) if images else x).numpy())
    ref = run.data.sample(x.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    title = f"{run.config.name}: {report['sampler']}, {report['nfe']} NFE, guidance {report['guidance']}"
    plot_samples(x, ref, out.with_suffix(".png"), title=title, image_shape=run.data.image_shape)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float))

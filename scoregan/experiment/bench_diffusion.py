"""Guided diffusion sampling side by side (``recipes/guided_diffusion.py``).

Given a score model (a run of ``configs/images/<dataset>-dsm.yaml``) and the noise-conditional
discriminator trained against it (``<dataset>-dg.yaml``; the recipe trains both, or reuses them), samples the
same score model
unguided, kernel-guided (the closed-form witness between a real bank perturbed to the sampler's σ and
the particles) and discriminator-guided (∇ logit D(x, σ)) at each NFE budget and seed, and compares the
samples with the held-out images (:func:`scoregan.metrics.image_report` through the run's evaluation):
a Markdown + JSON table (FD, KID ± s.e., precision, recall, NFE, sampling wall time) and one grid per mode.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scoregan.experiment.bench_images import save_grid
from scoregan.experiment.bench_results import save_json_atomic
from scoregan.experiment.diffusion import NOISE_MODES, diffusion_from_run
from scoregan.experiment.runs import load_run

MODES = ("none", "kernel", "discriminator")
#: NFE budgets (sampler steps) per data set: on digits the score model's unguided Heun sampler is at the
#: metric floor from 9 steps (17 NFE) on, so the budgets where sampling error shows are 6 and 7 steps
DEFAULT_STEPS = {"digits": (6, 7), "mnist": (9, 18), "cifar10": (9, 18)}


def run_guided_diffusion(dataset: str, *, score_run: Path, dg_run: Path, out: Path, steps: Sequence[int] | None = None,
                         seeds: Sequence[int] = (0, 1, 2), n: int = 1000, bank: int = 1024, kernel_scale: float = 40.0,
                         discriminator_scale: float = 1.0, kernel_noise: str = "perturb") -> dict[str, Any]:
    """Every (mode, steps, seed) of the module doc on trained ``score_run`` (dsm) and ``dg_run`` (dg);
    writes ``out/table.{md,json}`` and ``out/<mode>.png``."""
    steps = DEFAULT_STEPS.get(dataset, (9, 18)) if steps is None else steps
    if not steps or min(steps) < 1:
        raise ValueError(f"--steps {list(steps)}: give one or more budgets >= 1")
    shape = load_run(score_run).data.image_shape
    rows = []
    for k in steps:
        for seed in seeds:
            for mode in MODES:
                scale = {"none": 0.0, "kernel": kernel_scale, "discriminator": discriminator_scale}[mode]
                x, report = diffusion_from_run(score_run, n=n, seed=seed, steps=k, guidance=mode, guidance_scale=scale,
                                               bank=bank, evaluate=True, kernel_noise=kernel_noise,
                                               guidance_run=dg_run if mode == "discriminator" else None)
                rows.append({"mode": mode, **{key: v for key, v in report.items() if isinstance(v, (int, float, str))}})
                if seed == seeds[0] and k == max(steps):
                    save_grid(x, shape, out / f"{mode}.png", f"{dataset} · {mode} guidance · {report['nfe']} NFE")
                print(f"{mode:>13} steps {k:3d} seed {seed}: FD {report.get('img_fd', float('nan')):.3f}  "
                      f"KID {report.get('img_kid', float('nan')):.3e}  NFE {report['nfe']}  "
                      f"{report['sample_wall_s']:.1f} s", flush=True)
    payload = {"dataset": dataset, "score_run": str(score_run), "dg_run": str(dg_run), "kernel_scale": kernel_scale,
               "discriminator_scale": discriminator_scale, "kernel_noise": kernel_noise, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    save_json_atomic(payload, out / "table.json")
    (out / "table.md").write_text(markdown(dataset, rows))
    return payload


def markdown(dataset: str, rows: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds per (steps, mode); KID in the classifier's feature units with its mean standard
    error over subsets; the wall time relative to the unguided sampler's; in how many seeds guidance beat the
    unguided KID."""
    lines = [f"# {dataset}: guided diffusion sampling of one score model\n",
             "| steps | NFE | guidance | seeds | FD | KID | KID s.e. | precision | recall | sample wall (s) | "
             "wall ÷ unguided | KID < unguided |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in dict.fromkeys(r["steps"] for r in rows):
        base = {r["seed"]: r.get("img_kid") for r in rows if r["steps"] == k and r["mode"] == "none"}
        base_wall = [r["sample_wall_s"] for r in rows if r["steps"] == k and r["mode"] == "none"]
        for mode in MODES:
            rs = [r for r in rows if r["steps"] == k and r["mode"] == mode]
            if not rs:
                continue

            def pm(key: str, fmt: str = ".3f", spread: bool = True) -> str:
                v = [r[key] for r in rs if r.get(key) is not None]
                if not v:
                    return "—"
                return format(statistics.fmean(v), fmt) + (f" ± {statistics.pstdev(v):{fmt}}"
                                                           if spread and len(v) > 1 else "")

            paired = [(r.get("img_kid"), base.get(r["seed"])) for r in rs]
            paired = [(a, b) for a, b in paired if a is not None and b is not None]
            wins = "—" if mode == "none" or not paired else f"{sum(a < b for a, b in paired)}/{len(paired)}"
            ratio = (f"{statistics.median(r['sample_wall_s'] for r in rs) / statistics.median(base_wall):.2f}"
                     if base_wall and min(base_wall) > 0 else "—")
            lines.append(f"| {k} | {rs[0]['nfe']} | {mode} | {len(rs)} | {pm('img_fd')} | {pm('img_kid')} | "
                         f"{pm('img_kid_se', spread=False)} | {pm('img_precision')} | {pm('img_recall')} | "
                         f"{pm('sample_wall_s', fmt='.2f')} | {ratio} | {wins} |")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--dataset", default="digits", choices=("digits", "mnist", "cifar10"))
    p.add_argument("--steps", nargs="+", type=int, default=None,
                   help="sampler steps (NFE budgets; default: 6 7 on digits, 9 18 otherwise)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n", type=int, default=1000, help="samples per cell")
    p.add_argument("--bank", type=int, default=1024, help="real images in the kernel guidance's bank")
    p.add_argument("--kernel-scale", type=float, default=40.0,
                   help="c of the kernel guidance's λ(σ) = c·σ_data²/σ² (40: the best of 30, 50, 70 on digits)")
    p.add_argument("--kernel-noise", default="perturb", choices=NOISE_MODES,
                   help="how the kernel guidance's bank is taken to level σ (scoregan sample --kernel-noise)")
    p.add_argument("--discriminator-scale", type=float, default=1.0,
                   help="λ of the discriminator guidance (1: the exact correction when D is optimal)")
    p.add_argument("--runs", default="runs", help="where the score and discriminator runs live")
    p.add_argument("--out", default=None, help="table folder (default docs/results/guided_diffusion/<dataset>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for both runs (repeatable), e.g. --set train.device=cuda")
    p.add_argument("--set-dg", dest="dg_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the discriminator run only, e.g. --set-dg trainer.pool=2048")
    return p

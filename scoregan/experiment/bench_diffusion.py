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
from scoregan.experiment.diffusion import diffusion_from_run
from scoregan.experiment.runs import load_run

MODES = ("none", "kernel", "discriminator")
KEYS = ("img_fd", "img_kid", "img_precision", "img_recall", "sample_wall_s")


def run_guided_diffusion(dataset: str, *, score_run: Path, dg_run: Path, out: Path, steps: Sequence[int] = (9, 18),
                         seeds: Sequence[int] = (0, 1, 2), n: int = 1000, bank: int = 1024, kernel_scale: float = 1.0,
                         discriminator_scale: float = 1.0) -> dict[str, Any]:
    """Every (mode, steps, seed) of the module doc on trained ``score_run`` (dsm) and ``dg_run`` (dg);
    writes ``out/table.{md,json}`` and ``out/<mode>.png``."""
    if not steps or min(steps) < 1:
        raise ValueError(f"--steps {list(steps)}: give one or more budgets >= 1")
    shape = load_run(score_run).data.image_shape
    rows = []
    for k in steps:
        for seed in seeds:
            for mode in MODES:
                scale = {"none": 0.0, "kernel": kernel_scale, "discriminator": discriminator_scale}[mode]
                x, report = diffusion_from_run(score_run, n=n, seed=seed, steps=k, guidance=mode, guidance_scale=scale,
                                               bank=bank, evaluate=True,
                                               guidance_run=dg_run if mode == "discriminator" else None)
                rows.append({"mode": mode, **{key: v for key, v in report.items() if isinstance(v, (int, float, str))}})
                if seed == seeds[0] and k == max(steps):
                    save_grid(x, shape, out / f"{mode}.png", f"{dataset} · {mode} guidance · {report['nfe']} NFE")
                print(f"{mode:>13} steps {k:3d} seed {seed}: FD {report.get('img_fd', float('nan')):.3f}  "
                      f"KID {report.get('img_kid', float('nan')):.3e}  NFE {report['nfe']}  "
                      f"{report['sample_wall_s']:.1f} s", flush=True)
    payload = {"dataset": dataset, "score_run": str(score_run), "dg_run": str(dg_run), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    save_json_atomic(payload, out / "table.json")
    (out / "table.md").write_text(markdown(dataset, rows))
    return payload


def markdown(dataset: str, rows: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds per (steps, mode); KID ×10³; whether guidance beat the unguided KID in every seed."""
    lines = [f"# {dataset}: guided diffusion sampling of one score model\n",
             "| steps | NFE | guidance | seeds | FD | KID (×10³) | precision | recall | sample wall (s) | KID < unguided |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in dict.fromkeys(r["steps"] for r in rows):
        base = {r["seed"]: r.get("img_kid") for r in rows if r["steps"] == k and r["mode"] == "none"}
        for mode in MODES:
            rs = [r for r in rows if r["steps"] == k and r["mode"] == mode]
            if not rs:
                continue

            def pm(key: str, scale: float = 1.0, fmt: str = ".3f") -> str:
                v = [scale * r[key] for r in rs if r.get(key) is not None]
                if not v:
                    return "—"
                return format(statistics.fmean(v), fmt) + (f" ± {statistics.pstdev(v):{fmt}}" if len(v) > 1 else "")

            paired = [(r.get("img_kid"), base.get(r["seed"])) for r in rs]
            paired = [(a, b) for a, b in paired if a is not None and b is not None]
            wins = "—" if mode == "none" or not paired else f"{sum(a < b for a, b in paired)}/{len(paired)}"
            lines.append(f"| {k} | {rs[0]['nfe']} | {mode} | {len(rs)} | {pm('img_fd')} | {pm('img_kid', 1e3, '.2f')} | "
                         f"{pm('img_precision')} | {pm('img_recall')} | {pm('sample_wall_s', fmt='.2f')} | {wins} |")
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--dataset", default="digits", choices=("digits", "mnist", "cifar10"))
    p.add_argument("--steps", nargs="+", type=int, default=[9, 18], help="sampler steps (NFE budgets)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n", type=int, default=1000, help="samples per cell")
    p.add_argument("--bank", type=int, default=1024, help="real images in the kernel guidance's bank")
    p.add_argument("--kernel-scale", type=float, default=1.0)
    p.add_argument("--discriminator-scale", type=float, default=1.0)
    p.add_argument("--runs", default="runs", help="where the score and discriminator runs live")
    p.add_argument("--out", default=None, help="table folder (default docs/results/guided_diffusion/<dataset>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for both runs (repeatable), e.g. --set train.device=cuda")
    p.add_argument("--set-dg", dest="dg_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the discriminator run only, e.g. --set-dg trainer.pool=2048")
    return p

"""Every trainer on an image data set with the same budget, side by side (``recipes/images.py``).

Each (trainer, seed) trains ``configs/images/<dataset>-<trainer>.yaml`` into its own run directory
(resumable: a killed recipe picks up where it stopped), then draws ``n`` samples and compares them
with the held-out images in the features of the data set's cached classifier
(:func:`scoregan.metrics.image_report`: FD, KID ± s.e., precision, recall). The table holds one row
per trainer (mean ± std over seeds where there are several), with the train wall time and the
network evaluations per sample; one grid of samples per trainer (its first seed) sits beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from scoregan.experiment.bench_results import save_json_atomic
from scoregan.experiment.bench_toy import Clock
from scoregan.experiment.config import apply_overrides, load_config, read_yaml
from scoregan.experiment.configs import config_dir
from scoregan.experiment.evaluation import draw_samples
from scoregan.experiment.loop import Trainer
from scoregan.metrics import image_report
from scoregan.plotting import image_grid

DATASETS = ("digits", "mnist", "fashion", "cifar10")
TRAINERS = ("nsgan", "sgan", "lsgan", "hinge", "fgan", "wgan-gp", "mmd-gan", "gmmn", "score-gan", "kernel-flow",
            "cfm", "ot-cfm", "dsm")  # not dg: it trains on a dsm run's samples (configs/images/*-dg.yaml)
#: the families the acceptance runs with three seeds
MULTI_SEED = ("nsgan", "wgan-gp", "score-gan", "kernel-flow", "cfm")
METRICS = ("fd", "kid", "precision", "recall")


def config_path(dataset: str, trainer: str) -> Path:
    """``configs/images/<dataset>-<trainer>.yaml`` (fashion uses MNIST's configs, re-pointed)."""
    name = "mnist" if dataset == "fashion" else dataset
    path = config_dir() / "images" / f"{name}-{trainer}.yaml"
    if not path.is_file():
        raise ValueError(f"--trainers {trainer}: no config {path}")
    return path


def run_one(dataset: str, trainer: str, seed: int, run_dir: Path, *, overrides: Sequence[str] = (), n: int = 1000,
            ) -> tuple[dict[str, Any], torch.Tensor, tuple[int, ...]]:
    """Train (or resume) one run and measure it; returns its row, its samples (n, d) and the image shape."""
    extra = [*overrides]
    if dataset == "fashion":
        extra = ["data.name=fashion_mnist", *extra]
    cfg = load_config(config_path(dataset, trainer), [*extra, f"train.seed={seed}", "tracking.mode=disabled",
                                                       f"name={dataset}-{trainer}-s{seed}"])
    clock = Clock()
    tr = Trainer(cfg, run_dir, callbacks=[clock], resume=(run_dir / "checkpoints").exists())
    t0 = time.perf_counter()
    tr.fit()
    wall = clock.end - clock.start if clock.end else time.perf_counter() - t0
    rule = tr.rule
    rule.train(False)
    t = time.perf_counter()
    x = draw_samples(rule.sample, n, seed + 1000, tr.device)
    sample_s = time.perf_counter() - t
    nfe = int(getattr(rule, "last_nfe", 1) or 1)
    data = tr.data
    reference = data.heldout if data.heldout is not None else data.sample(n, torch.Generator().manual_seed(seed + 5))
    report = image_report(x, reference, dataset=data, seed=seed)
    row = {"dataset": dataset, "trainer": trainer, "seed": seed, "steps": cfg.train.steps,
           "batch_size": cfg.train.batch_size, "train_wall_s": wall, "sample_wall_s": sample_s, "nfe": nfe,
           **{k: float(v) for k, v in report.items() if isinstance(v, (int, float))}}
    return row, x, data.image_shape


def needs_score_run(dataset: str, trainer: str, overrides: Sequence[str] = ()) -> bool:
    """Whether the trainer's config takes its data score from a dsm run (``trainer.data_score: run``)."""
    if trainer == "dsm":
        return False
    raw = apply_overrides(read_yaml(config_path(dataset, trainer)), list(overrides))
    return (raw.get("trainer") or {}).get("data_score") == "run"


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per trainer: mean and std over seeds of each metric (std 0 for a single seed)."""
    out = []
    for trainer in dict.fromkeys(r["trainer"] for r in rows):
        rs = [r for r in rows if r["trainer"] == trainer]
        line: dict[str, Any] = {"trainer": trainer, "seeds": [r["seed"] for r in rs]}
        for k in (*METRICS, "kid_se", "train_wall_s", "nfe"):
            vals = [r[k] for r in rs if r.get(k) is not None and math.isfinite(r[k])]
            line[k] = statistics.fmean(vals) if vals else None
            line[f"{k}_std"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
        out.append(line)
    return out


def markdown(dataset: str, lines: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The Markdown table (FD and KID in the classifier's features; lower is better)."""
    cfm = next((line["fd"] for line in lines if line["trainer"] == "cfm" and line["fd"]), None)
    head = (f"# {dataset}: every trainer, same budget\n\n{meta['note']}\n\n"
            "| trainer | seeds | FD | FD / CFM's | KID ± s.e. | precision | recall | train wall (s) | NFE |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    body = []
    for s in lines:
        def pm(k: str, fmt: str, scale: float = 1.0) -> str:
            if s[k] is None:
                return "—"
            v = format(s[k] * scale, fmt)
            return v + (f" ± {format(s[k + '_std'] * scale, fmt)}" if len(s["seeds"]) > 1 else "")
        ratio = f"{s['fd'] / cfm:.2f}" if cfm and s["fd"] is not None else "—"
        kid = "—" if s["kid"] is None else f"{s['kid']:.3g} ± {s['kid_se']:.2g}"
        body.append(f"| {s['trainer']} | {len(s['seeds'])} | {pm('fd', '.3f')} | {ratio} | {kid} | "
                    f"{pm('precision', '.3f')} | {pm('recall', '.3f')} | {pm('train_wall_s', '.0f')} | "
                    f"{s['nfe']:.0f} |")
    return head + "\n".join(body) + "\n"


def save_grid(x: torch.Tensor, image_shape: tuple[int, ...], path: Path, title: str) -> Path:
    """The first 64 samples as one grid image."""
    grid = image_grid(x[:64], image_shape, nrow=8)
    fig, ax = plt.subplots(figsize=(4, 4.3))
    ax.imshow(grid, cmap="gray_r" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def run_image_benchmark(dataset: str, trainers: Sequence[str], seeds: Sequence[int] | None, *, out: Path,
                        runs: Path, overrides: Sequence[str] = (), n: int = 1000) -> dict[str, Any]:
    """Run every (trainer, seed) (``seeds`` None: three for :data:`MULTI_SEED`, one for the rest), write
    ``out/table.md``, ``out/table.json`` and ``out/<trainer>.png``; rows already in table.json are kept."""
    if dataset not in DATASETS:
        raise ValueError(f"--dataset {dataset!r}: choose from {', '.join(DATASETS)}")
    for t in trainers:
        config_path(dataset, t)
    json_path = out / "table.json"
    done = json.loads(json_path.read_text())["rows"] if json_path.is_file() else []
    rows = list(done)  # earlier rows (other trainers, other seeds) stay in the table
    for trainer in trainers:
        chosen = seeds if seeds is not None else ((0, 1, 2) if trainer in MULTI_SEED else (0,))
        teacher = needs_score_run(dataset, trainer, overrides)  # its s_d is the dsm run of the same seed
        for seed in chosen:
            if any(r["trainer"] == trainer and r["seed"] == seed for r in rows):
                continue
            extra = list(overrides)
            if teacher:
                score_run = runs / f"{dataset}-dsm-s{seed}"
                tabulated = any(r["trainer"] == "dsm" and r["seed"] == seed for r in rows)
                if not tabulated or not (score_run / "checkpoints" / "last.pt").is_file():
                    dsm_row, _, _ = run_one(dataset, "dsm", seed, score_run, overrides=overrides, n=n)
                    if not tabulated:
                        rows.append(dsm_row)
                extra.append(f"trainer.score_run={score_run.resolve()}")
            row, x, shape = run_one(dataset, trainer, seed, runs / f"{dataset}-{trainer}-s{seed}", overrides=extra, n=n)
            rows.append(row)
            print(f"{trainer} seed {seed}: FD {row['fd']:.3f}  KID {row['kid']:.2e} ± {row['kid_se']:.1e}  "
                  f"P {row['precision']:.3f}  R {row['recall']:.3f}  {row['train_wall_s']:.0f} s  NFE {row['nfe']}",
                  flush=True)
            if seed == min(r["seed"] for r in rows if r["trainer"] == trainer):  # the grid shows the first seed
                save_grid(x, shape, out / f"{trainer}.png", f"{dataset} · {trainer} · seed {seed}")
            payload = {"dataset": dataset, "rows": rows, "summary": summarise(rows), "overrides": list(overrides)}
            save_json_atomic(payload, json_path)
    meta = {"note": (f"FD, KID, precision and recall in the penultimate features of scoregan's cached {dataset} "
                     f"classifier, {n} samples against the held-out images; mean ± std over seeds.")}
    payload = {"dataset": dataset, "rows": rows, "summary": summarise(rows), "overrides": list(overrides)}
    save_json_atomic(payload, json_path)
    (out / "table.md").write_text(markdown(dataset, payload["summary"], meta))
    return payload


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--dataset", default="digits", choices=DATASETS)
    p.add_argument("--trainers", nargs="+", default=list(TRAINERS), metavar="TRAINER")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="seeds of every trainer (default: 0 1 2 for nsgan, wgan-gp, score-gan, kernel-flow, cfm; 0 else)")
    p.add_argument("--out", default=None, help="table folder (default docs/results/images/<dataset>)")
    p.add_argument("--runs", default=None, help="run directories (default runs/images)")
    p.add_argument("--n", type=int, default=1000, help="samples per evaluation")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (repeatable), e.g. --set data.path=data/mnist")
    return p


def run_from_args(a: argparse.Namespace) -> dict[str, Any]:
    out = Path(a.out or f"docs/results/images/{a.dataset}")
    return run_image_benchmark(a.dataset, a.trainers, a.seeds, out=out, runs=Path(a.runs or "runs/images"),
                               overrides=a.overrides, n=a.n)

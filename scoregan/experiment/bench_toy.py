"""The toy benchmark: every trainer on the same targets with the same budget, side by side.

For each target and trainer, the trainer's config ``configs/toy/<target>-<trainer>.yaml`` (or, for a
target without its own file, the 8-Gaussians config pointed at that target) is trained with the
same steps and batch, then evaluated:

- W2: exact optimal transport between ``n_samples`` generated and ``n_samples`` fresh target
  samples, repeated over ``n_draws`` fresh draws (mean ± std; one draw is noisy because the share of
  each mode fluctuates); the floor row is the target against itself, drawn the same way;
- sliced W2, MMD² (Gaussian kernel, median bandwidth), modes covered and high-quality fraction for
  mixtures (:func:`scoregan.metrics.toy_report`, on the first draw);
- train wall time (the training loop only, no evaluation), sampling wall time, and network
  evaluations per sample (NFE: 1 for a one-step generator, the ODE solver's count for flow matching).

When TorchCFM is installed (``pip install scoregan[bench]``) its I-CFM and OT-CFM
(``ConditionalFlowMatcher`` and ``ExactOptimalTransportConditionalFlowMatcher``, σ = 0.1, its 64-wide
MLP with the raw time input, Adam with lr 1e-3, the same steps and batch) run in the same process on
the same targets and are sampled with the same solver (torchdiffeq dopri5, atol = rtol = 1e-4), so the
ratios are measured side by side.

Outputs: a JSON file (every number, every draw), a Markdown table next to it and a figure grid of
samples (rows: trainers, columns: targets).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoregan.data import Dataset, make_dataset
from scoregan.experiment.bench_results import save_json_atomic, write_results
from scoregan.experiment.callbacks import Callback, LoopState
from scoregan.experiment.config import load_config
from scoregan.experiment.configs import config_dir
from scoregan.experiment.evaluation import compare_to_target, draw_samples
from scoregan.experiment.loop import Trainer
from scoregan.metrics import w2
from scoregan.sampling.ode import integrate
from scoregan.schema import ExperimentConfig

CONFIG_DIR = config_dir() / "toy"

#: targets of the benchmark: name -> config overrides applied to a config written for 8 Gaussians
TARGETS: dict[str, list[str]] = {
    "8gaussians": [],
    "25gaussians": [],
    "swiss_roll": ["data.name=swiss_roll", "data.radius=null", "data.std=null", "data.n_modes=null"],
    "checkerboard": ["data.name=checkerboard", "data.radius=null", "data.std=null", "data.n_modes=null"],
    "gmm10": ["data.name=gmm", "data.dim=10", "data.n_modes=16", "data.radius=4.0", "data.std=0.5",
              "model.latent_dim=10"],
}
DEFAULT_TARGETS: tuple[str, ...] = tuple(TARGETS)
DEFAULT_TRAINERS: tuple[str, ...] = (
    "nsgan", "sgan", "lsgan", "hinge", "fgan-kl", "fgan-reverse_kl", "fgan-pearson", "fgan-hellinger", "fgan-js",
    "wgan-gp", "mmd-gan", "gmmn", "score-gan", "kernel-flow", "cfm", "ot-cfm",
)
TORCHCFM_TRAINERS: tuple[str, ...] = ("torchcfm-icfm", "torchcfm-otcfm")


def config_for(target: str, trainer: str, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The benchmark config of ``trainer`` on ``target`` (the target's own file, else 8 Gaussians' re-pointed)."""
    if target not in TARGETS:
        raise ValueError(f"target {target!r} is not a benchmark target; allowed: {', '.join(TARGETS)}")
    own = CONFIG_DIR / f"{target}-{trainer}.yaml"
    if own.is_file():
        return load_config(own, list(overrides))
    base = CONFIG_DIR / f"8gaussians-{trainer}.yaml"
    if not base.is_file():
        raise ValueError(f"trainer {trainer!r} has no config toy/{base.name}; "
                         f"allowed: {', '.join(DEFAULT_TRAINERS + TORCHCFM_TRAINERS)}")
    return load_config(base, [*TARGETS[target], f"name={target}-{trainer}", *overrides])


class Clock(Callback):
    """Times the training steps alone (from the loop's start to the end of its last step), wall and CPU."""

    def __init__(self) -> None:
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0

    def on_fit_start(self, trainer: LoopState) -> None:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_step_end(self, trainer: LoopState, logs: dict[str, float]) -> None:
        self.end, self.cpu_end = time.perf_counter(), time.process_time()


@dataclass
class Entry:
    """One (target, trainer, seed) result."""

    target: str
    trainer: str
    seed: int
    steps: int
    batch_size: int
    train_wall_s: float
    train_cpu_s: float
    sample_wall_s: float
    nfe: int
    w2_draws: list[float]
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def w2_mean(self) -> float:
        return float(sum(self.w2_draws) / len(self.w2_draws))

    @property
    def w2_std(self) -> float:
        m = self.w2_mean
        return float(math.sqrt(sum((w - m) ** 2 for w in self.w2_draws) / len(self.w2_draws)))

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (a diverged run, with non-finite samples, has W2 None)."""
        finite = all(math.isfinite(w) for w in self.w2_draws)
        return {"target": self.target, "trainer": self.trainer, "seed": self.seed, "steps": self.steps,
                "batch_size": self.batch_size, "train_wall_s": self.train_wall_s, "train_cpu_s": self.train_cpu_s,
                "sample_wall_s": self.sample_wall_s, "nfe": self.nfe,
                "w2_mean": self.w2_mean if finite else None, "w2_std": self.w2_std if finite else None,
                "w2_draws": self.w2_draws if finite else None, **self.report}


def _draws(sample: Callable[[int, torch.Generator], torch.Tensor], data: Dataset, *, n: int, n_draws: int,
           seed: int) -> tuple[list[float], dict[str, Any], torch.Tensor, float]:
    """W2 over ``n_draws`` fresh (generated, target) draws; the full toy report of the first; its samples;
    the mean sampling time. Draw i samples with seed + 1000 + i against targets drawn with seed + 5000 + i."""
    ws, report, first, sample_s = [], {}, None, 0.0
    for i in range(n_draws):
        t = time.perf_counter()
        x = draw_samples(sample, n, seed + 1000 + i)
        sample_s += time.perf_counter() - t
        metrics, _ = compare_to_target(x, data, reference_seed=seed + 5000 + i, metric_seed=seed + 7,
                                       distances=("w2", "sliced_w2", "mmd2", "energy", "fd") if i == 0 else ("w2",),
                                       heldout=False)
        if "nonfinite_samples" in metrics:
            return [math.inf] * n_draws, metrics, x, sample_s / (i + 1)
        ws.append(metrics.pop("w2"))
        if i == 0:
            first, report = x, metrics
    return ws, report, first, sample_s / n_draws


def run_scoregan(target: str, trainer: str, seed: int, overrides: list[str], run_dir: Path, n: int,
                 n_draws: int) -> tuple[Entry, torch.Tensor]:
    """Train ``trainer`` on ``target`` with ``seed`` into ``run_dir`` (the training loop timed alone), then
    measure it: W2 over ``n_draws`` draws of ``n`` samples, the toy report, sampling time and NFE."""
    cfg = config_for(target, trainer, overrides)
    steps = cfg.train.steps
    cfg = config_for(target, trainer, [*overrides, f"train.seed={seed}", f"train.eval_every={steps}",
                                       f"train.checkpoint_every={steps}", "eval.figures=false",
                                       "train.progress=false", "tracking.mode=disabled", "eval.n_samples=256"])
    clock = Clock()
    tr = Trainer(cfg, run_dir, callbacks=[clock])
    tr.fit()
    rule = tr.rule
    rule.train(False)
    ws, report, x, sample_s = _draws(rule.sample, tr.data, n=n, n_draws=n_draws, seed=seed)
    nfe = int(getattr(rule, "last_nfe", 1) or 1)
    return Entry(target, trainer, seed, steps, cfg.train.batch_size, clock.end - clock.start,
                 clock.cpu_end - clock.cpu_start, sample_s, nfe, ws, report), x


def torchcfm_available() -> bool:
    try:
        import torchcfm  # noqa: F401
    except ImportError:
        return False
    return True


def run_torchcfm(target: str, variant: str, seed: int, data: Dataset, *, steps: int, batch_size: int,
                 sigma: float, n: int, n_draws: int) -> tuple[Entry, torch.Tensor]:
    """TorchCFM's I-CFM or OT-CFM as its examples train them, sampled with torchdiffeq dopri5 (1e-4)."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher, ExactOptimalTransportConditionalFlowMatcher
    from torchcfm.models.models import MLP

    torch.manual_seed(seed)
    np.random.seed(seed)  # TorchCFM's OT sampler draws pairs with numpy
    d = data.dim
    model = MLP(dim=d, time_varying=True, w=64)
    opt = torch.optim.Adam(model.parameters())
    fm = ConditionalFlowMatcher(sigma=sigma) if variant == "torchcfm-icfm" else \
        ExactOptimalTransportConditionalFlowMatcher(sigma=sigma)
    data_rng = torch.Generator().manual_seed(seed + 1)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        opt.zero_grad()
        x0 = torch.randn(batch_size, d)
        x1 = data.sample(batch_size, generator=data_rng)
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        vt = model(torch.cat([xt, t[:, None]], dim=-1))
        loss = torch.mean((vt - ut) ** 2)
        loss.backward()
        opt.step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    nfe = [0]

    def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(torch.cat([x, t.expand(x.shape[0])[:, None].to(x)], dim=-1))

    def sample(m: int, g: torch.Generator) -> torch.Tensor:
        sol = integrate(field, torch.randn(m, d, generator=g), method="dopri5", atol=1e-4, rtol=1e-4)
        nfe[0] = sol.nfe
        return sol.x

    ws, report, x, sample_s = _draws(sample, data, n=n, n_draws=n_draws, seed=seed)
    return Entry(target, variant, seed, steps, batch_size, wall, cpu, sample_s, nfe[0], ws, report), x


def _floor(target: str, data: Dataset, n: int, n_draws: int) -> dict[str, Any]:
    ws = [w2(data.sample(n, generator=torch.Generator().manual_seed(9000 + i)),
             data.sample(n, generator=torch.Generator().manual_seed(5000 + i))) for i in range(n_draws)]
    return {"target": target, "w2_mean": float(np.mean(ws)), "w2_std": float(np.std(ws)), "w2_draws": ws}


def run_toy_benchmark(targets: Sequence[str] = DEFAULT_TARGETS, trainers: Sequence[str] = DEFAULT_TRAINERS,
                      json_path: str | Path = "bench/results/toy_benchmark.json", *,
                      markdown_path: str | Path | None = None, figure_path: str | Path | None = None,
                      steps: int | None = None, batch_size: int | None = None, seeds: Sequence[int] = (0,),
                      n_samples: int = 2000, n_draws: int = 10, torchcfm: bool | None = None,
                      threads: int | None = None, overrides: Sequence[str] = (), resume: bool = False,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every trainer on every target with the same budget; write JSON, Markdown and a figure.

    steps / batch_size: the budget for every trainer (None: each config's own). torchcfm: run TorchCFM's
    I-CFM and OT-CFM too (None: when it is installed). threads: torch intra-op threads for the whole run.
    markdown_path / figure_path default to ``json_path`` with ``.md`` / ``.png``. resume: keep the rows
    (and floors) an earlier, interrupted run already wrote to ``json_path`` and train only the missing
    (target, trainer, seed) triples; the earlier run's budget must be the same (a ValueError otherwise).
    Returns the JSON payload.
    """

    for t in targets:
        if t not in TARGETS:
            raise ValueError(f"target {t!r} is not a benchmark target; allowed: {', '.join(TARGETS)}")
    known = DEFAULT_TRAINERS + TORCHCFM_TRAINERS
    for tr in trainers:
        if tr not in known and not (CONFIG_DIR / f"8gaussians-{tr}.yaml").is_file():
            raise ValueError(f"trainer {tr!r} is not in the benchmark; allowed: {', '.join(known)}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(targets, trainers, Path(json_path), markdown_path, figure_path, steps, batch_size, seeds,
                    n_samples, n_draws, torchcfm, overrides, log, resume)
    finally:
        torch.set_num_threads(previous_threads)


def _run(targets, trainers, json_path, markdown_path, figure_path, steps, batch_size, seeds, n_samples, n_draws,
         torchcfm, overrides, log, resume=False) -> dict[str, Any]:
    use_cfm = torchcfm_available() if torchcfm is None else torchcfm
    if use_cfm and not torchcfm_available():
        raise ValueError("torchcfm=True but TorchCFM is not installed (pip install 'scoregan[bench]')")
    ours = [t for t in trainers if t not in TORCHCFM_TRAINERS]
    theirs = [t for t in trainers if t in TORCHCFM_TRAINERS] or (list(TORCHCFM_TRAINERS) if use_cfm else [])
    md_path = Path(markdown_path) if markdown_path else json_path.with_suffix(".md")
    fig_path = Path(figure_path) if figure_path else json_path.with_suffix(".png")
    budget = [*(["train.steps=" + str(steps)] if steps else []),
              *(["train.batch_size=" + str(batch_size)] if batch_size else []), *overrides]

    entries: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    figure: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    if resume and json_path.is_file():
        entries, floors, figure = _resumed(json_path, steps, batch_size, n_samples, n_draws, overrides)
        log(f"resuming {json_path}: {len(entries)} row(s) kept")
    done = {(r["target"], r["trainer"], r["seed"]) for r in entries}

    def make_payload(complete: bool) -> dict[str, Any]:
        return {
            "complete": complete,
            "samples": {f"{t}/{tr}": _points(x) for (t, tr), (x, _) in figure.items()},
            "reference": {t: _points(ref) for (t, _), (_, ref) in figure.items()},
            "settings": {"targets": list(targets), "trainers": ours + theirs, "steps": steps,
                         "batch_size": batch_size, "seeds": list(seeds), "n_samples": n_samples, "n_draws": n_draws,
                         "overrides": list(overrides), "threads": torch.get_num_threads()},
            "environment": {"python": platform.python_version(), "torch": torch.__version__,
                            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                            "torchcfm": _version("torchcfm") if use_cfm else None},
            "floor": floors,
            "rows": list(entries),
        }

    def record(entry: Entry, x: torch.Tensor, ref: torch.Tensor) -> None:
        """Keep a finished row, and rewrite the JSON (atomically) so a crash later loses nothing."""
        entries.append(entry.as_dict())
        figure.setdefault((entry.target, entry.trainer), (x, ref))
        log(_line(entry))
        save_json_atomic(make_payload(False), json_path)

    with tempfile.TemporaryDirectory(prefix="scoregan-bench-") as tmp:
        for target in targets:
            data = make_dataset(config_for(target, "nsgan").data)
            if not any(f["target"] == target for f in floors):
                floors.append(_floor(target, data, n_samples, n_draws))
            ref = data.sample(1000, generator=torch.Generator().manual_seed(4242))
            for seed in seeds:
                for trainer in ours:
                    if (target, trainer, seed) in done:
                        continue
                    entry, x = run_scoregan(target, trainer, seed, budget, Path(tmp) / f"{target}-{trainer}-{seed}",
                                             n_samples, n_draws)
                    record(entry, x, ref)
                for variant in theirs:
                    if (target, variant, seed) in done:
                        continue
                    cfg = config_for(target, "cfm", budget)
                    entry, x = run_torchcfm(target, variant, seed, data, steps=cfg.train.steps,
                                             batch_size=cfg.train.batch_size, sigma=cfg.trainer.sigma, n=n_samples,
                                             n_draws=n_draws)
                    record(entry, x, ref)
    payload = make_payload(True)
    write_results(payload, json_path, md_path, fig_path)
    log(f"wrote {json_path}, {md_path}, {fig_path}")
    return payload


def _resumed(json_path: Path, steps, batch_size, n_samples, n_draws, overrides
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[tuple[str, str], tuple[Any, Any]]]:
    """The rows, floors and figure points of an earlier run's JSON, after checking its budget matches."""
    old = json.loads(json_path.read_text())
    mine = {"steps": steps, "batch_size": batch_size, "n_samples": n_samples, "n_draws": n_draws,
            "overrides": list(overrides)}
    theirs = {k: old["settings"].get(k) for k in mine}
    if theirs != mine:
        diff = ", ".join(f"{k}: {theirs[k]!r} there, {mine[k]!r} now" for k in mine if theirs[k] != mine[k])
        raise ValueError(f"cannot resume {json_path}: it was run with other settings ({diff})")
    figure = {}
    for key, pts in old.get("samples", {}).items():
        target, trainer = key.split("/", 1)
        ref = old.get("reference", {}).get(target)
        if ref is not None:
            figure[(target, trainer)] = (torch.tensor(pts), torch.tensor(ref))
    return list(old["rows"]), list(old["floor"]), figure


def _points(x, n: int = 400) -> list[list[float | None]]:
    """The first n samples' first two coordinates, rounded, a non-finite one as None (JSON null), for the
    figure grid kept in the JSON."""
    return [[round(v, 3) if math.isfinite(v) else None for v in row] for row in x[:n, :2].tolist()]


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _line(e: Entry) -> str:
    if "nonfinite_samples" in e.report:
        return f"{e.target:>12} {e.trainer:>16} seed {e.seed}: diverged ({e.report['nonfinite_samples']} non-finite samples)"
    modes = f" modes {e.report.get('modes_covered')}/{e.report.get('n_modes')} hq {e.report.get('hq_fraction', 0):.3f}" \
        if "modes_covered" in e.report else ""
    return (f"{e.target:>12} {e.trainer:>16} seed {e.seed}: W2 {e.w2_mean:.3f} ± {e.w2_std:.3f}{modes} "
            f"train {e.train_wall_s:.1f}s NFE {e.nfe}")


# -------------------------------------------------------------------------------------- command line
def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``scoregan bench toy`` and ``recipes/toy_benchmark.py``."""
    p.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS), metavar="TARGET",
                   help=f"targets (default: all of {', '.join(DEFAULT_TARGETS)})")
    p.add_argument("--trainers", nargs="+", default=list(DEFAULT_TRAINERS), metavar="TRAINER",
                   help="trainers (default: every one; add torchcfm-icfm / torchcfm-otcfm to pick TorchCFM's)")
    p.add_argument("--json", default="bench/results/toy_benchmark.json", metavar="FILE",
                   help="JSON output (the Markdown table and the figure go next to it)")
    p.add_argument("--steps", type=int, default=None, help="generator steps for every trainer (default: each config's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size for every trainer (default: each config's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    p.add_argument("--draws", type=int, default=10, help="fresh draws of the W2 estimate (default: 10)")
    p.add_argument("--n-samples", type=int, default=2000, help="samples per draw (default: 2000)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the whole run (default 1: "
                   "the toy networks are small, and one thread is faster and steadier on a shared CPU)")
    p.add_argument("--no-torchcfm", action="store_true", help="skip TorchCFM even when it is installed")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows an interrupted run already wrote to --json and run only the missing ones")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied to every scoregan trainer (repeatable)")
    return p


def run_from_args(a: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark a parsed :func:`add_arguments` namespace describes."""
    for name in ("steps", "batch_size", "draws", "n_samples", "threads"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    return run_toy_benchmark(a.targets, a.trainers, a.json, steps=a.steps, batch_size=a.batch_size, seeds=a.seeds,
                             n_samples=a.n_samples, n_draws=a.draws, torchcfm=False if a.no_torchcfm else None,
                             threads=a.threads, overrides=a.set, resume=a.resume)

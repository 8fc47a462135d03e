"""``scoregan``: the command line, a thin layer over :mod:`scoregan.api`.

    scoregan train [CONFIG] [--set key=value ...] [--run-dir DIR] [--resume RUN_DIR]
    scoregan eval RUN_DIR [--n N] [--json]
    scoregan sample RUN_DIR --n N --out FILE.npz
    scoregan bench toy [--targets ...] [--trainers ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml

from scoregan import api
from scoregan._dist import world
from scoregan.experiment.bench_toy import add_arguments, run_from_args
from scoregan.experiment.config import load_config
from scoregan.experiment.preemption import PREEMPTED_EXIT_CODE, TrainingPreempted
from scoregan.experiment.diffusion import DIFFUSION_SAMPLERS, GUIDANCES, NOISE_MODES, diffusion_from_run
from scoregan.experiment.guided import langevin_from_run
from scoregan.schema import SEED_MAX, to_dict

DESCRIPTION = """\
scoregan trains generators as particle flows written in scores: f-GANs as (weighted) score
matching, IPM-GANs as kernel-smoothed score matching, plus the classic adversarial baselines.
Every run writes a directory with its resolved config, metrics.jsonl, checkpoints and figures."""

TRAIN_EPILOG = """\
examples:
  scoregan train                                        # embedded defaults: kernel flow-matching GAN on 8 Gaussians, <1 min on CPU
  scoregan train configs/toy/8gaussians-wgan-gp.yaml --run-dir runs/wgan
  scoregan train configs/toy/8gaussians-nsgan.yaml --set train.steps=500 --set model.latent_dim=4
  scoregan train --resume runs/wgan --set train.steps=6000   # continue a run, exactly
  scoregan train CONFIG --run-dir runs/job --resume-if-exists  # start or continue: a requeued job's command

SIGTERM or SIGUSR1 (a cluster pre-empting the job) writes a checkpoint at the current step and exits
with code 75; the same command with --resume-if-exists continues it exactly.

Any config field can be overridden with --set section.field=value (values are YAML: 1e-3,
[64, 64], null, true). Use --print-config to see every field with its resolved value."""


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in metrics.items()]
    w = max(len(k) for k, _ in rows) if rows else 6
    vw = max(len(v) for _, v in rows) if rows else 5
    lines = [f"{'metric'.ljust(w)}  {'value'.rjust(vw)}", f"{'-' * w}  {'-' * vw}"]
    lines += [f"{k.ljust(w)}  {v.rjust(vw)}" for k, v in rows]
    return "\n".join(lines)


def check_writable(path: str, flag: str, *, directory: bool = False) -> None:
    """Raise a one-line ValueError unless ``path`` can be written: a file path that is not an existing
    directory (``directory=False``), or a directory path that is not an existing file; either way its
    nearest existing ancestor must be a directory this process can write into."""
    p = os.path.abspath(path)
    if directory and os.path.exists(p) and not os.path.isdir(p):
        raise ValueError(f"{flag} {path!r}: exists and is not a directory")
    if not directory and os.path.isdir(p):
        raise ValueError(f"{flag} {path!r}: is a directory; give a file path")
    if not os.path.basename(p):
        raise ValueError(f"{flag} {path!r}: not a path that can be written")
    ancestor = p if directory and os.path.isdir(p) else os.path.dirname(p)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ValueError(f"{flag} {path!r}: cannot be created: {ancestor!r} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path!r}: cannot be written: no write permission in {ancestor!r}")


def _cmd_train(a: argparse.Namespace) -> int:
    if a.resume_if_exists and (a.resume or not a.run_dir):
        raise ValueError("--resume-if-exists starts or continues the run in --run-dir: give CONFIG and --run-dir, "
                         "not --resume")
    if a.resume and (a.config or a.run_dir):
        raise ValueError("--resume continues RUN_DIR with its own config.yaml: drop the CONFIG argument and "
                         "--run-dir (change fields with --set)")
    if a.run_dir is not None and not a.print_config:
        check_writable(a.run_dir, "--run-dir", directory=True)
    if a.print_config:
        src = (a.resume + "/config.yaml") if a.resume else a.config
        print(yaml.safe_dump(to_dict(load_config(src, a.set)), sort_keys=False), end="")
        return 0
    if a.no_progress:
        a.set = [*a.set, "train.progress=false"]
    result = api.train(a.config, overrides=a.set, run_dir=a.run_dir, resume=a.resume,
                       resume_if_exists=a.resume_if_exists)
    if world()[0] != 0:  # under torchrun rank 0 reports for the run
        return 0
    print(f"\nrun directory: {result.run_dir}  (step {result.step}{', stopped early' if result.stopped_early else ''})")
    if not result.metrics:  # a resume of a finished or early-stopped run: no step taken
        how = ("early stopping stopped it there; train on with --set early_stopping.enabled=false"
               if result.stopped_early else f"continue it with --set train.steps=N (N > {result.step})")
        print(f"nothing to train: the run is already at step {result.step}; {how}, or see its metrics with: "
              f"scoregan eval {result.run_dir}")
        return 0
    print(_metrics_table(result.metrics))
    print(f"figures: {result.run_dir / 'figures'}")
    return 0


def _cmd_eval(a: argparse.Namespace) -> int:
    metrics = api.evaluate(a.run_dir, n=a.n, seed=a.seed, checkpoint=a.checkpoint)
    print(json.dumps(metrics) if a.json else _metrics_table(metrics))
    return 0


#: The Langevin options of ``scoregan sample`` and their defaults (they only act with --langevin).
LANGEVIN_DEFAULTS = {"space": None, "steps": 100, "step_size": 1e-2, "mala": False, "guidance_scale": 1.0}


def _cmd_sample(a: argparse.Namespace) -> int:
    check_writable(a.out, "--out")
    if a.sampler is not None:
        return _sample_diffusion(a)
    if a.guidance is not None or a.bank is not None or a.guidance_run is not None or a.kernel_noise is not None:
        raise ValueError("--guidance, --guidance-run, --bank and --kernel-noise act with --sampler (a score-model run); "
                         "GAN runs: --langevin")
    given = [k for k in LANGEVIN_DEFAULTS if getattr(a, k) is not None] + (["eval"] if a.eval is not None else [])
    if not a.langevin and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags} only act with --langevin; add --langevin or drop them")
    if a.langevin:
        o = {k: LANGEVIN_DEFAULTS[k] if getattr(a, k) is None else getattr(a, k) for k in LANGEVIN_DEFAULTS}
        report = langevin_from_run(a.run_dir, n=a.n, seed=a.seed, out=a.out, checkpoint=a.checkpoint, progress=True,
                                   metrics={None: "cheap", True: "full", False: "none"}[a.eval], **o)
        if world()[0] == 0:
            print(_metrics_table({k: v for k, v in report.items() if isinstance(v, (int, float, str))}))
        return 0
    x = api.sample(a.run_dir, n=a.n, out=a.out, seed=a.seed, checkpoint=a.checkpoint)
    print(f"wrote {x.shape[0]} samples of dimension {x.shape[1]} to {a.out} (array 'x') and {os.path.splitext(a.out)[0]}.png")
    return 0


def _sample_diffusion(a: argparse.Namespace) -> int:
    """``scoregan sample RUN --sampler ...``: a score-model run through the diffusion samplers."""
    if a.langevin or a.space is not None or a.step_size is not None or a.mala is not None:
        raise ValueError("--langevin, --space, --step-size and --mala belong to GAN refinement, not to --sampler")
    _, report = diffusion_from_run(a.run_dir, n=a.n, seed=a.seed, sampler=a.sampler, steps=a.steps or 18,
                                   guidance=a.guidance or "none", guidance_scale=1.0 if a.guidance_scale is None
                                   else a.guidance_scale, bank=a.bank or 1024, out=a.out, checkpoint=a.checkpoint,
                                   evaluate=bool(a.eval), guidance_run=a.guidance_run,
                                   kernel_noise=a.kernel_noise or "perturb")
    print(_metrics_table({k: v for k, v in report.items() if isinstance(v, (int, float, str))}))
    return 0


def _cmd_bench_toy(a: argparse.Namespace) -> int:
    check_writable(a.json, "--json")
    run_from_args(a)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scoregan", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{train,eval,sample,bench}")
    sub.required = True

    t = sub.add_parser("train", help="train a generator from a YAML config", description="Train a generator from a "
                       "YAML config into a run directory (config.yaml, metrics.jsonl, checkpoints/, figures/).",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", nargs="?", default=None, help="YAML config (default: the embedded defaults)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    t.add_argument("--run-dir", default=None, help="where to write the run (default: runs/<name>-<time>)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    t.add_argument("--resume-if-exists", action="store_true",
                   help="start the run in --run-dir, or continue it if that directory already holds it (the one "
                        "command a requeued job runs again; see docs/slurm.md)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.set_defaults(fn=_cmd_train)

    e = sub.add_parser("eval", help="metrics of a trained run", description="Sample a trained run and print its "
                       "metrics against fresh target samples: W2 (exact OT), sliced W2, MMD² (with its bandwidth), "
                       "energy distance, and for mixture targets the modes covered and the high-quality fraction.")
    e.add_argument("run_dir", help="a run directory written by `scoregan train`")
    e.add_argument("--n", "--num-samples", dest="n", type=int, default=None,
                   help="samples to draw (default: the config's eval.n_samples)")
    e.add_argument("--seed", type=int, default=None, help="seed of the draws (default: the config's eval.seed)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    e.add_argument("--checkpoint", choices=("last", "best"), default="last",
                   help="which checkpoint (best: the one early stopping kept)")
    e.set_defaults(fn=_cmd_eval)

    s = sub.add_parser("sample", help="draw samples from a trained run", description="Draw samples from a trained "
                       "run into FILE.npz (array 'x') and a figure FILE.png; with --langevin, refine them by "
                       "guided Langevin dynamics (FILE.npz then also holds 'x0', and FILE.json the report).")
    s.add_argument("run_dir")
    s.add_argument("--n", "--num-samples", dest="n", type=int, required=True,
                   help="number of samples (under torchrun write --num-samples: torchrun reads --n as its own)")
    s.add_argument("--out", required=True, help="output .npz file")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--checkpoint", choices=("last", "best"), default="last",
                   help="which checkpoint (best: the one early stopping kept)")
    lg = s.add_argument_group("Langevin refinement (guided by the run's discriminator, kernel witness or data score)")
    lg.add_argument("--langevin", action="store_true",
                    help="refine with guided Langevin dynamics (a progress bar over the steps): GAN runs by their "
                         "discriminator, kernel-flow and gmmn runs by their kernel witness against 2048 data points, "
                         "score-gan runs by their data score (data space only)")
    lg.add_argument("--space", choices=("latent", "data"), default=None,
                    help="where the chain runs (default latent; data for score-gan runs)")
    lg.add_argument("--steps", type=int, default=None, help="Langevin steps (default 100)")
    lg.add_argument("--step-size", type=float, default=None,
                    help="Langevin step size η (default 0.01; latent space: absolute; data space: relative, "
                         "η = step_size·h² with h the bandwidth of the generator's kernel density estimate, or a "
                         "score-gan run's smallest σ)")
    lg.add_argument("--mala", action="store_true", default=None,
                    help="Metropolis-adjusted steps (exact stationary law)")
    lg.add_argument("--guidance-scale", type=float, default=None,
                    help="weight λ of the discriminator or witness guidance (default 1)")
    lg.add_argument("--eval", action=argparse.BooleanOptionalAction, default=None,
                    help="metrics before and after: by default the cheap ones (sliced W2, MMD², energy, Fréchet "
                         "distance, mode statistics); --eval adds exact W2 (O(n³), the slow part at large n); "
                         "--no-eval skips them all")
    df = s.add_argument_group("diffusion sampling (a score-model run: trainer dsm); --steps, --guidance-scale and "
                              "--eval apply too")
    df.add_argument("--sampler", choices=DIFFUSION_SAMPLERS, default=None,
                    help="heun: the probability-flow ODE (EDM's Heun steps, 2·steps−1 NFE); ode: the same ODE by "
                         "adaptive dopri5 (torchdiffeq, tolerance 1e-4; --steps does not apply); sde: the reverse SDE; "
                         "pc: predictor-corrector; langevin: annealed Langevin on the same noise levels")
    df.add_argument("--guidance", choices=GUIDANCES, default=None,
                    help="kernel: the closed-form witness of a Gaussian kernel (median bandwidth) between --bank real "
                         "points perturbed to the sampler's noise level and the particles, weight "
                         "λ(σ) = guidance_scale·σ_data²/σ²; discriminator: ∇ₓ D(x, σ) of the noise-conditional "
                         "discriminator of --guidance-run (Kim et al. 2022), weight guidance_scale")
    df.add_argument("--guidance-run", default=None, metavar="DG_RUN",
                    help="run directory of a dg run trained against this score run (--guidance discriminator)")
    df.add_argument("--bank", type=int, default=None, help="real points in the kernel guidance's bank (default 1024)")
    df.add_argument("--kernel-noise", choices=NOISE_MODES, default=None,
                    help="how kernel guidance takes the bank to the noise level σ: perturb (default: the bank plus σε, "
                         "ε drawn once), bandwidth (the exact Gaussian smoothing: bandwidth √(h²+σ²)) or none (the "
                         "clean bank)")
    s.set_defaults(fn=_cmd_sample)

    b = sub.add_parser("bench", help="benchmarks that print a table", description="Benchmarks that print a "
                       "table (and write JSON / Markdown / figures).")
    bsub = b.add_subparsers(dest="bench", metavar="{toy}")
    bsub.required = True
    bt = bsub.add_parser("toy", help="every trainer on the toy targets, same budget, side by side",
                         description="Every trainer on the toy targets (8 and 25 Gaussians, swiss roll, checkerboard, "
                         "a 10-D mixture) with the same budget: W2 (mean ± std over fresh draws), sliced W2, MMD², "
                         "modes covered, high-quality fraction, train wall time, network evaluations per sample; "
                         "with the `bench` extra, TorchCFM's I-CFM and OT-CFM in the same process.")
    add_arguments(bt)
    bt.set_defaults(fn=_cmd_bench_toy)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("n", "steps"):
        v = getattr(args, name, None)
        if v is not None and v < 1:
            print(f"scoregan {args.command}: error: --{name} must be >= 1, got {v}", file=sys.stderr)
            return 2
    seed = getattr(args, "seed", None)  # eval / sample, like the config's seeds
    if isinstance(seed, int) and not 0 <= seed <= SEED_MAX:
        print(f"scoregan {args.command}: error: --seed must be in [0, 2**63), got {seed}", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except ValueError as exc:  # config, data, checkpoint and argument errors: one clear line
        if os.environ.get("SCOREGAN_DEBUG"):
            raise
        print(f"scoregan {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Trainer.fit says whether and how the run can continue
        print(str(exc) or "interrupted", file=sys.stderr)
        return 130
    except TrainingPreempted as exc:  # SIGTERM / SIGUSR1: the checkpoint of the current step is written
        print(f"scoregan {args.command}: pre-empted by {exc}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())

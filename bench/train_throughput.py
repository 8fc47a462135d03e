"""Training throughput of every trainer at 32×32×3 (issue 20): 1 process, 2 processes, and one GPU.

    python bench/train_throughput.py                                  # all eight trainers, batch 64, 30 steps
    python bench/train_throughput.py --trainers nsgan,cfm --steps 60 --repeats 3 --json tp.json

Each measurement is one ordinary training run through the command line, on a synthetic data set of
N random images in [-1, 1] of shape (N, 3, 32, 32) written to an ``.npz`` (``data.name=npz``; the loader
flattens it, so the MLPs see 3,072-dim vectors):

* 1 process:   ``python -m scoregan train CONFIG --set ...``
* 2 processes: ``python -m torch.distributed.run --standalone --nproc_per_node=2 -m scoregan train CONFIG ...``
  (data parallel over gloo; ``train.batch_size`` is the global batch, each rank keeps half of it)
* one GPU (only when CUDA is available): ``train.device=cuda`` with ``train.precision`` fp32 and bf16, and
  fp32 with ``train.compile=true``; "n/a" when the config has no such field, "no CUDA" without a GPU.

Timing. Start-up (imports, process group, building the networks, score-gan's s_d fit and s_g warm-up, which
run inside its first step), the final evaluation and the checkpoint are excluded: the run logs a row to
``metrics.jsonl`` every ``train.log_every`` steps (the file is line-buffered, rank 0 writes it after the
step's all-reduce), and this script tails that file and stamps each row as it arrives. Throughput is

    global batch × (last logged step − first logged step) / (arrival of the last row − arrival of the first)

so the steps after the first logged one (steps log_every+1 … steps) are timed, steady state only. Each cell is
the median of ``--repeats`` runs (other processes may share the machine). A run that fails is reported in its
cell with the last line of its error, not hidden.

Every process runs ``--threads`` intra-op threads (default 1: on a 2-core machine, 1 process × 1 thread
against 2 processes × 1 thread is the fair comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ("nsgan", "wgan-gp", "kernel-flow", "gmmn", "mmd-gan", "score-gan", "cfm", "ot-cfm")
GPU_MODES = (("GPU fp32", {"train.precision": "fp32"}),
             ("GPU bf16", {"train.precision": "bf16"}),
             ("GPU fp32 + compile", {"train.precision": "fp32", "train.compile": "true"}))


def config_path(trainer: str) -> Path:
    return ROOT / "configs" / "toy" / f"8gaussians-{trainer}.yaml"


def print_config(trainer: str) -> dict:
    """The trainer's resolved config (``scoregan train CONFIG --print-config``)."""
    out = subprocess.run([sys.executable, "-m", "scoregan", "train", str(config_path(trainer)), "--print-config"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return yaml.safe_load(out)


def has_key(cfg: dict, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def overrides(args, trainer: str, cfg: dict, data_path: Path, cache: Path) -> dict[str, str]:
    """The ``--set`` fields of one run: data, sizes for 3,072-dim inputs, no tracking/figures/extra eval."""
    hidden = json.dumps(args.hidden).replace(" ", "")
    o = {
        "data.name": "npz", "data.path": str(data_path),
        "tracking.mode": "disabled", "eval.figures": "false", "eval.n_samples": "64", "train.progress": "false",
        # the final evaluation runs after the timed steps: only the cheap MMD² (the Fréchet distance of
        # 3,072-dim samples costs seconds per run and would only slow the benchmark down)
        "eval.distances": "[mmd2]",
        "train.steps": str(args.steps), "train.batch_size": str(args.batch_size), "train.log_every": str(args.log_every),
        "train.eval_every": str(args.steps), "train.checkpoint_every": str(args.steps),
        "train.threads": str(args.threads), "train.device": "cpu",
        "model.latent_dim": str(args.latent_dim),
        "model.generator.hidden": hidden, "model.discriminator.hidden": hidden,
        # the auxiliary networks of score-gan (s_d, s_g, ratio) and the velocity nets of cfm / ot-cfm
        "trainer.score_net.hidden": hidden, "trainer.generator_score_net.hidden": hidden,
        "trainer.ratio_net.hidden": hidden, "trainer.velocity_net.hidden": hidden,
        # score-gan's one-off start-up (inside step 1, excluded from the timing): a short s_d fit, cached
        # under the benchmark's own directory, and a short s_g warm-up, so the benchmark does not spend minutes on it
        "trainer.data_score_steps": str(args.data_score_steps), "trainer.data_score_cache": str(cache),
        "trainer.score_warmup": str(args.score_warmup),
    }
    return {k: v for k, v in o.items() if has_key(cfg, k)}


def command(trainer: str, sets: dict[str, str], run_dir: Path, nproc: int) -> list[str]:
    if nproc == 1:
        head = [sys.executable, "-m", "scoregan"]
    else:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", "scoregan"]
    cmd = [*head, "train", str(config_path(trainer)), "--run-dir", str(run_dir)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def error_line(text: str) -> str:
    """The one line that says why a run failed: the exception line of the last traceback, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("Traceback", "File ", "[rank", "torch.distributed.elastic", "=====", "Root Cause",
                          "Failures:", "<NO_OTHER_FAILURES>", "time ", "host ", "rank ", "exitcode", "error_file",
                          "traceback", "To enable traceback", "warnings.warn", "^")):
            continue
        if ("Error" in ln or "error" in ln or "Exception" in ln) and len(ln) < 400:
            return ln
    return lines[-1][:300] if lines else "failed without output"


def timed_run(cmd: list[str], run_dir: Path, env: dict, timeout: float, log_path: Path) -> dict:
    """Run ``cmd``, stamping each ``train`` row of ``run_dir/metrics.jsonl`` as it arrives."""
    metrics = run_dir / "metrics.jsonl"
    stamps: list[tuple[int, float]] = []
    buf, pos = "", 0
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=run_dir.parent)

        def poll() -> None:
            nonlocal buf, pos
            try:
                with open(metrics) as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
            except FileNotFoundError:
                return
            now = time.perf_counter()
            buf += chunk
            *complete, buf = buf.split("\n")
            for line in complete:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if row.get("kind", "train") == "train":
                    stamps.append((int(row["step"]), now))

        timed_out = False
        while proc.poll() is None:
            poll()
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                timed_out = True
                break
            time.sleep(0.005)
        proc.wait()
        poll()
    wall = time.perf_counter() - t0
    out = {"wall_s": wall, "rows": len(stamps)}
    if timed_out:
        return {**out, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {**out, "error": error_line(log_path.read_text(errors="replace"))}
    if len(stamps) < 2:
        return {**out, "error": f"only {len(stamps)} train rows logged; raise --steps or lower --log-every"}
    (s0, t_first), (s1, t_last) = stamps[0], stamps[-1]
    return {**out, "steps_timed": s1 - s0, "seconds_timed": t_last - t_first, "startup_s": t_first - t0}


def measure(args, trainer: str, cfg: dict, extra: dict[str, str], nproc: int, work: Path, data: Path, tag: str) -> dict:
    """The median samples/s over ``--repeats`` runs (a failed run ends the cell with its error)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    sets = {**overrides(args, trainer, cfg, data, work / "cache"), **extra}
    rates, runs = [], []
    for r in range(args.repeats):
        run_dir = work / f"{trainer}-{tag}-{r}"
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = command(trainer, sets, run_dir, nproc)
        res = timed_run(cmd, run_dir, env, args.timeout, work / f"{trainer}-{tag}-{r}.log")
        runs.append(res)
        if "error" in res:
            print(f"  {trainer:12s} {tag:18s} run {r}: FAILED: {res['error']}", flush=True)
            return {"error": res["error"], "runs": runs, "command": cmd}
        rate = args.batch_size * res["steps_timed"] / res["seconds_timed"]
        rates.append(rate)
        print(f"  {trainer:12s} {tag:18s} run {r}: {rate:8.1f} samples/s  ({res['steps_timed']} steps in "
              f"{res['seconds_timed']:.2f} s; start-up {res['startup_s']:.1f} s, whole run {res['wall_s']:.1f} s)",
              flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"samples_per_s": statistics.median(rates), "all": rates, "runs": runs, "command": cmd}


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def fmt(cell: dict | None) -> str:
    if cell is None:
        return "n/a"
    if "note" in cell:
        return cell["note"]
    if "error" in cell:
        return f"failed: `{cell['error'].replace('|', '/')}`"
    return f"{cell['samples_per_s']:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainers", default=",".join(TRAINERS), help="comma-separated (default: all eight)")
    p.add_argument("--batch-size", type=int, default=64, help="the global batch (default 64)")
    p.add_argument("--steps", type=int, default=30, help="steps per run (default 30)")
    p.add_argument("--log-every", type=int, default=5, help="train.log_every: the timing stamps (default 5)")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is reported (default 3)")
    p.add_argument("--nprocs", default="1,2", help="CPU process counts (default 1,2)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per process (default 1)")
    p.add_argument("--hidden", type=json.loads, default=[256, 256], help="hidden widths of every MLP (default [256,256])")
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--n-data", type=int, default=4096, help="synthetic images (default 4096)")
    p.add_argument("--data-score-steps", type=int, default=200, help="score-gan's s_d fit, start-up only (default 200)")
    p.add_argument("--score-warmup", type=int, default=20, help="score-gan's s_g warm-up, start-up only (default 20)")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU columns even when CUDA is available")
    p.add_argument("--timeout", type=float, default=900, help="seconds per run before it is killed (default 900)")
    p.add_argument("--workdir", default=None, help="run directories and logs (default: a temporary directory)")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)

    trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    unknown = [t for t in trainers if not config_path(t).is_file()]
    if unknown:
        p.error(f"no config configs/toy/8gaussians-<name>.yaml for {unknown}")
    nprocs = [int(n) for n in args.nprocs.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="scoregan-throughput-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / "images32.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.uniform(-1, 1, (args.n_data, 3, 32, 32)).astype(np.float32))

    info = machine()
    gpu = torch.cuda.is_available() and not args.no_gpu
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}; work directory {work}", flush=True)
    results: dict[str, dict] = {}
    gpu_fields_missing: set[str] = set()
    for trainer in trainers:
        cfg = print_config(trainer)
        row: dict[str, dict | None] = {}
        for n in nprocs:
            row[f"{n}p"] = measure(args, trainer, cfg, {}, n, work, data, f"{n}proc")
        for name, extra in GPU_MODES:
            missing = [k for k in extra if not has_key(cfg, k)]
            if missing:
                gpu_fields_missing.update(missing)
                row[name] = {"note": "n/a"}
            elif not gpu:
                row[name] = {"note": "no CUDA" if not torch.cuda.is_available() else "skipped"}
            else:
                row[name] = measure(args, trainer, cfg, {**extra, "train.device": "cuda"}, 1, work, data,
                                    name.replace(" ", "").replace("+", "-"))
        results[trainer] = row

    head = [f"{n} process{'es' if n > 1 else ''} samples/s" for n in nprocs]
    speed = len(nprocs) > 1
    cols = ["trainer", *head, *([f"speed-up ({nprocs[-1]}/{nprocs[0]})"] if speed else []), *(m for m, _ in GPU_MODES)]
    lines = [f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, Python {info['python']}"
             + (f", GPU {info['gpu']}" if "gpu" in info else ", no GPU") + ".",
             (f"32×32×3 synthetic images (3,072-dim vectors), global batch {args.batch_size}, {args.steps} steps "
             f"(timed: steps {args.log_every + 1}–{args.steps}), MLP hidden {args.hidden}, latent {args.latent_dim}, "
             f"{args.threads} thread(s) per process, median of {args.repeats} runs."), "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for trainer, row in results.items():
        cells = [trainer, *(fmt(row[f"{n}p"]) for n in nprocs)]
        if speed:
            a, b = row[f"{nprocs[0]}p"], row[f"{nprocs[-1]}p"]
            ok = "samples_per_s" in a and "samples_per_s" in b
            cells.append(f"{b['samples_per_s'] / a['samples_per_s']:.2f}×" if ok else "–")
        cells += [fmt(row[m]) for m, _ in GPU_MODES]
        lines.append("| " + " | ".join(cells) + " |")
    if gpu_fields_missing:
        lines.append("")
        lines.append(f"n/a: the config has no field {sorted(gpu_fields_missing)} yet.")
    table = "\n".join(lines)
    print("\n" + table)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "results": results}, indent=2,
                                              default=str))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

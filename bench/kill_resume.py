"""Pre-emption drill: SIGKILL a training run at random moments (start-up, before the first checkpoint,
mid-training), restart it each time, and check that nothing was lost.

Every launch runs the one command a requeued job runs: ``scoregan train CONFIG --run-dir RUN
--resume-if-exists`` (it starts the run, or continues it when RUN holds it). At the end the run must
have reached its last step, ``metrics.jsonl`` must hold every logged step exactly once, and the last
offline wandb segment must hold every row of ``metrics.jsonl`` (the tracker replays it on every start).

    python bench/kill_resume.py --kills 20 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import wandb_history  # noqa: E402  (the offline .wandb reader of the test suite)


def _progress(run: Path) -> tuple[int, int]:
    """(metrics.jsonl lines, checkpoint step) of the run now."""
    lines = len((run / "metrics.jsonl").read_text().splitlines()) if (run / "metrics.jsonl").exists() else 0
    step = -1
    if (run / "checkpoints" / "last.pt").exists():
        import torch

        step = int(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"])
    return lines, step


def _phase(before: tuple[int, int], after: tuple[int, int], run: Path) -> str:
    """What the killed process had done: nothing on disk yet, trained without checkpointing, or checkpointed."""
    if not (run / "config.yaml").exists():
        return "start-up (nothing written)"
    if after[1] > before[1]:
        return f"after a checkpoint (step {after[1]})"
    if after[0] > before[0] or before[1] < 0:
        return "before its first checkpoint" if before[1] < 0 else "training, before its next checkpoint"
    return "start-up (run directory read)"


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    start = time.time()
    while time.time() - start < timeout and not path.exists() and proc.poll() is None:
        time.sleep(0.05)
    return time.time() - start


def drill(kills: int, seed: int, steps: int, out: Path, max_delay: float) -> dict:
    rng = random.Random(seed)
    run = out / "run"
    config = ROOT / "configs/toy/8gaussians-nsgan.yaml"
    fresh = [sys.executable, "-m", "scoregan", "train", str(config), "--run-dir", str(run), "--no-progress",
             "--set", f"train.steps={steps}", "--set", "train.checkpoint_every=50", "--set", "train.log_every=10",
             "--set", "train.eval_every=500", "--set", "tracking.mode=offline", "--set", "eval.figures=false",
             "--resume-if-exists"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANDB_SERVICE")}, "WANDB_SILENT": "true",
           "WANDB_BASE_URL": "http://127.0.0.1:9"}  # a job of its own, not attached to this process's wandb service
    env.pop("WANDB_MODE", None)
    table = []
    for i in range(kills + 1):
        cmd = fresh
        proc = subprocess.Popen(cmd, cwd=out, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if i < kills:
            before = _progress(run)
            if i == 0:  # the first two kills are placed: during start-up, then before the first checkpoint
                delay = 0.3
                time.sleep(delay)
            elif i == 1:
                delay = _wait_for(run / "config.yaml", proc)
            else:
                delay = rng.uniform(0.2, max_delay)
                time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            code = proc.wait()
            table.append((i + 1, "start" if before == (0, -1) else "continue", f"{delay:.1f}",
                          _phase(before, _progress(run), run), code))
        else:
            code = proc.wait(timeout=900)
            err = proc.stderr.read().decode().strip().splitlines()
            table.append((i + 1, "continue", "-", "to the end", code))
            if code != 0:
                raise SystemExit(f"the final run failed ({code}): {err[-1] if err else ''}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if r["kind"] == "train"]
    expected = [(r["step"], r["kind"]) for r in rows]
    missing = []
    for segment in sorted((run / "wandb").glob("offline-run-*/*.wandb")):
        logged = {(h["step"], k.split("/")[0]) for h in wandb_history(segment) for k in h if "/" in k}
        missing.append([e for e in expected if e not in logged])
    missing = min(missing, key=len)  # the most complete segment (the last process's, which replayed the rest)
    return {"table": table, "train_rows": len(train_steps), "expected_rows": steps // 10,
            "duplicates": len(train_steps) - len(set(train_steps)), "complete": train_steps == list(range(10, steps + 1, 10)),
            "wandb_segments": len(list((run / "wandb").glob("offline-run-*/*.wandb"))), "wandb_missing": missing}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--max-delay", type=float, default=8.0, help="longest wait before a kill (seconds)")
    p.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    a = p.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="scoregan-kill-"))
    out.mkdir(parents=True, exist_ok=True)
    r = drill(a.kills, a.seed, a.steps, out, a.max_delay)
    print("| # | the run | killed after (s) | phase at the kill | exit |\n|---|---|---|---|---|")
    for row in r["table"]:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print(f"\nmetrics.jsonl: {r['train_rows']} train rows of {r['expected_rows']} expected, "
          f"{r['duplicates']} duplicates, complete: {r['complete']}")
    print(f"wandb: {r['wandb_segments']} offline segments; rows of metrics.jsonl missing from the most complete: "
          f"{len(r['wandb_missing'])}")
    if not r["complete"] or r["wandb_missing"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""Data parallelism under torchrun (2 gloo processes on the CPU): the same parameters as one process
with the whole batch, for every trainer (the kernel witnesses, MMD² and batch scores gathered); a
checkpoint written under 2 processes resumes under 1 and the other way round."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from scoregan.checkpoint import load_checkpoint
from scoregan.config import load_config
from scoregan.experiment.loop import Trainer
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

COMMON = ["tracking.mode=disabled", "train.progress=false", "eval.figures=false", "train.steps=20",
          "train.dtype=float64", "train.batch_size=64", "eval.n_samples=64", "train.checkpoint_every=1000",
          "train.eval_every=10", "model.generator.hidden=[32, 32]", "model.discriminator.hidden=[32, 32]"]
CASES = {
    "nsgan": [], "wgan-gp": [], "kernel-flow": ["trainer.bank_size=128"], "gmmn": [], "mmd-gan": [],
    "cfm": ["trainer.solver=euler", "trainer.ode_steps=4", "trainer.velocity_net.hidden=[32]"],
    "score-gan": ["trainer.score_net.hidden=[16]", "trainer.generator_score_net.hidden=[16]",
                  "trainer.data_score_steps=20", "trainer.score_warmup=2", "trainer.data_score_cache=null"],
    "score-gan/batch": ["trainer.score_net.hidden=[16]", "trainer.data_score_steps=20",
                        "trainer.data_score_cache=null", "trainer.generator_score=batch",
                        "trainer.generator_score_batch=32"],
}


def _overrides(case: str, *extra: str) -> list[str]:
    return [*COMMON, *CASES[case], *extra]


def _config(case: str, *extra: str):
    return load_config(ROOT / "configs/toy" / f"8gaussians-{case.split('/')[0]}.yaml", _overrides(case, *extra))


def _torchrun(tmp_path, jobs: list[tuple[str, str, list[str], bool]]) -> None:
    """Run ``jobs`` (case, run_dir, extra overrides, resume) in one 2-process torchrun launch."""
    script = tmp_path / "ddp_jobs.py"
    script.write_text(textwrap.dedent(f"""
        from tests.experiment.test_distributed import _config
        from scoregan.experiment.loop import Trainer
        for case, run_dir, extra, resume in {jobs!r}:
            cfg = _config(case, *extra)
            Trainer(cfg, run_dir, resume=resume).fit()
    """))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]


def _max_relative_difference(a_dir, b_dir) -> float:
    a = load_checkpoint(a_dir / "checkpoints/last.pt")
    b = load_checkpoint(b_dir / "checkpoints/last.pt")
    assert a["step"] == b["step"]
    worst = 0.0
    for net, params in a["rule"]["modules"].items():
        for k, v in params.items():
            if v.is_floating_point():
                worst = max(worst, float((v - b["rule"]["modules"][net][k]).abs().max() / (v.abs().max() + 1e-30)))
    return worst


def test_two_processes_reach_the_parameters_of_one_and_checkpoints_move_between_world_sizes(tmp_path):
    torch.set_num_threads(1)
    # one process, whole batch: the references; and the first half of a run to be finished under 2 processes
    for case in CASES:
        Trainer(_config(case), tmp_path / "one" / case).fit()
    Trainer(_config("kernel-flow", "train.steps=10"), tmp_path / "one_then_two").fit()
    jobs = [(case, str(tmp_path / "two" / case), [], False) for case in CASES]
    jobs += [("kernel-flow", str(tmp_path / "one_then_two"), ["train.steps=20"], True),  # resumed under 2
             ("kernel-flow", str(tmp_path / "two_then_one"), ["train.steps=10"], False)]
    _torchrun(tmp_path, jobs)
    Trainer(_config("kernel-flow"), tmp_path / "two_then_one", resume=True).fit()  # resumed under 1

    worst = {case: _max_relative_difference(tmp_path / "one" / case, tmp_path / "two" / case) for case in CASES}
    print("max relative difference, 2 processes vs 1:", worst)
    assert max(worst.values()) < 1e-9, worst  # float64: only the order of the batch reductions differs
    for mixed in ("one_then_two", "two_then_one"):
        assert _max_relative_difference(tmp_path / "one" / "kernel-flow", tmp_path / mixed) < 1e-9


def test_a_killed_two_process_run_continues_with_the_same_torchrun_command(tmp_path):
    import os
    import signal
    import time

    run = tmp_path / "run"
    sets = [*COMMON, "train.steps=400", "train.checkpoint_every=20", "train.eval_every=1000", "train.log_every=10"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "scoregan",
           "train", str(ROOT / "configs/toy/8gaussians-nsgan.yaml"), "--run-dir", str(run), "--resume-if-exists",
           *[x for o in sets for x in ("--set", o)]]
    env = {"PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints/last.pt").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
    proc.wait()
    step = load_checkpoint(run / "checkpoints/last.pt")["step"]
    assert 0 < step < 400
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 400
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"kind": "train"' in line]
    assert steps == list(range(10, 401, 10))  # rank 0 logged every step once, across the kill


def test_kernel_guidance_repels_every_ranks_particles_and_sampling_writes_once(tmp_path):
    """Two ranks holding half the particles each get exactly the one-process field of all of them; a
    sharded guided chain (scoregan sample --langevin under torchrun) writes all n samples once."""
    script = tmp_path / "field.py"
    script.write_text(textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from scoregan.objectives import kernel
        from scoregan.sampling import KernelGuidance
        dist.init_process_group("gloo")
        r = dist.get_rank()
        g = torch.Generator().manual_seed(0)
        ref, x = torch.randn(30, 2, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
        field = KernelGuidance(kernel("gaussian", bandwidth="median"), ref)
        grad = field.bind(x[4 * r:4 * r + 4]).grad(x[4 * r:4 * r + 4])
        torch.save(grad, "{tmp_path}/grad%d.pt" % r)
    """))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    from scoregan.objectives import kernel
    from scoregan.sampling import KernelGuidance

    g = torch.Generator().manual_seed(0)
    ref, x = torch.randn(30, 2, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    whole = KernelGuidance(kernel("gaussian", bandwidth="median"), ref).bind(x).grad(x)
    halves = torch.cat([torch.load(tmp_path / f"grad{r}.pt") for r in (0, 1)])
    assert torch.allclose(halves, whole, rtol=1e-12, atol=1e-14)

    run = tmp_path / "kf"
    Trainer(_config("kernel-flow", "train.steps=5"), run).fit()
    out = tmp_path / "guided.npz"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "scoregan", "sample", str(run), "--num-samples", "64", "--out", str(out), "--langevin",
                           "--steps", "3", "--no-eval"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    import numpy as np

    with np.load(out) as f:
        assert f["x"].shape == (64, 2) and np.isfinite(f["x"]).all()
        assert np.allclose(f["x0"], load_run_samples(run, 64))  # the first half from rank 0, then rank 1's


def load_run_samples(run, n):
    """The generator's own draws x0 = G(z0) of ``scoregan sample --seed 0`` (the chain's start)."""
    from scoregan.experiment.runs import load_run

    r = load_run(run)
    return r.sample(n, seed=0).numpy()

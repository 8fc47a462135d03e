"""Benchmark of the infinite-width NTK witness gradient G = ∇ₓ Σ_j a_j k(x, y_j): (N, d), (M, d), (M,) → (N, d).

Rows: depth 1–4 (ReLU, bias_std 1, weight_std 1, kind "ntk") at N = M = 500, 2,000 and 10,000, d = 2, on
the CPU (or ``--device cuda``, the default when CUDA is available). Columns: the gram k(x, y) (N, M);
``NTKKernel.witness_grad`` through autograd over the recursion (``fast_path = False``, the path before
issue 21; only up to ``--autograd-max``), the autograd-free forward recursion (``kernels.ntk_fast``, the
default for closed-form activations), and the Gaussian kernel's ``witness_grad`` (bandwidth 1) for
scale; median (and min) of ``--repeats`` calls after one warm-up call, in ms, and ns per pair. Also the time
per iteration of ``scoregan.diagnostics.ntk_flows.particle_flow`` (500 particles × 500 targets,
depth 3, ReLU, bias_std 1, loss "ipm", step_size 2, disc_time 1), both paths.

    PYTHONPATH=. python bench/ntk.py                  # one thread, float32, the default table
    PYTHONPATH=. python bench/ntk.py --dtype float64 --sizes 500 --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from scoregan.diagnostics.ntk_flows import particle_flow
from scoregan.objectives.kernels import NTKKernel, kernel


def _times(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, min) wall time of fn() in ms over ``repeats`` calls after one warm-up."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, min(ts) * 1e3


def _ntk(depth: int, fast: bool, compile: bool = False) -> NTKKernel:
    k = kernel("ntk", depth=depth, activation="relu", bias_std=1.0, compile=compile)
    k.fast_path = fast
    return k


def witness_table(sizes: list[int], depths: list[int], dtype: torch.dtype, repeats: int, device: str = "cpu",
                  autograd_max: int = 2000) -> list[dict]:
    """Per (N = M, depth): the gram k(x, y) (N, M) and witness_grad, ms per call and ns per pair; the autograd
    path only up to ``autograd_max`` (it is ~7× slower). max rel err: max |G − G_ref| / max |G_ref| of the fast path
    against the float64 fast path (float32 runs) or the float64 autograd path (float64 runs)."""
    rows = []
    gauss = kernel("gaussian", bandwidth=1.0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(fn: Callable[[], object]) -> tuple[float, float]:
        return _times(lambda: (fn(), sync()), repeats)

    for n in sizes:
        g = torch.Generator().manual_seed(n)
        x = (1.2 * torch.randn(n, 2, generator=g) + 0.3).to(device, dtype)
        y = torch.randn(n, 2, generator=g).to(device, dtype)
        a = ((torch.randint(0, 2, (n,), generator=g) * 2 - 1).to(dtype) / n).to(device)
        ref_gauss = timed(functools.partial(gauss.witness_grad, x, y, a))
        for depth in depths:
            slow, fast = _ntk(depth, False), _ntk(depth, True)
            with_autograd = n <= autograd_max
            g_fast = fast.witness_grad(x, y, a).double()
            g_ref = g_fast if dtype == torch.float64 else fast.witness_grad(x.double(), y.double(), a.double())
            err = ((g_fast - g_ref).abs().max() / g_ref.abs().max()).item() if dtype != torch.float64 else float("nan")
            if with_autograd and dtype == torch.float64:
                g_slow = slow.witness_grad(x, y, a)
                err = ((g_fast - g_slow).abs().max() / g_slow.abs().max()).item()
            fused = _ntk(depth, True, compile=True)
            g_fused = fused.witness_grad(x, y, a).double()  # compiles (a one-off, not timed)
            err_fused = ((g_fused - g_ref).abs().max() / g_ref.abs().max()).item()
            row = {"n": n, "m": n, "depth": depth, "device": device,
                   "autograd_ms": timed(functools.partial(slow.witness_grad, x, y, a)) if with_autograd else None,
                   "fast_ms": timed(functools.partial(fast.witness_grad, x, y, a)),
                   "compiled_ms": timed(functools.partial(fused.witness_grad, x, y, a)), "gaussian_ms": ref_gauss,
                   "gram_ms": timed(functools.partial(fast, x, y)), "max_rel_err": err,
                   "compiled_max_rel_err": err_fused}
            row["fast_ns_per_pair"] = row["fast_ms"][0] * 1e6 / (n * n)
            row["compiled_ns_per_pair"] = row["compiled_ms"][0] * 1e6 / (n * n)
            row["gram_ns_per_pair"] = row["gram_ms"][0] * 1e6 / (n * n)
            rows.append(row)
            auto = f"{row['autograd_ms'][0]:8.1f}" if with_autograd else "       —"
            print(f"N=M={n:6d} depth {depth}: gram {row['gram_ms'][0]:8.1f}  witness_grad: autograd {auto}  "
                  f"fast {row['fast_ms'][0]:8.1f} ({row['fast_ns_per_pair']:5.1f} ns/pair)  "
                  f"compiled {row['compiled_ms'][0]:8.1f} ({row['compiled_ns_per_pair']:5.1f} ns/pair, "
                  f"err {err_fused:.1e})  "
                  f"gaussian {ref_gauss[0]:7.1f} ms (median)   max rel err {err:.1e}", flush=True)
    return rows


def flow_times(dtype: torch.dtype, steps: int, repeats: int, device: str = "cpu") -> dict:
    """ms per particle_flow iteration at 500 × 500 (depth 3 ReLU with biases), both paths."""
    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 2, generator=g).to(device, dtype)
    x0 = (0.5 * torch.randn(500, 2, generator=g) + 2.0).to(device, dtype)
    out = {}
    for name, fast, compile in (("autograd", False, False), ("fast", True, False), ("compiled", True, True)):
        k = _ntk(3, fast, compile)
        run = functools.partial(particle_flow, k, real, x0, loss="ipm", n_steps=steps, step_size=2.0, disc_time=1.0)
        med, low = _times(run, repeats)
        out[name] = (med / steps, low / steps)
        print(f"particle_flow 500 x 500, depth 3: {name:8s} {med / steps:7.1f} ms / iteration (median), "
              f"{low / steps:7.1f} (min)", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="500,2000,10000", help="comma-separated N = M")
    p.add_argument("--autograd-max", type=int, default=2000, help="time the autograd path only up to this N")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--depths", default="1,2,3,4")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--flow-steps", type=int, default=3, help="particle_flow iterations per timed call (0: skip)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {args.dtype}", flush=True)
    result = {"dtype": args.dtype, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "device": args.device,
              "rows": witness_table([int(s) for s in args.sizes.split(",")], [int(d) for d in args.depths.split(",")],
                                    dtype, args.repeats, args.device, args.autograd_max)}
    if args.flow_steps:
        result["flow_ms_per_iteration"] = flow_times(dtype, args.flow_steps, args.repeats, args.device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()

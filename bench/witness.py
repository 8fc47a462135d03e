"""Benchmark of the kernel-witness gradient G = ∇ₓ Σ_j a_j k(x, y_j): (N, d), (M, d), (M,) → (N, d).

Methods (``--methods``):
  torch-ieee, torch-tf32   the chunked torch path, ``Kernel.witness_grad(backend="torch")``
  autograd                 torch autograd of the chunked witness ``Kernel.witness`` (per query block)
  fused-ieee, fused-tf32   the fused Triton kernel, ``fused_witness_grad`` (scoregan.objectives.kernels.fused)

Each row: median of several CUDA-event timed repeats after warm-up; the floor 4·N·M·d / (TF32
matmul rate measured in the same run); the max over a subsample of rows of the relative error
‖G_i − R_i‖ / ‖R_i‖ against a float64 exact-difference reference R. Also the device's measured
matmul rates (fp32, TF32, bf16) and, if ``scoregan.sampling.langevin`` imports, the throughput of
a Langevin loop with a ``KernelGuidance`` (particles × steps per second).

Extra modes: ``--check`` (CUDA vs float64 for every kind and path at moderate sizes, exit 1 on
failure) and ``--sweep`` (time launch configurations of the fused kernel per path).

    PYTHONPATH=. python bench/witness.py                       # the default table
    PYTHONPATH=. python bench/witness.py --sizes 65536x2,32768x3072 --methods fused-tf32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from scoregan.objectives.kernels import (
    FusedSpec,
    kernel,
    median_bandwidth,
)
from scoregan.objectives.kernels import fused as fw

DEFAULT_SIZES = "65536x2,65536x16,65536x64,65536x784,32768x3072"
DEFAULT_METHODS = "torch-ieee,torch-tf32,autograd,fused-ieee,fused-tf32"
DEVICE = "cuda"  # --device; "cpu" runs the kernels in Triton's interpreter (tiny sizes only)


def empty_cache() -> None:
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ timing


def cuda_time(fn: Callable[[], Any], warmup: int, repeats: int, budget_s: float) -> list[float]:
    """Milliseconds of ``fn`` per call: ``warmup`` untimed calls, then up to ``repeats`` calls timed
    with CUDA events (host clock on the CPU), fewer if they would exceed ``budget_s`` (≥ 3)."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    t0 = time.perf_counter()
    for _ in range(repeats):
        if DEVICE == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() - t0 > budget_s and len(times) >= 3:
            break
    return times


def matmul_ceilings(n: int = 8192) -> dict[str, float]:
    """Measured TFLOP/s of an n×n×n torch.matmul: fp32 (IEEE), TF32 and bf16, on random data."""
    n = n if DEVICE == "cuda" else 512
    out = {}
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    try:
        for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)):
            matmul.allow_tf32 = tf32
            a = torch.randn(n, n, device=DEVICE, dtype=dtype)
            b = torch.randn(n, n, device=DEVICE, dtype=dtype)
            ms = statistics.median(cuda_time(lambda a=a, b=b: a @ b, 2, 10, 5.0))
            out[name] = 2.0 * n**3 / (ms * 1e-3) / 1e12
            del a, b
    finally:
        matmul.allow_tf32 = before
    return out


# ------------------------------------------------------------------------------------------ data


def make_problem(n: int, m: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Particles x ~ 1.2·N(0, I) + 0.3, centres y ~ N(0, I), weights ±1/M (random signs)."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    x = 1.2 * torch.randn(n, d, device=DEVICE, generator=g) + 0.3
    y = torch.randn(m, d, device=DEVICE, generator=g)
    sign = torch.randint(0, 2, (m,), device=DEVICE, generator=g).float() * 2 - 1
    return x, y, sign / m


def make_kernel(kind: str, x: torch.Tensor, y: torch.Tensor):
    """A kernel object of ``kind`` with its length scale at the data's median distance."""
    h = median_bandwidth(x, y)
    if kind in ("gaussian", "laplace"):
        return kernel(kind, bandwidth=h)
    if kind == "imq":
        return kernel("imq", c=h, beta=-0.5)
    if kind == "energy":
        return kernel("energy")
    raise ValueError(f"kind={kind!r} not benchmarked; choose gaussian, laplace, imq, energy")


def reference(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, spec: FusedSpec, rows: torch.Tensor,
              precision: str) -> torch.Tensor:
    """float64 exact-difference G on ``rows`` of x, with the coincidence snap of ``precision``."""
    d = x.shape[1]
    tol = fw.coincidence_tol(spec.kind, d, precision)
    chunk = max(1, (1 << 27) // (y.shape[0] * d))
    return fw.witness_grad_reference(x[rows].double(), y.double(), a.double(), spec, tol=tol, chunk_size=chunk)


def rel_errors(g: torch.Tensor, r: torch.Tensor) -> tuple[float, float]:
    """(max_i ‖g_i − r_i‖ / max_i ‖r_i‖, ‖g − r‖_F / ‖r‖_F); NaN anywhere gives inf.

    The first ("max rel err") scales every row's error by the largest row norm, so that rows
    where G vanishes (a particle at a symmetric position) do not turn rounding into infinity.
    """
    g = g.double()
    if not bool(torch.isfinite(g).all()):
        return math.inf, math.inf
    row = ((g - r).norm(dim=1).max() / r.norm(dim=1).max().clamp_min(1e-300)).item()
    return row, ((g - r).norm() / r.norm()).item()


# ------------------------------------------------------------------------------------------ methods


def method_fn(method: str, kern, spec: FusedSpec, x, y, a) -> Callable[[], torch.Tensor]:
    if method.startswith("torch-"):
        prec = method.split("-")[1]
        return lambda: kern.witness_grad(x, y, a, backend="torch", precision=prec)
    if method.startswith("fused-"):
        prec = method.split("-")[1]
        return lambda: fw.fused_witness_grad(x, y, a, spec, prec)
    if method == "autograd":
        # autograd of the chunked witness, one block of queries at a time (bounded memory)
        block = max(1, (1 << 26) // y.shape[0])

        def run() -> torch.Tensor:
            out = []
            for i in range(0, x.shape[0], block):
                xb = x[i : i + block].detach().requires_grad_(True)
                with torch.enable_grad():
                    (grad,) = torch.autograd.grad(kern.witness(xb, y, a).sum(), xb)
                out.append(grad)
            return torch.cat(out)

        return run
    raise ValueError(f"unknown method {method!r}")


def bench_rows(args) -> list[dict[str, Any]]:
    rows_out = []
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    plan = [(kind_, n, d, args.methods.split(",")) for n, d in sizes for kind_ in ["gaussian"]]
    for kind_ in [k for k in args.extra_kinds.split(",") if k]:
        for n, d in [tuple(int(v) for v in s.split("x")) for s in args.extra_sizes.split(",") if s]:
            plan.append((kind_, n, d, args.extra_methods.split(",")))
    for kind_, n, d, methods in plan:
        x, y, a = make_problem(n, n, d, seed=n + d)
        kern = make_kernel(kind_, x, y)
        spec = kern.fused_spec(x, y)
        ref_rows = torch.linspace(0, n - 1, min(args.ref_rows, n), device=DEVICE).long()
        refs: dict[str, torch.Tensor] = {}
        for method in methods:
            fn = method_fn(method, kern, spec, x, y, a)
            prec = "tf32" if method.endswith("tf32") else "ieee"
            try:
                times = cuda_time(fn, args.warmup, args.repeats, args.budget)
                g = fn()
            except torch.OutOfMemoryError as err:
                print(f"  {kind_} n={n} d={d} {method}: out of memory ({err})", flush=True)
                empty_cache()
                continue
            if prec not in refs:
                refs[prec] = reference(x, y, a, spec, ref_rows, prec)
            err_row, err_fro = rel_errors(g[ref_rows], refs[prec])
            med = statistics.median(times)
            floor = 4.0 * n * n * d / (args.ceilings["tf32"] * 1e12) * 1e3
            row = dict(kind=kind_, N=n, M=n, d=d, method=method, path=fw.select_path(d, prec) if method.startswith("fused") else "",
                       median_ms=med, min_ms=min(times), max_ms=max(times), repeats=len(times),
                       floor_tf32_ms=floor, x_floor=med / floor, max_rel_err=err_row, fro_rel_err=err_fro)
            rows_out.append(row)
            print(f"  {kind_:8s} N=M={n:6d} d={d:5d} {method:11s} {med:10.3f} ms  (×{med / floor:6.2f} floor)  "
                  f"err {err_row:.2e}", flush=True)
            del g
            empty_cache()
        del x, y, a
    return rows_out


def langevin_rows(args) -> list[dict[str, Any]]:
    """Particles × steps per second of ``langevin`` with a KernelGuidance (repulsion on)."""
    try:
        from scoregan.sampling.guidance import KernelGuidance
        from scoregan.sampling.langevin import langevin
    except Exception as err:  # pragma: no cover - depends on the tree
        print(f"  langevin: not available ({type(err).__name__}: {err})")
        return []
    out = []
    for spec_s in [s for s in args.langevin.split(",") if s]:
        n, d, backend, prec = spec_s.split(":")
        n, d = int(n), int(d)
        x0, y, _ = make_problem(n, n, d, seed=7)
        h = kernel("gaussian", bandwidth="median").resolve(x0, y).bandwidth
        guide = KernelGuidance(kernel("gaussian", bandwidth=h), y, backend=backend, precision=prec)
        steps = args.langevin_steps

        def run(x0=x0, guide=guide, steps=steps, h=h):
            return langevin(x0, guidance=guide, sigmas=1.0, steps_per_level=steps, step_size=1e-3 * h * h,
                            denoise=False, generator=torch.Generator(device=DEVICE).manual_seed(0))

        times = cuda_time(run, 1, 3, args.budget)
        med = statistics.median(times)
        rate = n * steps / (med * 1e-3)
        out.append(dict(kind="gaussian", N=n, M=n, d=d, method=f"langevin-{backend}-{prec}", steps=steps,
                        median_ms=med, particle_steps_per_s=rate))
        print(f"  langevin N={n} (centres {2 * n}) d={d} {backend}/{prec}: {med:.1f} ms for {steps} steps, "
              f"{rate:.3e} particle-steps/s", flush=True)
    return out


# ------------------------------------------------------------------------------------------ check / sweep


CHECK_SPECS = [
    FusedSpec("gaussian", (1.0,)), FusedSpec("gaussian_mix", (0.5, 2.0, 0.3, 0.7)), FusedSpec("imq", (1.0, -0.5)),
    FusedSpec("imq", (0.8, -1.3)), FusedSpec("laplace", (1.0,)), FusedSpec("energy", ()),
    FusedSpec("poly_power", (1.0, -1.0, 0.0)), FusedSpec("poly_power", (-1.0, 1.0, 0.25)),
    FusedSpec("poly_log", (2.0, -1.0, 0.0)), FusedSpec("poly_log", (0.0, -1.0, 0.1)),
]


def scaled_spec(spec: FusedSpec, d: int) -> FusedSpec:
    """Bandwidths scaled by √d so that the kernels see O(1) exponents at every d."""
    r = math.sqrt(d)
    p = spec.params
    if spec.kind in ("gaussian", "laplace"):
        return FusedSpec(spec.kind, (p[0] * r,))
    if spec.kind == "gaussian_mix":
        h = len(p) // 2
        return FusedSpec(spec.kind, tuple(v * r for v in p[:h]) + p[h:])
    if spec.kind == "imq":
        return FusedSpec(spec.kind, (p[0] * r, p[1]))
    if spec.kind in ("poly_power", "poly_log"):
        return FusedSpec(spec.kind, (p[0], p[1], p[2] * d))
    return spec


def check(args) -> bool:
    """Every kind on every path (plus coincident points) against float64; True if all pass.

    Limits on the relative Frobenius error over the checked rows: 1e-5 for "ieee" and for the
    direct path, 2e-3 for "tf32".
    """
    ok = True
    print(f"{'d':>5s} {'N':>5s} {'M':>5s} {'kind':12s} {'prec':5s} {'max rel err':>12s} {'fro rel':>10s}  note")
    all_kinds = {2, 64, 300}
    for d in (1, 2, 3, 4, 5, 16, 17, 64, 100, 128, 129, 300, 784):
        n, m = args.check_size + 1, args.check_size - 1
        x, y, a = make_problem(n, m, d, seed=d)
        k = min(50, m // 4)
        x[:k] = y[:k]  # coincident pairs: the singular kinds must stay finite and follow the snap
        rows = torch.arange(0, n, 7, device=DEVICE)
        specs = CHECK_SPECS if d in all_kinds else [CHECK_SPECS[i] for i in (0, 5, 8)]
        for spec in specs:
            spec = scaled_spec(spec, d)
            for prec in ("ieee", "tf32"):
                g = fw.fused_witness_grad(x, y, a, spec, prec)
                sync()
                tol = fw.coincidence_tol(spec.kind, d, prec)
                r = fw.witness_grad_reference(x[rows].double(), y.double(), a.double(), spec, tol=tol, chunk_size=64)
                err_row, err_fro = rel_errors(g[rows], r)
                limit = 1e-5 if (prec == "ieee" or d <= fw.DIRECT_MAX_D) else 2e-3
                bad = not (err_fro <= limit) or not bool(torch.isfinite(g).all())
                ok &= not bad
                note = "FAIL" if bad else ""
                if spec.kind == "energy" and prec == "tf32":  # what the coarse TF32 snap costs vs no snap
                    r0 = fw.witness_grad_reference(x[rows].double(), y.double(), a.double(), spec, tol=1e-6,
                                                   chunk_size=64)
                    note += f" (vs tol=1e-6 reference: {rel_errors(g[rows], r0)[1]:.2e}; snap tol {tol:.2e})"
                print(f"{d:5d} {n:5d} {m:5d} {spec.kind:12s} {prec:5s} {err_row:12.2e} {err_fro:10.2e}  {note}",
                      flush=True)
        del x, y, a
    # dtype round trips
    x, y, a = make_problem(min(1000, args.check_size), min(1000, args.check_size), 64, seed=1)
    spec = FusedSpec("gaussian", (8.0,))
    g32 = fw.fused_witness_grad(x, y, a, spec)
    g16 = fw.fused_witness_grad(x.half(), y.half(), a.half(), spec)
    g64 = fw.fused_witness_grad(x.double(), y.double(), a.double(), spec)
    ok &= g16.dtype == torch.float16 and g64.dtype == torch.float64
    print("dtypes:", g16.dtype, g64.dtype, "fp64 vs fp32", ((g64 - g32.double()).norm() / g64.norm()).item())
    print("CHECK", "PASSED" if ok else "FAILED", flush=True)
    return ok


SWEEP = {
    # path-precision: LaunchConfig keyword sets (block_d 0 on the gram path: the default padding)
    "direct-tf32": [dict(block_n=64, block_m=64, num_warps=8, num_stages=1),
                    dict(block_n=32, block_m=64, num_warps=4, num_stages=1)],
    "gram-tf32": [dict(block_n=128, block_m=64, num_warps=8, num_stages=3),
                  dict(block_n=128, block_m=64, num_warps=8, num_stages=3, fold=False),
                  dict(block_n=128, block_m=64, block_d=-2, num_warps=8, num_stages=3),
                  dict(block_n=128, block_m=64, num_warps=8, num_stages=2),
                  dict(block_n=64, block_m=64, num_warps=4, num_stages=2),
                  dict(block_n=128, block_m=128, num_warps=8, num_stages=2)],
    "gram-ieee": [dict(block_n=128, block_m=64, num_warps=8, num_stages=2)],
    "two_phase-tf32": [dict(block_n=32, block_m=64, num_warps=4, num_stages=1, gemm="cublas"),
                       dict(block_n=32, block_m=64, num_warps=4, num_stages=1, gemm="cublas", slab_cols=8192),
                       dict(block_n=128, block_m=128, block_d=128, block_k=32, num_warps=8, num_stages=3, gemm="mixed"),
                       dict(block_n=128, block_m=256, block_d=128, block_k=32, num_warps=8, num_stages=3, gemm="mixed"),
                       dict(block_n=128, block_m=128, block_d=128, block_k=32, num_warps=8, num_stages=3, gemm="mixed",
                            slab_cols=8192),
                       dict(block_n=128, block_m=128, block_d=128, block_k=32, num_warps=8, num_stages=3, gemm="triton")],
    "two_phase-ieee": [dict(block_n=32, block_m=64, num_warps=4, num_stages=1, gemm="cublas"),
                       dict(block_n=64, block_m=64, block_k=32, num_warps=4, num_stages=3, gemm="mixed")],
}


def sweep(args) -> list[dict[str, Any]]:
    """Time candidate LaunchConfigs (gaussian) per size, precision and path (``--sweep-paths``)."""
    out = []
    for s in [s for s in args.sizes.split(",") if s]:
        n, d = (int(v) for v in s.split("x"))
        x, y, a = make_problem(n, n, d, seed=3)
        spec = make_kernel("gaussian", x, y).fused_spec(x, y)
        floor = 4.0 * n * n * d / (args.ceilings["tf32"] * 1e12) * 1e3
        for prec in args.sweep_precisions.split(","):
            own = fw.select_path(d, prec)
            paths = [own] + ([p for p in args.sweep_paths.split(",") if p and p != own] if d > fw.DIRECT_MAX_D else [])
            for path in paths:
                for kw in SWEEP.get(f"{path}-{prec}", []):
                    kw = dict(kw)
                    if kw.get("block_d") == -2:  # gram with room for the ones column
                        kw["block_d"] = fw.gram_block_d(d + 1)
                    cfg = fw.LaunchConfig(**kw, path=path)
                    def fn(x=x, y=y, a=a, spec=spec, prec=prec, cfg=cfg):
                        return fw.fused_witness_grad(x, y, a, spec, prec, config=cfg)

                    try:
                        med = statistics.median(cuda_time(fn, 1, 5, 2.0))
                    except Exception as err:  # a config that does not compile (resources) is skipped
                        print(f"  sweep d={d} {prec} {cfg}: {type(err).__name__}: {str(err)[:200]}", flush=True)
                        continue
                    out.append(dict(N=n, d=d, precision=prec, path=path, config=repr(cfg), median_ms=med,
                                    x_floor=med / floor))
                    print(f"  sweep N={n} d={d} {prec} {path}: {med:9.3f} ms (×{med / floor:5.2f})  {kw}", flush=True)
        del x, y, a
        empty_cache()
    resources()
    return out


def resources() -> None:
    """Registers, spills and shared memory of every compiled variant (best effort across versions)."""
    for name in ("_direct_kernel", "_gram_kernel", "_slab_epilogue_kernel", "_slab_kernel", "_slab_accumulate_kernel"):
        fn = getattr(fw, name)
        try:
            for caches in fn.device_caches.values():
                for ck in caches[0].values():
                    md = ck.metadata
                    print(f"  {name}: regs={ck.n_regs} spills={ck.n_spills} shared={md.shared} warps={md.num_warps} "
                          f"stages={md.num_stages} wgmma={'wgmma' in ck.asm.get('ptx', '')}")
        except Exception as err:
            print(f"  {name}: resource report unavailable ({type(err).__name__}: {err})")


# ------------------------------------------------------------------------------------------ main


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's H100 targets, each marked met / not met / not measured."""
    def get(d, method):
        for r in rows:
            if r["kind"] == "gaussian" and r["d"] == d and r["method"] == method:
                return r
        return None

    lines = []
    for d, method, limit in ((2, "fused-tf32", 3.0), (2, "fused-ieee", 3.0), (16, "fused-tf32", 2.0), (64, "fused-tf32", 4.0)):
        r = get(d, method)
        lines.append(f"d={d} {method} ≤ {limit} ms: " + ("not measured" if r is None else
                     f"{r['median_ms']:.3f} ms → {'met' if r['median_ms'] <= limit else 'NOT met'}"))
    for d in (784, 3072):
        r = get(d, "fused-tf32")
        lines.append(f"d={d} fused-tf32 ≤ 1.5× TF32 floor: " + ("not measured" if r is None else
                     f"×{r['x_floor']:.2f} → {'met' if r['x_floor'] <= 1.5 else 'NOT met'}"))
    worst = {p: max([r["max_rel_err"] for r in rows if r["method"] == f"fused-{p}"] or [math.nan]) for p in ("ieee", "tf32")}
    lines.append(f"fused-ieee max rel err ≤ 1e-5: {worst['ieee']:.2e} → {'met' if worst['ieee'] <= 1e-5 else 'NOT met'}")
    lines.append(f"fused-tf32 max rel err ≤ 2e-3: {worst['tf32']:.2e} → {'met' if worst['tf32'] <= 2e-3 else 'NOT met'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated NxD (N = M), default %(default)s")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="default %(default)s")
    p.add_argument("--extra-kinds", default="laplace,imq,energy", help="other kinds (rows at --extra-sizes)")
    p.add_argument("--extra-sizes", default="65536x64", help="default %(default)s")
    p.add_argument("--extra-methods", default="torch-tf32,fused-ieee,fused-tf32")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget", type=float, default=4.0, help="seconds of timed repeats per row (≥ 3 repeats)")
    p.add_argument("--ref-rows", type=int, default=256, help="rows checked against float64")
    p.add_argument("--langevin", default="65536:2:triton:tf32,65536:64:triton:tf32,65536:2:torch:tf32",
                   help="N:d:backend:precision,... for the Langevin throughput rows ('' to skip)")
    p.add_argument("--langevin-steps", type=int, default=5)
    p.add_argument("--two-phase-gemm", default=None, choices=("cublas", "mixed", "triton"),
                   help="products of the two-phase path (default: kernels.fused.FUSED_SETTINGS)")
    p.add_argument("--check", action="store_true", help="correctness on CUDA for every kind and path, then exit")
    p.add_argument("--sweep", action="store_true", help="time launch configurations (at --sizes), then exit")
    p.add_argument("--sweep-precisions", default="tf32")
    p.add_argument("--sweep-paths", default="", help="also time these paths, e.g. two_phase")
    p.add_argument("--json", default=None, help="write every number to this file")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run in Triton's interpreter")
    p.add_argument("--check-size", type=int, default=3000, help="N ≈ M of --check")
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if args.two_phase_gemm:
        fw.FUSED_SETTINGS.two_phase_gemm = args.two_phase_gemm
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device (use --device cpu for a smoke run in Triton's interpreter)")
        return 2
    import triton

    if DEVICE == "cuda":
        props = torch.cuda.get_device_properties(0)
        name, sms = props.name, props.multi_processor_count
    else:
        name, sms = "cpu (Triton interpreter)", 0
    info = dict(device=name, sms=sms, torch=torch.__version__, triton=triton.__version__,
                two_phase_gemm=fw.FUSED_SETTINGS.two_phase_gemm)
    print(info, flush=True)
    if args.check:
        return 0 if check(args) else 1
    args.ceilings = matmul_ceilings()
    print("matmul TFLOP/s:", {k: round(v, 1) for k, v in args.ceilings.items()}, flush=True)
    result: dict[str, Any] = dict(info=info, ceilings_tflops=args.ceilings)
    if args.sweep:
        result["sweep"] = sweep(args)
    else:
        result["rows"] = bench_rows(args)
        result["langevin"] = langevin_rows(args)
        result["targets"] = targets(result["rows"])
        print()
        print(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def table(result: dict[str, Any]) -> str:
    c = result["ceilings_tflops"]
    info = result["info"]
    lines = [(f"device: {info['device']} ({info['sms']} SMs), torch {info['torch']}, triton {info['triton']}, "
              f"two-phase products: {info.get('two_phase_gemm', '?')}"),
             f"measured matmul ceilings (torch.matmul, 8192³ on CUDA): fp32 {c['fp32']:.1f}, tf32 {c['tf32']:.1f}, bf16 {c['bf16']:.1f} TFLOP/s",
             "",
             "| kind | N = M | d | method | path | median ms | floor ms (TF32) | × floor | max rel err |",
             "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lines.append(f"| {r['kind']} | {r['N']} | {r['d']} | {r['method']} | {r['path']} | {r['median_ms']:.3f} | "
                     f"{r['floor_tf32_ms']:.3f} | {r['x_floor']:.2f} | {r['max_rel_err']:.1e} |")
    if result.get("langevin"):
        lines += ["", "| Langevin (KernelGuidance, repulsion) | N | centres | d | steps | median ms | particle-steps/s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["langevin"]:
            lines.append(f"| {r['method']} | {r['N']} | {2 * r['N']} | {r['d']} | {r['steps']} | {r['median_ms']:.1f} | "
                         f"{r['particle_steps_per_s']:.3e} |")
    lines += ["", "targets:"] + [f"  {t}" for t in result["targets"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: generator steepness ‖J_G(z_i)‖₂ on a batch of latents vs one training pass.

Cost unit: one generator forward-and-backward pass on the same batch (the forward, a scalar loss,
and the backward to every parameter, i.e. what a generator update costs before the optimiser).
For each solver (``scoregan.diagnostics.steepness``, Lanczos and power iteration, at the same
relative-residual tolerance) the table shows the median time, the number of Jacobian products, the
ratio to the pass, and the max relative error against the explicit float64 Jacobian's largest
singular value on a subsample of rows. The acceptance target is Lanczos ≤ 40 passes' worth.

    PYTHONPATH=. python bench/steepness.py                      # latent 64, hidden 512x2, 784 out, 256 latents
    PYTHONPATH=. python bench/steepness.py --threads 0 --json out.json   # torch's thread count
    PYTHONPATH=. python bench/steepness.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch.func import jacrev, vmap

from scoregan.diagnostics.steepness import spectral_norm_batch
from scoregan.models import Generator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--hidden", type=str, default="512,512", help="comma-separated hidden widths")
    p.add_argument("--out-dim", type=int, default=784)
    p.add_argument("--activation", default="relu")
    p.add_argument("--tol", type=float, default=1e-3, help="relative residual tolerance (the library default)")
    p.add_argument("--power-iters", type=int, default=2000, help="cap for power iteration")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--check-rows", type=int, default=16, help="rows checked against the explicit Jacobian")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    hidden = [int(h) for h in args.hidden.split(",") if h]
    torch.manual_seed(args.seed)
    gen = Generator(args.latent, args.out_dim, hidden=hidden, activation=args.activation).to(device, dtype)
    z = torch.randn(args.batch, args.latent, generator=torch.Generator().manual_seed(args.seed + 1)).to(device, dtype)

    def train_pass() -> None:
        gen.zero_grad(set_to_none=True)
        gen(z).square().mean().backward()

    t_pass = median_time(train_pass, device, args.repeats)
    gen.zero_grad(set_to_none=True)

    # float64 reference on a subsample: the explicit Jacobian's largest singular value
    rows = z[: args.check_rows].double()
    g64 = Generator(args.latent, args.out_dim, hidden=hidden, activation=args.activation).to(device, torch.float64)
    g64.load_state_dict({k: v.double() for k, v in gen.state_dict().items()})
    with torch.no_grad():
        s_all = torch.linalg.svdvals(vmap(jacrev(lambda zi: g64(zi[None])[0]))(rows))
    ref, ratio_21 = s_all[:, 0], (s_all[:, 1] / s_all[:, 0]).median().item()

    results = []
    for method, iters in (("lanczos", 64), ("power", args.power_iters)):
        out = {}

        def run() -> None:
            out["res"] = spectral_norm_batch(gen, z, iters=iters, tol=args.tol, method=method, rng=args.seed)

        slow = method == "power"  # hundreds of products: fewer repeats
        t = median_time(run, device, 3 if slow else args.repeats, warmup=0 if slow else 1)
        res = out["res"]
        err = ((res.sigma[: args.check_rows].double() - ref) / ref).abs().max().item()
        results.append({"method": method, "median_s": t, "products": res.iters, "passes": t / t_pass,
                        "converged": res.converged, "max_rel_err": err})

    info = {"machine": platform.processor() or platform.machine(), "platform": platform.platform(),
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": args.dtype,
            "batch": args.batch, "latent": args.latent, "hidden": hidden, "out_dim": args.out_dim,
            "activation": args.activation, "tol": args.tol, "median_sigma2_over_sigma1": ratio_21,
            "pass_median_s": t_pass, "results": results}

    print(f"# steepness of a {args.latent}->{'x'.join(map(str, hidden))}->{args.out_dim} {args.activation} MLP generator, "
          f"{args.batch} latents, {args.dtype} on {info['device']} ({info['threads']} threads), tol {args.tol:g}")
    print(f"# one generator forward+backward pass: {1e3 * t_pass:.2f} ms (median of {args.repeats}); "
          f"median sigma2/sigma1 = {ratio_21:.3f}")
    print("| solver | Jacobian products | median time (ms) | passes' worth | converged | max rel. error vs float64 SVD |")
    print("| --- | ---: | ---: | ---: | :---: | ---: |")
    for r in results:
        print(f"| {r['method']} | {r['products']} | {1e3 * r['median_s']:.1f} | {r['passes']:.1f} | "
              f"{'yes' if r['converged'] else 'no'} | {r['max_rel_err']:.1e} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=2)
    return info


if __name__ == "__main__":
    main()

"""The fused witness-gradient kernel (scoregan.objectives.kernels.fused) against float64.

CPU tensors run the very Triton kernels that CUDA compiles, through Triton's interpreter (a
second copy of the module built with TRITON_INTERPRET=1; the environment of the rest of the test
process is left alone). Sizes are small because the interpreter is slow; the interpreter tiles
(16/32) are chosen so that N, M and d cross tile borders.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

pytest.importorskip("triton")

from scoregan.objectives.kernels import (
    FusedSpec,
    cancellation_tol,
    kernel,
    spec_profile,
)
from scoregan.objectives.kernels import fused as fw


def problem(n: int, m: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Particles x ~ 1.2·N(0, I) + 0.3 (off-centre on purpose), centres y ~ N(0, I), signed weights."""
    g = torch.Generator().manual_seed(seed)
    x = 1.2 * torch.randn(n, d, generator=g) + 0.3
    y = torch.randn(m, d, generator=g)
    a = torch.randn(m, generator=g) / m
    return x, y, a


def scaled(kind: str, d: int, *params: float) -> FusedSpec:
    """A spec whose length scales grow like √d, so that φ' is O(1) at typical distances."""
    r = math.sqrt(d)
    if kind in ("gaussian", "laplace"):
        return FusedSpec(kind, (params[0] * r,))
    if kind == "gaussian_mix":
        half = len(params) // 2
        return FusedSpec(kind, tuple(h * r for h in params[:half]) + tuple(params[half:]))
    if kind == "imq":
        return FusedSpec(kind, (params[0] * r, params[1]))
    if kind in ("poly_power", "poly_log"):
        return FusedSpec(kind, (params[0], params[1], params[2] * d))
    return FusedSpec(kind, tuple(params))


def reference(x, y, a, spec: FusedSpec, precision: str = "ieee") -> torch.Tensor:
    """float64 exact differences with the fused kernel's coincidence snap (only where it matters)."""
    tol = fw.coincidence_tol(spec.kind, x.shape[1], precision)
    return fw.witness_grad_reference(x.double(), y.double(), a.double(), spec, tol=tol)


def scaled_error(g: torch.Tensor, r: torch.Tensor) -> float:
    """max_i ‖g_i − r_i‖ / max_i ‖r_i‖ (NaN → inf)."""
    g = g.double()
    if not bool(torch.isfinite(g).all()):
        return math.inf
    return ((g - r).norm(dim=1).max() / r.norm(dim=1).max()).item()


# (d, spec, N, M, precision): every kind on at least one path, every path with several kinds, N
# and M both multiples and non-multiples of the interpreter tiles (direct 16×32, else 32×32).
# The interpreter multiplies in fp32 whatever the precision, so "tf32" (which selects the gram
# path for 4 < d ≤ 64) is held to the IEEE tolerance here; bench/witness.py --check holds the
# compiled TF32 kernels to 2e-3 on a GPU.
CASES = [
    # direct path, d ≤ 4: exact differences
    (1, ("laplace", 1.0), 37, 45, "ieee"),
    (2, ("gaussian", 1.0), 64, 64, "ieee"),
    (2, ("gaussian_mix", 0.5, 2.0, 0.3, 0.7), 37, 45, "tf32"),
    (2, ("imq", 1.0, -0.5), 5, 70, "ieee"),
    (3, ("energy",), 37, 45, "ieee"),
    (4, ("poly_power", 1.0, -1.0, 0.0), 40, 33, "ieee"),
    (3, ("poly_log", 2.0, -1.0, 0.0), 20, 50, "ieee"),
    # gram path, "tf32" and 4 < d ≤ 64: flash-attention style (d = 5, 17, 33 with the ones column)
    (5, ("poly_power", -1.0, 1.0, 0.25), 37, 45, "tf32"),
    (17, ("imq", 0.8, -1.3), 64, 96, "tf32"),
    (17, ("poly_log", 0.0, -1.0, 0.1), 37, 45, "tf32"),
    (64, ("gaussian", 1.0), 45, 37, "tf32"),
    (64, ("laplace", 1.0), 37, 70, "tf32"),
    (33, ("gaussian_mix", 0.5, 2.0, 1.0, 0.6, 0.3, 0.1), 33, 31, "tf32"),
    (20, ("gaussian", 1.0), 40, 50, "tf32"),
    # two-phase path: "ieee" with d > 4, or d > 64
    (17, ("gaussian", 1.0), 37, 45, "ieee"),
    (64, ("energy",), 64, 32, "ieee"),
    (300, ("gaussian", 1.0), 37, 45, "ieee"),
    (300, ("energy",), 32, 64, "tf32"),
    (130, ("poly_power", 3.0, 1.0, 0.0), 37, 45, "ieee"),
    (100, ("imq", 1.0, -0.5), 37, 45, "tf32"),
]


@pytest.mark.parametrize(
    "d, kind_params, n, m, precision", CASES, ids=[f"d{c[0]}-{c[1][0]}-{c[2]}x{c[3]}-{c[4]}" for c in CASES]
)
def test_matches_float64_reference(d, kind_params, n, m, precision):
    x, y, a = problem(n, m, d, seed=d * 1000 + n)
    spec = scaled(kind_params[0], d, *kind_params[1:])
    g = fw.fused_witness_grad(x, y, a, spec, precision)
    assert g.shape == (n, d) and g.dtype == torch.float32
    assert scaled_error(g, reference(x, y, a, spec, precision)) < 1e-5


def test_paths_by_dimension_and_precision():
    assert [fw.select_path(d, "tf32") for d in (1, 4, 5, 64, 65)] == ["direct"] * 2 + ["gram"] * 2 + ["two_phase"]
    assert [fw.select_path(d, "ieee") for d in (4, 5, 64)] == ["direct", "two_phase", "two_phase"]


@pytest.mark.parametrize("d, kind", [(64, "gaussian"), (150, "laplace")])
def test_tf32_runs_in_the_interpreter(d, kind):
    # the interpreter multiplies in fp32 whatever input_precision says; on CUDA, bench/witness.py
    # --check holds "tf32" to 2e-3
    x, y, a = problem(37, 45, d, seed=5)
    spec = scaled(kind, d, 1.0)
    g = fw.fused_witness_grad(x, y, a, spec, "tf32")
    assert scaled_error(g, reference(x, y, a, spec, "tf32")) < 2e-3


@pytest.mark.parametrize("d, precision", [(2, "ieee"), (17, "tf32"), (17, "ieee"), (130, "tf32")])
@pytest.mark.parametrize("kind", ["energy", "laplace"])
def test_coincident_points_follow_the_snap_convention(d, precision, kind):
    # particles that ARE centres: φ' is singular at 0, the pair must contribute exactly nothing
    x, y, a = problem(24, 40, d, seed=d)
    x[:12] = y[:12]
    spec = scaled(kind, d, 1.0) if kind == "laplace" else FusedSpec("energy", ())
    g = fw.fused_witness_grad(x, y, a, spec, precision)
    assert bool(torch.isfinite(g).all())
    assert scaled_error(g, reference(x, y, a, spec, precision)) < 1e-5
    # the same particle without its coincident centre: the pair contributed exactly nothing
    others = torch.arange(40) != 0
    alone = fw.fused_witness_grad(x[:1], y[others], a[others], spec, precision)
    assert torch.allclose(alone[0], g[0], rtol=1e-5, atol=1e-6 * g.norm(dim=1).max().item())


def near_pairs(d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two clusters at ±(10, −5, 0, …) (norms ≈ 11 after the centres' shift) and particles 1e-3…1e-2
    from a centre each: below the float32 expansion's threshold distance (≈ 1.3e-2 at d = 2)."""
    g = torch.Generator().manual_seed(seed)
    far = torch.zeros(d)
    far[0], far[1] = 10.0, -5.0
    y = torch.cat([torch.randn(40, d, generator=g) * 0.3 + far, torch.randn(40, d, generator=g) * 0.3 - far])
    step = torch.randn(30, d, generator=g)
    step = step / step.norm(dim=1, keepdim=True) * 10 ** (-3 + torch.rand(30, 1, generator=g))
    x = y[:60:2] + step
    return x, y, torch.randn(80, generator=g) / 80


@pytest.mark.parametrize("kind_params", [("laplace", 0.5), ("energy",), ("poly_log", 2.0, 1.0, 0.0)],
                         ids=lambda k: k[0])
def test_direct_path_keeps_near_pairs(kind_params):
    """d ≤ 4 forms S from exact differences: distinct pairs however close interact exactly (only
    S = 0 is coincident), like the torch path; the expansion's snap would drop them."""
    x, y, a = near_pairs(2, seed=21)
    spec = FusedSpec(kind_params[0], tuple(kind_params[1:]))
    g = fw.fused_witness_grad(x, y, a, spec, "ieee")
    exact = fw.witness_grad_reference(x.double(), y.double(), a.double(), spec)  # tol = 0
    assert scaled_error(g, exact) < 1e-5
    snapped = fw.witness_grad_reference(x.double(), y.double(), a.double(), spec,
                                        tol=cancellation_tol(torch.float32, 2))
    if spec.kind != "poly_log":  # r² log r: a pair δ apart adds only O(δ log δ)
        assert scaled_error(snapped, exact) > 1e-2  # the near pairs matter
    k = {"laplace": lambda: kernel("laplace", bandwidth=0.5), "energy": lambda: kernel("energy"),
         "poly_log": lambda: kernel("polyharmonic", order=2, dim=2)}[spec.kind]()
    assert k.spec == spec
    assert scaled_error(k.witness_grad(x, y, a, backend="torch"), exact) < 1e-5


def test_forced_paths_and_variants():
    # two-phase with several slabs (32 + 32 + 6 centres), with each choice of products
    x, y, a = problem(37, 70, 100, seed=11)
    spec = scaled("gaussian", 100, 1.0)
    r = reference(x, y, a, spec)
    for gemm in ("cublas", "mixed", "triton"):
        cfg = fw.LaunchConfig(32, 32, 32, 32, slab_cols=32, path="two_phase", gemm=gemm)
        assert scaled_error(fw.fused_witness_grad(x, y, a, spec, "ieee", config=cfg), r) < 1e-5
    # small d: Triton products with d < BLOCK_K; the gram path without the gaussian fold, with the
    # other C·Y operand layout, with and without the ones column (BLOCK_D > d or = d)
    x, y, a = problem(37, 45, 16, seed=12)
    runs = [(scaled("gaussian", 16, 1.0), fw.LaunchConfig(16, 32, 16, 32, path="two_phase", gemm="triton")),
            (scaled("gaussian", 16, 1.0), fw.LaunchConfig(32, 32, 32, fold=False, y_t_for_cy=False)),
            (scaled("gaussian", 16, 1.0), fw.LaunchConfig(32, 32, 16, y_t_for_cy=False)),
            (scaled("imq", 16, 1.0, -0.5), fw.LaunchConfig(32, 32, 32))]
    for spec, cfg in runs:
        got = fw.fused_witness_grad(x, y, a, spec, "tf32", config=cfg)
        assert scaled_error(got, reference(x, y, a, spec, "tf32")) < 1e-5, cfg


def test_dtypes():
    x, y, a = problem(20, 30, 3, seed=3)
    spec = scaled("gaussian", 3, 1.0)
    g32 = fw.fused_witness_grad(x, y, a, spec)
    for low in (torch.float16, torch.bfloat16):
        g = fw.fused_witness_grad(x.to(low), y.to(low), a.to(low), spec)
        assert g.dtype == low
        exact = fw.fused_witness_grad(x.to(low).float(), y.to(low).float(), a.to(low).float(), spec)
        assert torch.allclose(g.float(), exact, rtol=1e-2, atol=1e-2 * exact.abs().max().item())
    g64 = fw.fused_witness_grad(x.double(), y.double(), a.double(), spec)
    assert g64.dtype == torch.float64
    assert scaled_error(g32, g64) < 1e-5


def test_empty_inputs():
    x, y, a = problem(6, 5, 3, seed=0)
    spec = FusedSpec("gaussian", (1.0,))
    assert fw.fused_witness_grad(x[:0], y, a, spec).shape == (0, 3)
    g = fw.fused_witness_grad(x, y[:0], a[:0], spec)
    assert g.shape == (6, 3) and bool((g == 0).all())


def test_kernel_dispatch_matches_torch_backend():
    # Kernel.witness_grad(backend="triton") (kernels.base) lands here; it must agree with its torch path
    x, y, a = problem(37, 45, 17, seed=21)
    k = kernel("gaussian", bandwidth=4.0)
    g_torch = k.witness_grad(x, y, a, backend="torch")
    for precision in ("ieee", "tf32"):  # two-phase and gram paths
        g_triton = k.witness_grad(x, y, a, backend="triton", precision=precision)
        assert scaled_error(g_triton, g_torch.double()) < 1e-5


@pytest.mark.parametrize(
    "spec",
    [FusedSpec("gaussian", (0.9,)), FusedSpec("gaussian_mix", (0.5, 2.0, 0.3, 0.7)), FusedSpec("imq", (0.8, -1.3)),
     FusedSpec("imq", (1.0, -0.5)), FusedSpec("laplace", (1.1,)), FusedSpec("energy", ()),
     FusedSpec("poly_power", (1.0, -1.0, 0.0)), FusedSpec("poly_power", (-1.0, 1.0, 0.2)),
     FusedSpec("poly_power", (3.0, 1.0, 0.0)), FusedSpec("poly_log", (2.0, -1.0, 0.0)),
     FusedSpec("poly_log", (0.0, -1.0, 0.1))],
    ids=lambda s: f"{s.kind}{s.params}",
)
def test_reference_is_the_gradient_of_the_witness(spec):
    # the float64 reference (built on spec_profile_grad) equals autograd of Σ_j a_j φ(‖x − y_j‖²)
    x, y, a = problem(9, 11, 3, seed=4)
    x, y, a = x.double().requires_grad_(True), y.double(), a.double()
    s = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    (auto,) = torch.autograd.grad((spec_profile(spec, s) * a).sum(), x)
    ref = fw.witness_grad_reference(x.detach(), y, a, spec)
    assert torch.allclose(ref, auto, rtol=1e-10, atol=1e-12)


def test_cpu_runs_through_the_interpreter_without_touching_the_environment():
    before = os.environ.get("TRITON_INTERPRET")
    twin = fw.interpreter_twin()
    import triton

    assert twin.INTERPRETED and not isinstance(twin.gram_kernel, triton.runtime.jit.JITFunction)
    assert os.environ.get("TRITON_INTERPRET") == before


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x, y, a, s: fw.fused_witness_grad(x[0], y, a, s), "x"),
        (lambda x, y, a, s: fw.fused_witness_grad(x.long(), y, a, s), "x"),
        (lambda x, y, a, s: fw.fused_witness_grad(x[:, :0], y[:, :0], a, s), "x"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y[:, :2], a, s), "centres"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a[:-1], s), "weights"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a[:, None], s), "weights"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a, s, "fp16"), "precision"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a, FusedSpec("cauchy", (1.0,))), "spec"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a, FusedSpec("gaussian", (1.0, 2.0))), "spec"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a, FusedSpec("gaussian", (-1.0,))), "spec"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a, FusedSpec("gaussian_mix", (1.0, 2.0, 0.5))), "spec"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a, FusedSpec("imq", (0.0, -0.5))), "spec"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a, FusedSpec("laplace", (math.nan,))), "spec"),
        (lambda x, y, a, s: fw.fused_witness_grad(x, y, a, "gaussian"), "spec"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    x, y, a = problem(6, 5, 3, seed=0)
    with pytest.raises(ValueError, match=name):
        call(x, y, a, FusedSpec("gaussian", (1.0,)))

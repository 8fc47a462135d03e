"""Launch and dispatch of the fused kernel-witness gradient (Triton; docs/theory.md §10).

For queries x (N, d), centres y (M, d), weights a (M,) and a fused spec (``profiles``),

    G_i = ∇ₓ D(x_i) = 2 Σ_j c_ij (x_i − y_j) = 2 (x_i Σ_j c_ij − Σ_j c_ij y_j),   c_ij = a_j φ'(s_ij),

G: (N, d), with the N × M matrix never held beyond a tile, except on the two-phase path, which
holds one (N, M_c) slab of C at a time (``FUSED_SETTINGS.slab_bytes``). Paths (``select_path``):

* "direct" (d ≤ 4): exact differences, no matrix product, only S = 0 is coincident;
* "gram" (4 < d ≤ 64, "tf32"): flash-attention style, both products by ``tl.dot`` per tile;
* "two_phase" (d > 64, or "ieee" with d > 4): per slab S = X Yᵀ (cuBLAS), C = a φ'(S) in place
  (Triton), ACC += C Y (cuBLAS); ``FUSED_SETTINGS.two_phase_gemm`` = "mixed" / "triton" are the
  measured alternatives (docs/benchmarks.md).

Numerics (the contract of the torch path, ``kernels.tiling``): inputs are cast to float32
(float64 takes ``witness_grad_reference``), shifted by the centres' mean; on the expansion paths
pairs with S ≤ ``coincidence_tol`` (‖x‖² + ‖y‖²) count as S = 0 (no snap for the gaussian kinds,
whose φ' is smooth). CUDA tensors run the compiled kernels of ``kernels.triton_kernels``, CPU
tensors the same kernels in Triton's interpreter. triton is optional: without it every entry
point raises a ValueError that says so.
"""

from __future__ import annotations

import importlib

import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from scoregan._checks import check_choice, check_int, check_matrix
from scoregan.objectives.kernels.fused_config import (
    DIRECT_MAX_D,
    FUSED_SETTINGS,
    FoldedConstants,
    LaunchConfig,
    check_spec,
    coincidence_tol,
    default_config,
    fold_constants,
    gram_block_d,
    select_path,
)
from scoregan.objectives.kernels.profiles import FusedSpec, cancellation_tol, spec_profile_grad
from scoregan.objectives.kernels.tiling import EXACT_MAX_D, PRECISIONS, matmul_precision

__all__ = ["DIRECT_MAX_D", "FUSED_SETTINGS", "LaunchConfig", "check_spec", "coincidence_tol", "default_config",
           "fused_available", "fused_witness_grad", "gram_block_d", "interpreter_twin", "load_triton_kernels",
           "select_path", "witness_grad_reference"]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------------------------
# The Triton kernels: compiled for CUDA tensors, interpreted (a second module object) for CPU ones.
# --------------------------------------------------------------------------------------------

_TWIN: ModuleType | None = None
_TWIN_LOCK = threading.Lock()
_TWIN_NAME = "scoregan.objectives.kernels._triton_kernels_interpreted"


def load_triton_kernels() -> ModuleType:
    """``kernels.triton_kernels`` (importing triton, an optional dependency), else a ValueError saying why."""
    try:  # imported on demand: that module imports triton, an optional dependency
        triton_kernels = importlib.import_module("scoregan.objectives.kernels.triton_kernels")
    except Exception as err:  # ImportError, or triton failing to initialise
        raise ValueError(
            "backend='triton' needs triton and scoregan.objectives.kernels.triton_kernels "
            f"({type(err).__name__}: {err}); use backend='torch'"
        ) from err
    return triton_kernels


def fused_available() -> bool:
    """Whether the Triton kernels import (triton installed and working)."""
    try:
        load_triton_kernels()
    except ValueError:
        return False
    return True


def interpreter_twin() -> ModuleType:
    """``triton_kernels`` executed with TRITON_INTERPRET=1: its kernels run on the CPU.

    Triton decides compiled vs interpreted when ``triton.jit`` decorates a function, so a second
    module object holds the interpreted kernels next to the compiled ones, without touching the
    environment of anything else (the variable is restored right after).
    """
    global _TWIN
    compiled = load_triton_kernels()
    if compiled.INTERPRETED:
        return compiled
    with _TWIN_LOCK:
        if _TWIN is None:
            spec = importlib.util.spec_from_file_location(_TWIN_NAME, compiled.__file__)
            module = importlib.util.module_from_spec(spec)
            old = os.environ.get("TRITON_INTERPRET")
            os.environ["TRITON_INTERPRET"] = "1"
            sys.modules[_TWIN_NAME] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(_TWIN_NAME, None)
                raise
            finally:
                if old is None:
                    os.environ.pop("TRITON_INTERPRET", None)
                else:
                    os.environ["TRITON_INTERPRET"] = old
            _TWIN = module
    return _TWIN


def _kernels_for(device: torch.device) -> ModuleType:
    compiled = load_triton_kernels()
    return compiled if device.type == "cuda" or compiled.INTERPRETED else interpreter_twin()


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def _check_args(x: Any, centres: Any, weights: Any, spec: Any, precision: Any) -> tuple[str, tuple[float, ...]]:
    check_matrix("x", x)
    check_matrix("centres", centres, dim=x.shape[1])
    if x.shape[1] < 1:
        raise ValueError(f"x must have at least one column (d >= 1), got shape {tuple(x.shape)}")
    for name, t in (("x", x), ("centres", centres)):
        if t.numel() >= 2**31:  # the kernels index with 32-bit offsets
            raise ValueError(f"{name} has {t.numel()} >= 2**31 elements (shape {tuple(t.shape)}); split it into blocks")
    if not isinstance(weights, Tensor) or weights.ndim != 1 or weights.shape[0] != centres.shape[0]:
        shown = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(f"weights must be a tensor of shape ({centres.shape[0]},) (one per centre), got {shown}")
    for name, t in (("x", x), ("centres", centres), ("weights", weights)):
        if not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}; they must match")
    check_choice("precision", precision, PRECISIONS)
    return check_spec(spec)


def fused_witness_grad(
    x: Tensor, centres: Tensor, weights: Tensor, spec: FusedSpec, precision: str = "ieee", *,
    config: LaunchConfig | None = None,
) -> Tensor:
    """G_i = 2 Σ_j a_j φ'(‖x_i − y_j‖²)(x_i − y_j): x (N, d), centres (M, d), weights (M,) → (N, d).

    ``spec`` is the resolved kernel (``Kernel.fused_spec``); ``precision`` "ieee" or "tf32" (the
    matrix products of d > 4). CUDA tensors run the compiled kernels, CPU tensors the same
    kernels in Triton's interpreter (slow: for tests). float16/bfloat16 are computed in float32,
    float64 by :func:`witness_grad_reference`; the result has x's dtype and is not differentiable
    (inputs are detached: use the torch path of ``Kernel.witness_grad`` under autograd).
    Arrays of 2³¹ or more elements (N·d, M·d) are refused: split the queries. ``config`` forces
    tile sizes, a path or the two-phase products (default: ``default_config``). Numerics: module doc.
    """
    kind, params = _check_args(x, centres, weights, spec, precision)
    load_triton_kernels()  # a ValueError without triton, whatever the dtype
    return _launch(x, centres, weights, kind, params, precision, config)


def _launch(
    x: Tensor, centres: Tensor, weights: Tensor, kind: str, params: tuple[float, ...], precision: str,
    config: LaunchConfig | None,
) -> Tensor:
    """Validated inputs → the path of ``select_path(d, precision)`` with ``config`` (default by d)."""
    n, d = x.shape
    m = centres.shape[0]
    dtype = x.dtype
    if dtype == torch.float64 or centres.dtype == torch.float64:
        spec = FusedSpec(kind, params)
        tol = 0.0 if d <= EXACT_MAX_D else cancellation_tol(torch.float64, d)  # the torch path's convention
        return witness_grad_reference(x.double(), centres.double(), weights.double(), spec, tol=tol).to(dtype)
    if n == 0 or m == 0:
        return x.new_zeros(n, d)
    tk = _kernels_for(x.device)
    cfg = config or default_config(d, precision, x.device.type == "cuda")
    path = cfg.path or select_path(d, precision)
    k = fold_constants(kind, params)
    # the snap tolerance of the arithmetic that forms S: none for the exact differences of the direct
    # path (only S = 0 is coincident there), the expansion's rounding otherwise
    tol = 0.0 if path == "direct" else cancellation_tol(torch.float32, d, precision)
    xf = x.detach().to(torch.float32)
    yf = centres.detach().to(torch.float32)
    # shift by the centres' mean (exact for a radial kernel; less cancellation in S and in x Σc − Σcy)
    shift = yf.mean(dim=0, keepdim=True)
    xs = (xf - shift).contiguous()
    ys = (yf - shift).contiguous()
    xsq = (xs * xs).sum(dim=1)
    ysq = (ys * ys).sum(dim=1)
    a = weights.detach().to(device=x.device, dtype=torch.float32).contiguous()
    mix = torch.tensor(k.mix or (0.0,), dtype=torch.float32, device=x.device)
    scalars = (float(k.q[0]), float(k.q[1]), float(k.q[2]), float(tol))
    launch = dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    if path == "direct":
        if d > DIRECT_MAX_D:
            raise ValueError(f"the direct path needs d <= {DIRECT_MAX_D}, got d={d}")
        out = torch.empty(n, d, dtype=torch.float32, device=x.device)
        tk.direct_kernel[(_cdiv(n, cfg.block_n),)](
            xf.T.contiguous(), yf.T.contiguous(), xsq, ysq, a, mix, out, n, m, *scalars, float(k.out_scale),
            D=d, KIND=k.kind, NMIX=k.nmix, SNAP=k.snap, BLOCK_N=cfg.block_n, BLOCK_M=cfg.block_m, **launch,
        )
        return out.to(dtype)
    if path == "gram":
        block_d = cfg.block_d or gram_block_d(d)
        if block_d < d:
            raise ValueError(f"block_d={block_d} is smaller than d={d}")
        fold = cfg.fold and kind == "gaussian"
        xd, xq, yq = xs, xsq, ysq
        if fold:  # exponent = (−2 q0 x)·y + q0 ‖x‖² + q0 ‖y‖²
            q0 = k.q[0]
            xd, xq, yq = (xs * (-2.0 * q0)).contiguous(), xsq * q0, ysq * q0
        out = torch.empty(n, d, dtype=torch.float32, device=x.device)
        tk.gram_kernel[(_cdiv(n, cfg.block_n),)](
            xs, xd, ys, ys.T.contiguous(), xq, yq, a, mix, out, n, m, d, *scalars, float(k.out_scale),
            KIND=k.kind, NMIX=k.nmix, SNAP=k.snap, PRECISION=precision, FOLD=fold, ONES=d < block_d,
            Y_T_FOR_CY=cfg.y_t_for_cy, BLOCK_N=cfg.block_n, BLOCK_M=cfg.block_m, BLOCK_D=block_d, **launch,
        )
        return out.to(dtype)
    return _two_phase(tk, xs, ys, xsq, ysq, a, mix, k, scalars, precision, cfg).to(dtype)


def _two_phase(
    tk: ModuleType, xs: Tensor, ys: Tensor, xsq: Tensor, ysq: Tensor, a: Tensor, mix: Tensor, k: FoldedConstants,
    scalars: tuple[float, ...], precision: str, cfg: LaunchConfig,
) -> Tensor:
    """Per slab of M_c centres: C = a φ'(S) (phase 1), then ACC += C Y (phase 2); (N, d).

    gemm "cublas": X Yᵀ by torch.mm into the slab, the Triton epilogue turns it into C in place
    (one read and one write of the slab), C Y by torch.addmm; TF32 or IEEE per ``precision``.
    gemm "mixed": phase 1 is a Triton GEMM with the epilogue fused, C Y by torch.addmm.
    gemm "triton": both products are Triton GEMMs.
    """
    n, d = xs.shape
    m = ys.shape[0]
    dev = xs.device
    gemm = cfg.gemm or FUSED_SETTINGS.two_phase_gemm
    block_k, block_d = cfg.block_k or 32, cfg.block_d or 64  # Triton products only
    mc = cfg.slab_cols or max(cfg.block_m, (FUSED_SETTINGS.slab_bytes // (4 * n)) // cfg.block_m * cfg.block_m)
    mc = min(mc, _cdiv(m, cfg.block_m) * cfg.block_m)
    slab = torch.empty(n * mc, dtype=torch.float32, device=dev)
    rsp = torch.empty(_cdiv(mc, cfg.block_m), n, dtype=torch.float32, device=dev)
    acc = torch.empty(n, d, dtype=torch.float32, device=dev)
    rs = torch.zeros(n, dtype=torch.float32, device=dev)
    yt = ys.T.contiguous() if gemm == "triton" else None
    coef = dict(KIND=k.kind, NMIX=k.nmix, SNAP=k.snap)
    launch = dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    for j0 in range(0, m, mc):
        mv = min(mc, m - j0)
        c = slab[: n * mv].view(n, mv)
        grid1 = (_cdiv(n, cfg.block_n) * _cdiv(mv, cfg.block_m),)
        if gemm == "cublas":
            with matmul_precision(dev, precision):
                torch.mm(xs, ys[j0 : j0 + mv].T, out=c)
            tk.slab_epilogue_kernel[grid1](
                c, xsq, ysq[j0:], a[j0:], mix, rsp, n, mv, *scalars,
                BLOCK_N=cfg.block_n, BLOCK_M=cfg.block_m, **coef, **launch,
            )
        else:
            tk.slab_kernel[grid1](
                xs, ys[j0:], xsq, ysq[j0:], a[j0:], mix, c, rsp, n, mv, d, *scalars, PRECISION=precision,
                BLOCK_N=cfg.block_n, BLOCK_M=cfg.block_m, BLOCK_K=block_k, **coef, **launch,
            )
        if gemm == "triton":
            tk.slab_accumulate_kernel[(_cdiv(n, cfg.block_n) * _cdiv(d, block_d),)](
                c, yt[:, j0:], acc, n, mv, d, m, ACCUMULATE=j0 > 0, PRECISION=precision,
                BLOCK_N=cfg.block_n, BLOCK_D=block_d, BLOCK_K=block_k, **launch,
            )
        else:
            with matmul_precision(dev, precision):
                if j0 == 0:
                    torch.mm(c, ys[j0 : j0 + mv], out=acc)
                else:
                    acc.addmm_(c, ys[j0 : j0 + mv])
        rs += rsp[: _cdiv(mv, cfg.block_m)].sum(dim=0)
    return k.out_scale * (xs * rs[:, None] - acc)


def witness_grad_reference(
    x: Tensor, centres: Tensor, weights: Tensor, spec: FusedSpec, *, tol: float = 0.0, chunk_size: int = 4096
) -> Tensor:
    """The same G from exact differences, in x's dtype (use float64 as a reference): (N, d).

    s_ij = ‖x_i − y_j‖² directly (no expansion); pairs with s ≤ tol (‖x_i‖² + ‖y_j‖²), norms
    after shifting by the centres' mean, count as s = 0 (the fused kernel's convention; tol = 0:
    only exact coincidences). φ' is ``spec_profile_grad``. Holds chunk_size × M × d entries.
    """
    _check_args(x, centres, weights, spec, "ieee")
    check_int("chunk_size", chunk_size, minimum=1)
    shift = centres.mean(dim=0, keepdim=True) if centres.shape[0] else 0.0
    xs, ys = x - shift, centres.to(x.dtype) - shift
    w = weights.to(x.dtype)
    ysq = (ys * ys).sum(dim=1)
    out = []
    for i in range(0, x.shape[0], chunk_size):
        xb = xs[i : i + chunk_size]
        diff = xb[:, None, :] - ys[None, :, :]
        s = (diff * diff).sum(dim=-1)
        s = torch.where(s <= tol * ((xb * xb).sum(dim=1)[:, None] + ysq[None, :]), torch.zeros_like(s), s)
        c = spec_profile_grad(spec, s) * w
        out.append(2.0 * torch.einsum("nm,nmd->nd", c, diff))
    return torch.cat(out) if out else x.new_zeros(0, x.shape[1])

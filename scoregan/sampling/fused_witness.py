"""The kernel-witness gradient, fused on the GPU with Triton (DESIGN.md §4).

For queries x (N, d), centres y (M, d), signed weights a (M,) and a radial kernel
k(x, y) = φ(s), s = ‖x − y‖², the witness D(x_i) = Σ_j a_j k(x_i, y_j) has the gradient

    G_i = ∇ₓ D(x_i) = 2 Σ_j c_ij (x_i − y_j) = 2 (x_i Σ_j c_ij − Σ_j c_ij y_j),   c_ij = a_j φ'(s_ij),

G: (N, d). It has the shape of attention: per tile, S = ‖x‖² + ‖y‖² − 2 X Yᵀ on the tensor
cores, a radial function of S instead of a softmax, then an accumulation of Σ_j c_ij [y_j, 1]
(the "values" are the centres themselves, plus a row sum). The N × M matrix never exists beyond
a tile, except on the two-phase path below, which holds one (N, M_c) slab of C at a time
(``SLAB_BYTES``, 1 GiB by default).

Three code paths (``select_path``); the same Triton kernels run compiled on CUDA and, for CPU
tensors, in Triton's interpreter:

* d ≤ 4 (``direct``): exact differences t = x_i − y_j, s = ‖t‖², accumulated as Σ_j c_ij t
  (no split, no shift, so no cancellation even for near-coincident pairs) on the CUDA cores,
  one 2-D accumulator per coordinate; no matrix product, so ``precision`` does not apply.
* 4 < d ≤ 64 with "tf32" (``gram``): flash-attention style. A program keeps a BLOCK_N × d block
  of X and the accumulator Σ_j c_ij y_j (BLOCK_N × d, fp32) in registers and streams the centres
  in tiles of BLOCK_M: two ``tl.dot`` (wgmma on Hopper) per tile, X Yᵀ and C Y, plus the
  elementwise φ'. For the gaussian the constants are folded into the operands, so the exp2
  exponent is the tile X Yᵀ plus two broadcasts; when d < BLOCK_D the padding column of Y
  carries ones, so C·[Y, 1] also yields Σ_j c_ij.
* d > 64, or "ieee" with d > 4 (``two_phase``): at d = 128 every gram tiling spills registers,
  and with IEEE products Triton's FMA ``tl.dot`` is slower than cuBLAS SGEMM. Per slab of M_c
  centres: phase 1, S = X Yᵀ by cuBLAS into the slab and one Triton pass turning it into
  C = a φ'(S) in place (plus row sums); phase 2, ACC += C Y by cuBLAS. The products stay near
  the matmul ceiling and the only extra cost is one read and one write of the slab (8 bytes per
  pair); recomputing S per output d-block instead would cost d / BLOCK_D times more product
  work. ``TWO_PHASE_GEMM`` = "mixed" (phase 1 a Triton GEMM with the epilogue fused) and
  "triton" (both products in Triton) are the measured alternatives (docs/benchmarks.md).

Numerics (the contract of ``scoregan.objectives.kernels``, module doc there):

* Inputs are cast to float32 (float16 / bfloat16 upcast); the result has the input dtype.
  float64 inputs take :func:`witness_grad_reference` (a chunked float64 torch path) instead.
* Gram and two-phase paths: both point sets are shifted by the mean of the centres first (the
  kernel is translation invariant; the expansion of S and the split x Σc − Σ c y both lose less
  to cancellation). Their relative error still grows like ‖x‖² / s for pairs much closer than
  the data's spread (inherent to the expansion, as in the torch path).
* ``precision`` "ieee": full fp32 products; "tf32": TF32 tensor cores for both products
  (``tl.dot(input_precision="tf32")`` or cuBLAS with TF32 allowed), about 3 decimal digits per
  product; measured errors on an H100 are in docs/benchmarks.md (≤ 1.1e-3 relative).
* Coincident pairs: S ≤ tol (‖x_i‖² + ‖y_j‖²) counts as S = 0, with tol =
  ``cancellation_tol(float32, d, precision)`` for the expansion paths and tol = 0 on the direct
  path, whose S is exact (only exact coincidences, as on the torch path for d ≤ 4); where φ' is
  singular at 0 (laplace, energy, poly_power with ε² = 0 and p < 2, poly_log with u = 0) such a
  pair contributes 0 (the minimal-norm subgradient). For the gaussian kinds the snap is skipped:
  φ' is smooth at 0, so no pair needs it, and skipping it keeps the result closer to the exact
  gradient.
* fp32 underflow: exp(−s/(2h²)) vanishes below s/(2h²) ≈ 87, so with a bandwidth far below the
  distances a particle far from every centre gets G = 0 (as on the torch path).

Kinds (``FusedSpec.kind``, params) and the φ'(s) computed, constants folded into one output scale
(exponentials as exp2 with log2(e) folded in):

    gaussian (h,)                  −exp(−s/(2h²)) / (2h²)
    gaussian_mix (h_1..h_L, w_1..w_L)   −Σ_l w_l exp(−s/(2h_l²)) / (2h_l²)
    imq (c, beta)                  beta (c² + s)^(beta − 1)          (beta = −1/2: via rsqrt)
    laplace (h,)                   −exp(−√s/h) / (2h√s)
    energy ()                      −1 / (2√s)
    poly_power (p, sign, eps2)     sign (p/2) (s + eps2)^(p/2 − 1)
    poly_log (p, sign, eps2)       sign ½ u^(p/2 − 1) ((p/2) log u + 1),  u = s + eps2
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from scoregan._checks import check_choice, check_int, check_matrix
from scoregan.objectives.kernels import (
    EXACT_MAX_D,
    PRECISIONS,
    FusedSpec,
    _matmul_precision,
    cancellation_tol,
    spec_profile_grad,
)

__all__ = ["KINDS", "LaunchConfig", "coincidence_tol", "default_config", "fused_witness_grad", "select_path",
           "witness_grad_reference"]

# kind name -> (code in the kernels, number of params or None for "even, at least 2")
_KIND_CODES: dict[str, int] = {
    "gaussian": 0,
    "gaussian_mix": 1,
    "imq": 2,
    "laplace": 4,
    "energy": 5,
    "poly_power": 6,
    "poly_log": 7,
}
_IMQ_HALF = 3  # imq with beta = −1/2: (c² + s)^(−3/2) = rsqrt(c² + s)³
_N_PARAMS: dict[str, int | None] = {
    "gaussian": 1,
    "gaussian_mix": None,
    "imq": 2,
    "laplace": 1,
    "energy": 0,
    "poly_power": 3,
    "poly_log": 3,
}
KINDS: tuple[str, ...] = tuple(_KIND_CODES)

_LOG2E = 1.0 / math.log(2.0)
_LN2 = math.log(2.0)

# Path thresholds on d (module doc) and the default size of the large-d C slab.
DIRECT_MAX_D = EXACT_MAX_D  # the torch path's exact-difference range: the two agree pair by pair
GRAM_MAX_D = 64
SLAB_BYTES = 1 << 30
# Products of the two-phase path: "cublas" (torch.mm + a Triton epilogue pass over the slab),
# "mixed" (Triton GEMM with the epilogue fused, then torch.addmm) or "triton" (both in Triton).
TWO_PHASE_GEMM = "cublas"


# --------------------------------------------------------------------------------------------
# Triton kernels.
# --------------------------------------------------------------------------------------------


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _rowsum(t):
    """Σ over axis 1 (``tl.sum`` itself is a jit function of triton's library, compiled or
    interpreted once for the whole process; a local combine keeps the interpreter twin working)."""
    return tl.reduce(t, 1, _add)


@triton.jit
def _coef(s, sumsq, a, P, q0, q1, q2, tol, KIND: tl.constexpr, NMIX: tl.constexpr, SNAP: tl.constexpr):
    """a_j φ'(s_ij) / (output scale) on a tile; ``sumsq`` = ‖x_i‖² + ‖y_j‖² (for the snap)."""
    if SNAP:
        s = tl.where(s <= tol * sumsq, 0.0, s)
    if KIND == 0:  # gaussian: exp2(q0 s), q0 = −log2(e)/(2h²)
        f = tl.exp2(s * q0)
    elif KIND == 1:  # gaussian_mix: Σ_l coef_l exp2(rate_l s), (rate_l, coef_l) in P
        f = tl.full(s.shape, 0.0, tl.float32)
        for l in tl.static_range(NMIX):
            f += tl.load(P + 2 * l + 1) * tl.exp2(s * tl.load(P + 2 * l))
    elif KIND == 2:  # imq: (s + c²)^(beta − 1), q0 = c², q1 = beta − 1
        f = tl.exp2(q1 * tl.log2(s + q0))
    elif KIND == 3:  # imq, beta = −1/2
        r = tl.rsqrt(s + q0)
        f = r * r * r
    elif KIND == 4:  # laplace: exp(−√s/h)/√s, q0 = −log2(e)/h
        pos = s > 0.0
        r = tl.rsqrt(tl.where(pos, s, 1.0))
        f = tl.where(pos, r * tl.exp2(q0 * (s * r)), 0.0)
    elif KIND == 5:  # energy: 1/√s
        pos = s > 0.0
        f = tl.where(pos, tl.rsqrt(tl.where(pos, s, 1.0)), 0.0)
    elif KIND == 6:  # poly_power: u^q1, u = s + eps2 (q0 = eps2, q1 = p/2 − 1); u = 0 → 1 if q1 = 0 else 0
        u = s + q0
        pos = u > 0.0
        pw = tl.exp2(q1 * tl.log2(tl.where(pos, u, 1.0)))
        f = tl.where(pos, pw, tl.where(q1 == 0.0, 1.0, 0.0))
    else:  # poly_log: u^q1 (q2 log2 u + 1), q2 = (p/2) ln 2; u = 0 → 0
        u = s + q0
        pos = u > 0.0
        lg = tl.log2(tl.where(pos, u, 1.0))
        f = tl.where(pos, tl.exp2(q1 * lg) * (q2 * lg + 1.0), 0.0)
    c = a * f
    if SNAP:  # kinds that can overflow: padded centres (a = 0) must give exactly 0
        c = tl.where(a != 0.0, c, 0.0)
    return c


@triton.jit
def _direct_kernel(
    XT, YT, XSQ, YSQ, A, P, OUT, N, M, q0, q1, q2, tol, out_scale,
    D: tl.constexpr, KIND: tl.constexpr, NMIX: tl.constexpr, SNAP: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """d ≤ 4: G_i = 2 Σ_j c_ij (x_i − y_j) from exact differences, no split into x Σc − Σ c y.

    XT (D, N), YT (D, M) coordinate-major and NOT shifted (differences need no shift); XSQ (N,),
    YSQ (M,) are the squared norms after the shift, read only for the coincidence snap; OUT (N, D).
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    x0 = tl.load(XT + rows, mask=rmask, other=0.0)
    x1 = tl.full((BLOCK_N,), 0.0, tl.float32)
    x2 = tl.full((BLOCK_N,), 0.0, tl.float32)
    x3 = tl.full((BLOCK_N,), 0.0, tl.float32)
    if D > 1:
        x1 = tl.load(XT + N + rows, mask=rmask, other=0.0)
    if D > 2:
        x2 = tl.load(XT + 2 * N + rows, mask=rmask, other=0.0)
    if D > 3:
        x3 = tl.load(XT + 3 * N + rows, mask=rmask, other=0.0)
    xsq = tl.full((BLOCK_N,), 0.0, tl.float32)
    if SNAP:
        xsq = tl.load(XSQ + rows, mask=rmask, other=0.0)
    a0 = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    a1 = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    a2 = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    a3 = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    for m0 in range(0, M, BLOCK_M):
        cols = m0 + tl.arange(0, BLOCK_M)
        cmask = cols < M
        w = tl.load(A + cols, mask=cmask, other=0.0)
        t0 = x0[:, None] - tl.load(YT + cols, mask=cmask, other=0.0)[None, :]
        s = t0 * t0
        if D > 1:
            t1 = x1[:, None] - tl.load(YT + M + cols, mask=cmask, other=0.0)[None, :]
            s += t1 * t1
        if D > 2:
            t2 = x2[:, None] - tl.load(YT + 2 * M + cols, mask=cmask, other=0.0)[None, :]
            s += t2 * t2
        if D > 3:
            t3 = x3[:, None] - tl.load(YT + 3 * M + cols, mask=cmask, other=0.0)[None, :]
            s += t3 * t3
        sumsq = s
        if SNAP:
            sumsq = xsq[:, None] + tl.load(YSQ + cols, mask=cmask, other=0.0)[None, :]
        c = _coef(s, sumsq, w[None, :], P, q0, q1, q2, tol, KIND, NMIX, SNAP)
        a0 += c * t0
        if D > 1:
            a1 += c * t1
        if D > 2:
            a2 += c * t2
        if D > 3:
            a3 += c * t3
    tl.store(OUT + rows * D, out_scale * _rowsum(a0), mask=rmask)
    if D > 1:
        tl.store(OUT + rows * D + 1, out_scale * _rowsum(a1), mask=rmask)
    if D > 2:
        tl.store(OUT + rows * D + 2, out_scale * _rowsum(a2), mask=rmask)
    if D > 3:
        tl.store(OUT + rows * D + 3, out_scale * _rowsum(a3), mask=rmask)


@triton.jit
def _gram_kernel(
    X, XD, Y, YT, XSQ, YSQ, A, P, OUT, N, M, D, q0, q1, q2, tol, out_scale,
    KIND: tl.constexpr, NMIX: tl.constexpr, SNAP: tl.constexpr, PRECISION: tl.constexpr,
    FOLD: tl.constexpr, ONES: tl.constexpr, Y_T_FOR_CY: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """d ≤ 64, flash-attention style. X (N, D), Y (M, D) row-major, YT (D, M); OUT (N, D).

    XD is the first product's operand: X itself, or with FOLD (gaussian) −2 q0 X while XSQ, YSQ
    hold q0 ‖x‖², q0 ‖y‖², so that the tile X Yᵀ plus two broadcasts IS the exp2 exponent.
    ONES (D < BLOCK_D): column D of the centre tile is set to 1, so C·[Y, 1] also yields Σ_j c_ij
    (no per-tile row reduction, and the same TF32-rounded C enters both sums).
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    dd = tl.arange(0, BLOCK_D)
    dmask = dd < D
    xd = tl.load(XD + rows[:, None] * D + dd[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
    xsq = tl.load(XSQ + rows, mask=rmask, other=0.0)
    acc = tl.full((BLOCK_N, BLOCK_D), 0.0, tl.float32)
    rs = tl.full((BLOCK_N,), 0.0, tl.float32)
    for m0 in range(0, M, BLOCK_M):
        cols = m0 + tl.arange(0, BLOCK_M)
        cmask = cols < M
        y = tl.load(Y + cols[:, None] * D + dd[None, :], mask=cmask[:, None] & dmask[None, :], other=0.0)
        ysq = tl.load(YSQ + cols, mask=cmask, other=0.0)
        w = tl.load(A + cols, mask=cmask, other=0.0)
        xy = tl.dot(xd, tl.trans(y), input_precision=PRECISION)
        if FOLD:
            c = w[None, :] * tl.exp2(xy + xsq[:, None] + ysq[None, :])
        else:
            sumsq = xsq[:, None] + ysq[None, :]
            s = tl.maximum(sumsq - 2.0 * xy, 0.0)
            c = _coef(s, sumsq, w[None, :], P, q0, q1, q2, tol, KIND, NMIX, SNAP)
        if not ONES:
            rs += _rowsum(c)
        if Y_T_FOR_CY:  # B operand of C·Y loaded K-major from YT (D, M)
            yt = tl.load(YT + dd[:, None] * M + cols[None, :], mask=dmask[:, None] & cmask[None, :], other=0.0)
            if ONES:
                yt = tl.where((dd == D)[:, None], 1.0, yt)
            acc = tl.dot(c, tl.trans(yt), acc, input_precision=PRECISION)
        else:
            if ONES:
                y = tl.where((dd == D)[None, :], 1.0, y)
            acc = tl.dot(c, y, acc, input_precision=PRECISION)
    if ONES:
        rs = _rowsum(tl.where((dd == D)[None, :], acc, 0.0))
    # reload x for the epilogue (keeps the loop's register footprint to the dot operand)
    x = tl.load(X + rows[:, None] * D + dd[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
    out = out_scale * (x * rs[:, None] - acc)
    tl.store(OUT + rows[:, None] * D + dd[None, :], out, mask=rmask[:, None] & dmask[None, :])


@triton.jit
def _slab_epilogue_kernel(
    S, XSQ, YSQ, A, P, RSP, N, MC, q0, q1, q2, tol,
    KIND: tl.constexpr, NMIX: tl.constexpr, SNAP: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """Phase 1 after a cuBLAS X Yᵀ: S (N, MC) ← a φ'(‖x‖² + ‖y‖² − 2 S) in place; RSP row sums."""
    pid = tl.program_id(0)
    n_m = (MC + BLOCK_M - 1) // BLOCK_M
    pid_n = pid // n_m
    pid_m = pid % n_m
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < N
    cmask = cols < MC
    mask = rmask[:, None] & cmask[None, :]
    ptrs = S + rows[:, None] * MC + cols[None, :]
    xy = tl.load(ptrs, mask=mask, other=0.0)
    xsq = tl.load(XSQ + rows, mask=rmask, other=0.0)
    ysq = tl.load(YSQ + cols, mask=cmask, other=0.0)
    w = tl.load(A + cols, mask=cmask, other=0.0)
    sumsq = xsq[:, None] + ysq[None, :]
    s = tl.maximum(sumsq - 2.0 * xy, 0.0)
    c = _coef(s, sumsq, w[None, :], P, q0, q1, q2, tol, KIND, NMIX, SNAP)
    tl.store(ptrs, c, mask=mask)
    tl.store(RSP + pid_m * N + rows, _rowsum(c), mask=rmask)


@triton.jit
def _slab_kernel(
    X, Y, XSQ, YSQ, A, P, C, RSP, N, MC, D, q0, q1, q2, tol,
    KIND: tl.constexpr, NMIX: tl.constexpr, SNAP: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Phase 1 for one slab of MC centres (pointers already offset to the slab).

    C (N, MC) ← a φ'(S); RSP (cdiv(MC, BLOCK_M), N) ← per-tile row sums of C.
    """
    pid = tl.program_id(0)
    n_m = (MC + BLOCK_M - 1) // BLOCK_M
    pid_n = pid // n_m
    pid_m = pid % n_m
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < N
    cmask = cols < MC
    kk = tl.arange(0, BLOCK_K)
    xy = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    for k0 in range(0, D, BLOCK_K):
        kmask = (k0 + kk) < D
        x = tl.load(X + rows[:, None] * D + (k0 + kk)[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        y = tl.load(Y + cols[:, None] * D + (k0 + kk)[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0)
        xy = tl.dot(x, tl.trans(y), xy, input_precision=PRECISION)
    xsq = tl.load(XSQ + rows, mask=rmask, other=0.0)
    ysq = tl.load(YSQ + cols, mask=cmask, other=0.0)
    w = tl.load(A + cols, mask=cmask, other=0.0)
    sumsq = xsq[:, None] + ysq[None, :]
    s = tl.maximum(sumsq - 2.0 * xy, 0.0)
    c = _coef(s, sumsq, w[None, :], P, q0, q1, q2, tol, KIND, NMIX, SNAP)
    tl.store(C + rows[:, None] * MC + cols[None, :], c, mask=rmask[:, None] & cmask[None, :])
    tl.store(RSP + pid_m * N + rows, _rowsum(c), mask=rmask)


@triton.jit
def _slab_accumulate_kernel(
    C, YT, ACC, N, MC, D, stride_yt,
    ACCUMULATE: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Phase 2: ACC (N, D) (+)= C (N, MC) @ Y_slab (MC, D); YT (D, ·) holds the slab's columns."""
    pid = tl.program_id(0)
    n_d = (D + BLOCK_D - 1) // BLOCK_D
    pid_n = pid // n_d
    pid_d = pid % n_d
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    dd = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    rmask = rows < N
    dmask = dd < D
    kk = tl.arange(0, BLOCK_K)
    acc = tl.full((BLOCK_N, BLOCK_D), 0.0, tl.float32)
    for k0 in range(0, MC, BLOCK_K):
        kmask = (k0 + kk) < MC
        c = tl.load(C + rows[:, None] * MC + (k0 + kk)[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0)
        yt = tl.load(YT + dd[:, None] * stride_yt + (k0 + kk)[None, :], mask=dmask[:, None] & kmask[None, :], other=0.0)
        acc = tl.dot(c, tl.trans(yt), acc, input_precision=PRECISION)
    ptrs = ACC + rows[:, None] * D + dd[None, :]
    omask = rmask[:, None] & dmask[None, :]
    if ACCUMULATE:
        acc += tl.load(ptrs, mask=omask, other=0.0)
    tl.store(ptrs, acc, mask=omask)


# --------------------------------------------------------------------------------------------
# Host side: validation, constants, launch configuration.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Consts:
    """The numbers a kernel needs for one spec: codes, folded constants, output scale."""

    kind: int
    nmix: int
    snap: bool
    q: tuple[float, float, float]
    out_scale: float
    mix: tuple[float, ...]  # (rate_1, coef_1, rate_2, coef_2, ...) for gaussian_mix


def _check_spec(spec: Any) -> tuple[str, tuple[float, ...]]:
    kind, params = getattr(spec, "kind", None), getattr(spec, "params", None)
    if kind not in _KIND_CODES or not isinstance(params, tuple):
        raise ValueError(
            f"spec must be a FusedSpec(kind, params) with kind one of {', '.join(map(repr, KINDS))}, got {spec!r}"
        )
    want = _N_PARAMS[kind]
    if (want is None and (len(params) < 2 or len(params) % 2)) or (want is not None and len(params) != want):
        shape = "an even number ≥ 2 of" if want is None else f"{want}"
        raise ValueError(f"spec {kind!r} needs {shape} params, got {len(params)}: {params!r}")
    try:
        vals = tuple(float(v) for v in params)
    except (TypeError, ValueError):
        raise ValueError(f"spec.params must be real numbers, got {params!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"spec.params must be finite, got {params!r}")
    if kind in ("gaussian", "gaussian_mix", "laplace"):
        widths = vals if kind != "gaussian_mix" else vals[: len(vals) // 2]
        if any(h <= 0 for h in widths):
            raise ValueError(f"spec {kind!r} needs positive bandwidths, got {params!r}")
    if kind == "imq" and vals[0] == 0:
        raise ValueError(f"spec 'imq' needs c != 0 (φ' is singular at s = 0 otherwise), got {params!r}")
    if kind in ("poly_power", "poly_log") and vals[2] < 0:
        raise ValueError(f"spec {kind!r} needs eps2 >= 0, got {params!r}")
    return kind, vals


def _consts(kind: str, p: tuple[float, ...]) -> _Consts:
    """Fold the spec into the kernels' constants: φ'(s) = out_scale/2 · f(s) (f as in ``_coef``)."""
    code, nmix, mix, q, scale = _KIND_CODES[kind], 0, (), (0.0, 0.0, 0.0), 1.0
    if kind == "gaussian":
        rate = 1.0 / (2.0 * p[0] ** 2)
        q, scale = (-rate * _LOG2E, 0.0, 0.0), -rate
    elif kind == "gaussian_mix":
        half = len(p) // 2
        nmix = half
        mix = tuple(
            v for h, w in zip(p[:half], p[half:]) for v in (-_LOG2E / (2.0 * h * h), -w / (2.0 * h * h))
        )
    elif kind == "imq":
        c, beta = p
        code = _IMQ_HALF if beta == -0.5 else code
        q, scale = (c * c, beta - 1.0, 0.0), beta
    elif kind == "laplace":
        q, scale = (-_LOG2E / p[0], 0.0, 0.0), -1.0 / (2.0 * p[0])
    elif kind == "energy":
        scale = -0.5
    elif kind == "poly_power":
        pw, sign, eps2 = p
        q, scale = (eps2, pw / 2.0 - 1.0, 0.0), sign * pw / 2.0
    else:  # poly_log
        pw, sign, eps2 = p
        q, scale = (eps2, pw / 2.0 - 1.0, (pw / 2.0) * _LN2), sign * 0.5
    snap = kind not in ("gaussian", "gaussian_mix")
    return _Consts(code, nmix, snap, q, 2.0 * scale, mix)


def select_path(d: int, precision: str = "tf32") -> str:
    """The code path for dimension d: "direct" (d ≤ 4), "gram" (TF32 and d ≤ 64), else "two_phase".

    With IEEE products the two-phase path (cuBLAS SGEMM + a fused Triton epilogue) beats Triton's
    FMA-based ``tl.dot`` already at d = 16 on an H100, so "ieee" takes it for every d > 4.
    """
    if d <= DIRECT_MAX_D:
        return "direct"
    return "gram" if precision == "tf32" and d <= GRAM_MAX_D else "two_phase"


def coincidence_tol(kind: str, d: int, precision: str = "ieee") -> float:
    """The tol of the coincidence snap S ≤ tol (‖x‖² + ‖y‖²) that the fused kernel applies for this
    kind, dimension and precision (module doc): 0 for the gaussian kinds (no snap) and on the direct
    path (exact S), else ``cancellation_tol(float32, d, precision)``. Pass it to
    :func:`witness_grad_reference` to compare pair by pair."""
    if kind in ("gaussian", "gaussian_mix") or select_path(d, precision) == "direct":
        return 0.0
    return cancellation_tol(torch.float32, d, precision)


@dataclass(frozen=True)
class LaunchConfig:
    """Tile sizes and launch options of one path (zero or empty fields: the defaults)."""

    block_n: int
    block_m: int
    block_d: int = 0  # gram: padded d; two_phase: phase-2 d tile
    block_k: int = 0  # two_phase: K tile of both phases
    num_warps: int = 4
    num_stages: int = 2
    slab_cols: int = 0  # two_phase: centres per slab (0: from SLAB_BYTES)
    y_t_for_cy: bool = True  # gram: load the C·Y operand K-major from Yᵀ
    path: str = ""  # force "direct" (d ≤ 4), "gram" or "two_phase"; "" = select_path(d, precision)
    gemm: str = ""  # two_phase: "cublas", "mixed" or "triton" ("": TWO_PHASE_GEMM)
    fold: bool = True  # gram, gaussian: constants folded into the operands (exp2 of a dot + 2 adds)


def _pow2(n: int, lo: int) -> int:
    return max(lo, 1 << max(0, (n - 1).bit_length()))


def _gram_block_d(d: int) -> int:
    """Padded d of the gram tiles (the ones column is used when d < this, i.e. for free)."""
    return _pow2(d, 16)


def default_config(d: int, precision: str, cuda: bool) -> LaunchConfig:
    """Tile sizes by path, d and precision (CUDA: chosen on an H100; CPU: small interpreter tiles)."""
    path = select_path(d, precision)
    if not cuda:  # interpreter: small tiles so that tests cross tile borders
        if path == "direct":
            return LaunchConfig(block_n=16, block_m=32)
        if path == "gram":
            return LaunchConfig(block_n=32, block_m=32, block_d=_gram_block_d(d))
        return LaunchConfig(block_n=32, block_m=32, block_d=32, block_k=32)
    if path == "direct":  # 16 pairs per thread and tile: 80 registers at d = 2, no spills
        if d <= 2:
            return LaunchConfig(block_n=64, block_m=64, num_warps=8, num_stages=1)
        return LaunchConfig(block_n=32, block_m=64, num_warps=4, num_stages=1)
    if path == "gram":  # wgmma for both products; no spills up to d = 64
        return LaunchConfig(block_n=128, block_m=64, block_d=_gram_block_d(d), num_warps=8, num_stages=3)
    if TWO_PHASE_GEMM == "cublas":  # the Triton part is the memory-bound epilogue over the slab
        return LaunchConfig(block_n=32, block_m=64, num_warps=4, num_stages=1, gemm="cublas")
    return LaunchConfig(block_n=128, block_m=128, block_d=128, block_k=32, num_warps=8, num_stages=3,
                        gemm=TWO_PHASE_GEMM)


# --------------------------------------------------------------------------------------------
# The interpreter twin: CPU tensors run the same kernels through Triton's interpreter.
# --------------------------------------------------------------------------------------------

_TWIN: Any = None
_TUNABLES = ("DIRECT_MAX_D", "GRAM_MAX_D", "SLAB_BYTES", "TWO_PHASE_GEMM")
_TWIN_LOCK = threading.Lock()
_TWIN_NAME = "scoregan.sampling._fused_witness_interpreted"


def _is_interpreted() -> bool:
    return not isinstance(_gram_kernel, triton.runtime.jit.JITFunction)


def _interpreter_twin() -> Any:
    """This module executed a second time with TRITON_INTERPRET=1: its kernels run on the CPU.

    Triton decides compiled vs interpreted when ``triton.jit`` decorates a function, so a
    separate module object is the way to have both in one process without touching the
    environment of anything else (the variable is restored right after).
    """
    global _TWIN
    if _is_interpreted():
        return sys.modules[__name__]
    with _TWIN_LOCK:
        if _TWIN is None:
            spec = importlib.util.spec_from_file_location(_TWIN_NAME, __file__)
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
    return _check_spec(spec)


def fused_witness_grad(x: Tensor, centres: Tensor, weights: Tensor, spec: FusedSpec, precision: str = "ieee") -> Tensor:
    """G_i = 2 Σ_j a_j φ'(‖x_i − y_j‖²)(x_i − y_j): x (N, d), centres (M, d), weights (M,) → (N, d).

    ``spec`` is the resolved kernel (``Kernel.fused_spec``); ``precision`` "ieee" or "tf32" (the
    matrix products of d > 4). CUDA tensors run the compiled kernels, CPU tensors the same
    kernels in Triton's interpreter (slow: for tests). float16/bfloat16 are computed in float32,
    float64 by :func:`witness_grad_reference`; the result has x's dtype and is not differentiable
    (inputs are detached: use the torch path of ``Kernel.witness_grad`` under autograd).
    Arrays of 2³¹ or more elements (N·d, M·d) are refused: split the queries. Numerics: module doc.
    """
    kind, params = _check_args(x, centres, weights, spec, precision)
    return _launch(x, centres, weights, kind, params, precision, None)


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
    if x.device.type != "cuda" and not _is_interpreted():
        twin = _interpreter_twin()
        for name in _TUNABLES:  # module-level settings made on this module hold for the twin too
            setattr(twin, name, globals()[name])
        return twin._launch(x, centres, weights, kind, params, precision, config)
    cfg = config or default_config(d, precision, x.device.type == "cuda")
    path = cfg.path or select_path(d, precision)
    k = _consts(kind, params)
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
        _direct_kernel[(triton.cdiv(n, cfg.block_n),)](
            xf.T.contiguous(), yf.T.contiguous(), xsq, ysq, a, mix, out, n, m, *scalars, float(k.out_scale),
            D=d, KIND=k.kind, NMIX=k.nmix, SNAP=k.snap, BLOCK_N=cfg.block_n, BLOCK_M=cfg.block_m, **launch,
        )
        return out.to(dtype)
    if path == "gram":
        block_d = cfg.block_d or _gram_block_d(d)
        if block_d < d:
            raise ValueError(f"block_d={block_d} is smaller than d={d}")
        fold = cfg.fold and kind == "gaussian"
        xd, xq, yq = xs, xsq, ysq
        if fold:  # exponent = (−2 q0 x)·y + q0 ‖x‖² + q0 ‖y‖²
            q0 = k.q[0]
            xd, xq, yq = (xs * (-2.0 * q0)).contiguous(), xsq * q0, ysq * q0
        out = torch.empty(n, d, dtype=torch.float32, device=x.device)
        _gram_kernel[(triton.cdiv(n, cfg.block_n),)](
            xs, xd, ys, ys.T.contiguous(), xq, yq, a, mix, out, n, m, d, *scalars, float(k.out_scale),
            KIND=k.kind, NMIX=k.nmix, SNAP=k.snap, PRECISION=precision, FOLD=fold, ONES=d < block_d,
            Y_T_FOR_CY=cfg.y_t_for_cy, BLOCK_N=cfg.block_n, BLOCK_M=cfg.block_m, BLOCK_D=block_d, **launch,
        )
        return out.to(dtype)
    return _two_phase(xs, ys, xsq, ysq, a, mix, k, scalars, precision, cfg).to(dtype)


def _two_phase(
    xs: Tensor, ys: Tensor, xsq: Tensor, ysq: Tensor, a: Tensor, mix: Tensor, k: _Consts,
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
    gemm = cfg.gemm or TWO_PHASE_GEMM
    block_k, block_d = cfg.block_k or 32, cfg.block_d or 64  # Triton products only
    mc = cfg.slab_cols or max(cfg.block_m, (SLAB_BYTES // (4 * n)) // cfg.block_m * cfg.block_m)
    mc = min(mc, triton.cdiv(m, cfg.block_m) * cfg.block_m)
    slab = torch.empty(n * mc, dtype=torch.float32, device=dev)
    rsp = torch.empty(triton.cdiv(mc, cfg.block_m), n, dtype=torch.float32, device=dev)
    acc = torch.empty(n, d, dtype=torch.float32, device=dev)
    rs = torch.zeros(n, dtype=torch.float32, device=dev)
    yt = ys.T.contiguous() if gemm == "triton" else None
    coef = dict(KIND=k.kind, NMIX=k.nmix, SNAP=k.snap)
    launch = dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    for j0 in range(0, m, mc):
        mv = min(mc, m - j0)
        c = slab[: n * mv].view(n, mv)
        grid1 = (triton.cdiv(n, cfg.block_n) * triton.cdiv(mv, cfg.block_m),)
        if gemm == "cublas":
            with _matmul_precision(dev, precision):
                torch.mm(xs, ys[j0 : j0 + mv].T, out=c)
            _slab_epilogue_kernel[grid1](
                c, xsq, ysq[j0:], a[j0:], mix, rsp, n, mv, *scalars,
                BLOCK_N=cfg.block_n, BLOCK_M=cfg.block_m, **coef, **launch,
            )
        else:
            _slab_kernel[grid1](
                xs, ys[j0:], xsq, ysq[j0:], a[j0:], mix, c, rsp, n, mv, d, *scalars, PRECISION=precision,
                BLOCK_N=cfg.block_n, BLOCK_M=cfg.block_m, BLOCK_K=block_k, **coef, **launch,
            )
        if gemm == "triton":
            _slab_accumulate_kernel[(triton.cdiv(n, cfg.block_n) * triton.cdiv(d, block_d),)](
                c, yt[:, j0:], acc, n, mv, d, m, ACCUMULATE=j0 > 0, PRECISION=precision,
                BLOCK_N=cfg.block_n, BLOCK_D=block_d, BLOCK_K=block_k, **launch,
            )
        else:
            with _matmul_precision(dev, precision):
                if j0 == 0:
                    torch.mm(c, ys[j0 : j0 + mv], out=acc)
                else:
                    acc.addmm_(c, ys[j0 : j0 + mv])
        rs += rsp[: triton.cdiv(mv, cfg.block_m)].sum(dim=0)
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

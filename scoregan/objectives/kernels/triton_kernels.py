"""The Triton kernels of the fused witness gradient (launched by ``kernels.fused``; docs/theory.md §10).

For queries x (N, d), centres y (M, d), weights a (M,) and a fused spec with φ'(s) (``profiles``):

    G_i = 2 Σ_j c_ij (x_i − y_j) = 2 (x_i Σ_j c_ij − Σ_j c_ij y_j),   c_ij = a_j φ'(s_ij),   G: (N, d).

``_coef`` computes a_j φ'(s) / (output scale) on a tile from the folded constants (P, q0, q1, q2)
of ``fused._consts``; kind codes 0..7: gaussian, gaussian_mix, imq, imq with beta = −1/2 (rsqrt),
laplace, energy, poly_power, poly_log. Pairs with S ≤ tol (‖x‖² + ‖y‖²) snap to S = 0 when SNAP.

* ``direct_kernel`` (d ≤ 4): exact differences t = x_i − y_j, accumulated as Σ_j c_ij t.
* ``gram_kernel`` (d ≤ 64, TF32): flash-attention style, X Yᵀ and C·[Y, 1] by ``tl.dot`` per tile.
* ``slab_epilogue_kernel`` / ``slab_kernel`` / ``slab_accumulate_kernel``: the two-phase path,
  C = a φ'(S) on an (N, M_c) slab after (or with) the product X Yᵀ, then ACC += C Y.

Importing this module imports triton (an optional dependency). Whether the kernels are compiled or
interpreted is fixed by TRITON_INTERPRET when it is executed (``INTERPRETED``).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["INTERPRETED", "direct_kernel", "gram_kernel", "slab_accumulate_kernel", "slab_epilogue_kernel",
           "slab_kernel"]


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
def direct_kernel(
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
def gram_kernel(
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
def slab_epilogue_kernel(
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
def slab_kernel(
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
def slab_accumulate_kernel(
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


#: True when this module object was executed with TRITON_INTERPRET=1 (its kernels run on the CPU).
INTERPRETED = not isinstance(gram_kernel, triton.runtime.jit.JITFunction)

"""Configuration of the fused witness-gradient kernel: spec checks, folded constants, paths, tiles.

A fused spec (``kernels.profiles``) becomes the kernels' constants: φ'(s) = out_scale/2 · f(s),
f computed on a tile from (q0, q1, q2) and, for "gaussian_mix", the pairs (rate_l, coef_l) with
exponentials as exp2 (log2 e folded in). Paths by dimension d and precision (``select_path``):
"direct" (d ≤ 4), "gram" ("tf32" and d ≤ ``FUSED_SETTINGS.gram_max_d``), else "two_phase".
``LaunchConfig`` holds tile sizes (``default_config``: chosen on an H100 for CUDA, small tiles for
the CPU interpreter). docs/theory.md §10; measurements in docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from scoregan.objectives.kernels.profiles import cancellation_tol
from scoregan.objectives.kernels.tiling import EXACT_MAX_D

__all__ = ["DIRECT_MAX_D", "FUSED_SETTINGS", "KINDS", "FoldedConstants", "FusedSettings", "LaunchConfig",
           "check_spec", "coincidence_tol", "default_config", "fold_constants", "gram_block_d", "select_path"]

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

#: Largest d of the direct path: the torch path's exact-difference range (the two agree pair by pair).
DIRECT_MAX_D = EXACT_MAX_D


@dataclass
class FusedSettings:
    """Tunables of the fused kernel (set a field to change it; read at call time).

    gram_max_d: largest d of the gram path; slab_bytes: size of the two-phase C slab;
    two_phase_gemm: products of the two-phase path, "cublas" (torch.mm + a Triton epilogue pass
    over the slab), "mixed" (Triton GEMM with the epilogue fused, then torch.addmm) or "triton".
    """

    gram_max_d: int = 64
    slab_bytes: int = 1 << 30
    two_phase_gemm: str = "cublas"


#: The settings every launch reads.
FUSED_SETTINGS = FusedSettings()


@dataclass(frozen=True)
class FoldedConstants:
    """The numbers a kernel needs for one spec: codes, folded constants, output scale."""

    kind: int
    nmix: int
    snap: bool
    q: tuple[float, float, float]
    out_scale: float
    mix: tuple[float, ...]  # (rate_1, coef_1, rate_2, coef_2, ...) for gaussian_mix


def check_spec(spec: Any) -> tuple[str, tuple[float, ...]]:
    """(kind, params as floats) of a valid spec for the fused kernels, else ValueError naming ``spec``."""
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


def fold_constants(kind: str, p: tuple[float, ...]) -> FoldedConstants:
    """Fold the spec into the kernels' constants: φ'(s) = out_scale/2 · f(s) (f as in ``triton_kernels._coef``)."""
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
    return FoldedConstants(code, nmix, snap, q, 2.0 * scale, mix)


def select_path(d: int, precision: str = "tf32") -> str:
    """The code path for dimension d: "direct" (d ≤ 4), "gram" (TF32 and d ≤ 64), else "two_phase".

    With IEEE products the two-phase path (cuBLAS SGEMM + a fused Triton epilogue) beats Triton's
    FMA-based ``tl.dot`` already at d = 16 on an H100, so "ieee" takes it for every d > 4.
    """
    if d <= DIRECT_MAX_D:
        return "direct"
    return "gram" if precision == "tf32" and d <= FUSED_SETTINGS.gram_max_d else "two_phase"



def coincidence_tol(kind: str, d: int, precision: str = "ieee") -> float:
    """The tol of the coincidence snap S ≤ tol (‖x‖² + ‖y‖²) that the fused kernel applies for this
    kind, dimension and precision (``kernels.fused``): 0 for the gaussian kinds (no snap) and on the direct
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
    slab_cols: int = 0  # two_phase: centres per slab (0: from FUSED_SETTINGS.slab_bytes)
    y_t_for_cy: bool = True  # gram: load the C·Y operand K-major from Yᵀ
    path: str = ""  # force "direct" (d ≤ 4), "gram" or "two_phase"; "" = select_path(d, precision)
    gemm: str = ""  # two_phase: "cublas", "mixed" or "triton" ("": FUSED_SETTINGS.two_phase_gemm)
    fold: bool = True  # gram, gaussian: constants folded into the operands (exp2 of a dot + 2 adds)


def _pow2(n: int, lo: int) -> int:
    return max(lo, 1 << max(0, (n - 1).bit_length()))


def gram_block_d(d: int) -> int:
    """Padded d of the gram tiles (the ones column is used when d < this, i.e. for free)."""
    return _pow2(d, 16)


def default_config(d: int, precision: str, cuda: bool) -> LaunchConfig:
    """Tile sizes by path, d and precision (CUDA: chosen on an H100; CPU: small interpreter tiles)."""
    path = select_path(d, precision)
    if not cuda:  # interpreter: small tiles so that tests cross tile borders
        if path == "direct":
            return LaunchConfig(block_n=16, block_m=32)
        if path == "gram":
            return LaunchConfig(block_n=32, block_m=32, block_d=gram_block_d(d))
        return LaunchConfig(block_n=32, block_m=32, block_d=32, block_k=32)
    if path == "direct":  # 16 pairs per thread and tile: 80 registers at d = 2, no spills
        if d <= 2:
            return LaunchConfig(block_n=64, block_m=64, num_warps=8, num_stages=1)
        return LaunchConfig(block_n=32, block_m=64, num_warps=4, num_stages=1)
    if path == "gram":  # wgmma for both products; no spills up to d = 64
        return LaunchConfig(block_n=128, block_m=64, block_d=gram_block_d(d), num_warps=8, num_stages=3)
    if FUSED_SETTINGS.two_phase_gemm == "cublas":  # the Triton part is the memory-bound epilogue over the slab
        return LaunchConfig(block_n=32, block_m=64, num_warps=4, num_stages=1, gemm="cublas")
    return LaunchConfig(block_n=128, block_m=128, block_d=128, block_k=32, num_warps=8, num_stages=3,
                        gemm=FUSED_SETTINGS.two_phase_gemm)

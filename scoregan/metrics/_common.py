"""Input handling shared by the metrics: validation, float64 conversion, seeds, chunks.

Every metric takes sample matrices (N, d) as torch tensors or numpy arrays, validates them
before any work (a ``ValueError`` naming the argument), and computes in float64 on the device of
the (first) torch input. Randomness (projection directions, subsets) comes from a
``torch.Generator``; ``None`` means a fixed seed, so every metric is deterministic by default.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from scoregan._checks import check_int, check_matrix

__all__ = ["Samples", "SeedLike", "as_real", "as_samples", "as_pair", "make_generator", "randn", "randperm",
           "row_chunks", "pairwise_distances", "psd_sqrt", "CHUNK_ELEMENTS", "DEFAULT_SEED"]

Samples = torch.Tensor | np.ndarray
SeedLike = torch.Generator | int | None

#: Largest number of pairwise entries (rows × columns) held at once by the chunked loops.
CHUNK_ELEMENTS = 2**22
#: Seed used when a metric that needs randomness gets ``generator=None``.
DEFAULT_SEED = 0
#: Up to this dimension distances come from exact differences; above it from the Gram expansion.
_DIRECT_DISTANCE_MAX_DIM = 32


def as_real(name: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is a finite real number (> 0 if asked)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)


def _to_tensor(name: str, x: Any, device: torch.device | None) -> Any:
    """numpy arrays become tensors (on ``device`` when given); other objects pass through."""
    if isinstance(x, np.ndarray):
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise ValueError(f"{name} must hold real numbers, got a numpy array of dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x))
        return t if device is None else t.to(device)
    return x


def as_samples(name: str, x: Any, *, min_rows: int = 1, dim: int | None = None,
               device: torch.device | None = None) -> torch.Tensor:
    """``x`` as a detached float64 (N, d) tensor, after checking it.

    Raises ``ValueError`` naming ``name`` unless ``x`` is a 2-D real tensor or numpy array with
    N >= ``min_rows`` rows, d >= 1 columns (d == ``dim`` when given), finite entries, and (for a
    tensor) on ``device`` when given. numpy arrays are moved to ``device``.
    """
    x = _to_tensor(name, x, device)
    check_matrix(name, x, dim=dim)
    if x.is_complex():
        raise ValueError(f"{name} must be real, got dtype {x.dtype}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples (rows), got shape {tuple(x.shape)}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} is on {x.device} but the other input is on {device}; they must match")
    x = x.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return x


def as_pair(name_a: str, a: Any, name_b: str, b: Any, *, min_rows: int = 1,
            same_size: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sample sets (N, d), (M, d) as float64 tensors on one device (that of the first tensor).

    Raises ``ValueError`` naming the argument for any failed check of :func:`as_samples`, for
    different dimensions d, and (``same_size``) for N != M.
    """
    device = a.device if isinstance(a, torch.Tensor) else b.device if isinstance(b, torch.Tensor) else None
    x = as_samples(name_a, a, min_rows=min_rows, device=device)
    y = as_samples(name_b, b, min_rows=min_rows, dim=x.shape[1], device=device)
    if same_size and x.shape[0] != y.shape[0]:
        raise ValueError(f"{name_a} and {name_b} must have the same number of samples, got "
                         f"{x.shape[0]} ({name_a}) and {y.shape[0]} ({name_b})")
    return x, y


def make_generator(generator: SeedLike) -> torch.Generator:
    """A ``torch.Generator``: the one given, a fresh one seeded with an int, or seed ``DEFAULT_SEED``."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        return torch.Generator().manual_seed(DEFAULT_SEED)
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise ValueError(f"generator must be a torch.Generator, an int seed or None, got {generator!r}")
    check_int("generator", generator, minimum=0)
    return torch.Generator().manual_seed(generator)


def randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal float64 draws made on the generator's device, returned on ``device``."""
    return torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device).to(device)


def randperm(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A random permutation of range(n) made on the generator's device, returned on ``device``."""
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def row_chunks(n: int, m: int, budget: int | None = None) -> Iterator[slice]:
    """Slices of range(n) with at most ``budget`` (default ``CHUNK_ELEMENTS``) entries per (rows × m) block."""
    step = max(1, (CHUNK_ELEMENTS if budget is None else budget) // max(m, 1))
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def pairwise_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (N, M) between rows of x (N, d) and y (M, d).

    Exact differences for d <= 32; the Gram expansion (BLAS) above, whose rounding in float64
    is ~1e-16 of the squared norms, irrelevant for the comparisons made here.
    """
    mode = ("donot_use_mm_for_euclid_dist" if x.shape[1] <= _DIRECT_DISTANCE_MAX_DIM
            else "use_mm_for_euclid_dist")
    return torch.cdist(x, y, compute_mode=mode)


def psd_sqrt(m: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix (d, d) by eigh (negative eigenvalues → 0)."""
    w, v = torch.linalg.eigh(0.5 * (m + m.mT))
    return (v * w.clamp_min(0).sqrt()) @ v.mT

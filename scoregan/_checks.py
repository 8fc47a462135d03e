"""Argument checks shared by the whole package.

Every public function validates its input *before* doing work and raises a ``ValueError`` whose
message names the argument, the value it got and what is allowed. These helpers keep those
messages uniform.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import torch


def closest(value: str, allowed: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix for the closest allowed name, or ''."""
    match = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise naming the argument."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}"
            + closest(value, allowed)
        )
    return value


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> Any:
    """Raise unless ``value`` (a number or a tensor of numbers) is > 0 (or >= 0)."""
    vals = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
    bad = (vals < 0) if allow_zero else (vals <= 0)
    if bool(torch.any(bad | torch.isnan(vals))):
        what = "non-negative" if allow_zero else "positive"
        shown = value if not isinstance(value, torch.Tensor) or value.numel() <= 8 else f"tensor{tuple(value.shape)}"
        raise ValueError(f"{name} must be {what}, got {shown!r}")
    return value


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Raise unless ``value`` is an int (not a bool) at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def check_matrix(name: str, x: Any, *, dim: int | None = None) -> torch.Tensor:
    """Raise unless ``x`` is a 2-D tensor (N, d), with d == ``dim`` when given."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, d), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]} but {dim} was expected (shape {tuple(x.shape)})")
    return x

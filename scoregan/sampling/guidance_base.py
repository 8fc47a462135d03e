"""The guidance protocol, its shared helpers, and the σ-aware adapter the samplers call (docs/theory.md §10).

A guidance field ψ adds λ∇ψ (N, d) to the score at the particles x (N, d). Protocol (duck-typed):

- ``grad(x) -> (N, d)`` or ``grad(x, sigma) -> (N, d)``: ∇ψ at the particles (σ-aware when it
  takes a second positional argument, the noise level σ);
- ``value(x[, sigma]) -> (N,)`` (optional): ψ itself (the Metropolis correction needs it);
- ``bind(particles[, sigma]) -> field`` (optional): the field for one evaluation when ψ depends on
  the particle ensemble (kernel guidance); static fields return themselves;
- ``dim`` / ``check(x, name)`` (optional): the dimension the field lives in, checked up front.

:class:`SigmaGuidance` turns any of these (or a bare callable x ↦ ∇ψ or (x, σ) ↦ ∇ψ) into one
callable g(x, σ) = ∇ψ(x, σ) (N, d), bound to x at every evaluation (:func:`bind_field`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from scoregan.sampling.steps import _n_positional

__all__ = ["Guidance", "SigmaGuidance", "bind_field", "module_input_dim", "module_output_dim"]


# --------------------------------------------------------------------------------------- helpers
def _float_dtype_device(module: Any) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of a module's first floating parameter (or buffer); (None, None) if none."""
    if isinstance(module, nn.Module):
        for t in (*module.parameters(), *module.buffers()):
            if t.is_floating_point():
                return t.dtype, t.device
    return None, None


def module_input_dim(module: Any) -> int | None:
    """The feature dimension a network expects, read without calling it; ``None`` if unknown.

    Uses an ``in_dim`` / ``in_features`` / ``latent_dim`` (generators) / ``data_dim`` / ``dim`` attribute
    when the module declares one, else the first ``nn.Linear`` it contains when that is its first layer
    with parameters (a conditional net's first Linear may embed σ, hence the attributes first).
    """
    for attr in ("in_dim", "in_features", "latent_dim", "data_dim", "dim"):
        v = getattr(module, attr, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    if isinstance(module, nn.Module):
        for m in module.modules():
            if isinstance(m, nn.Linear):
                return int(m.in_features)
            if any(True for _ in m.parameters(recurse=False)):
                return None  # the first layer with weights is not a Linear (a conv, an embedding): unknown
    return None


def module_output_dim(module: Any) -> int | None:
    """The feature dimension a network returns, read without calling it; ``None`` if unknown."""
    for attr in ("out_dim", "out_features"):
        v = getattr(module, attr, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    if isinstance(module, nn.Module):
        last = None
        for m in module.modules():
            if any(True for _ in m.parameters(recurse=False)):
                last = m
        if isinstance(last, nn.Linear):
            return int(last.out_features)
    return None


def takes_sigma(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a second positional argument (the noise level σ)."""
    return _n_positional(fn) >= 2


class Guidance:
    """Base class of the guidance fields: ψ (N,) and ∇ψ (N, d) at the particles x (N, d)."""

    #: dimension of the space ψ lives in (``None``: unknown, not checked)
    dim: int | None = None
    #: whether :meth:`value` is available (the Metropolis correction needs it)
    has_value: bool = True

    def grad(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def value(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def bind(self, particles: torch.Tensor) -> Guidance:
        """The field to use for one sampler step taken from ``particles``; static fields: ``self``."""
        return self

    def check(self, x: torch.Tensor, name: str = "x0") -> None:
        """Raise ``ValueError`` if the field cannot act on particles shaped like ``x`` (N, d)."""
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"guidance lives in dimension {self.dim} but {name} has dimension {x.shape[1]} "
                             f"(shape {tuple(x.shape)})")


# ------------------------------------------------------------------------------ σ-aware adapter
def bind_field(guidance: Any, particles: torch.Tensor, sigma: Any = None) -> Any:
    """The field for one evaluation: ``guidance.bind(particles[, sigma])`` when it binds, else itself.

    σ is passed only when it is given and ``bind`` takes it (σ-free fields are bound as by
    :func:`scoregan.sampling.langevin`).
    """
    bind = getattr(guidance, "bind", None)
    if not callable(bind):
        return guidance
    return bind(particles, sigma) if sigma is not None and takes_sigma(bind) else bind(particles)


class _CallableField:
    """A bare callable x ↦ ∇ψ (N, d) or (x, σ) ↦ ∇ψ as a field with ``grad``."""

    has_value = False

    def __init__(self, fn: Callable[..., torch.Tensor]):
        self.fn, self.conditional = fn, takes_sigma(fn)

    def grad(self, x: torch.Tensor, sigma: Any = None) -> torch.Tensor:
        return self.fn(x, sigma) if self.conditional else self.fn(x)


class SigmaGuidance:
    """Any guidance as one callable g(x, σ) = ∇ψ(x, σ): x (N, d), σ a 0-d tensor (or None) ↦ (N, d).

    Accepts a field with ``grad(x)`` or ``grad(x, sigma)`` (optionally ``bind``), or a bare callable
    x ↦ (N, d) or (x, σ) ↦ (N, d). At every call the field is bound to the particles x at level σ
    (:func:`bind_field`: the kernel witness of :class:`~scoregan.sampling.KernelGuidance` is rebuilt
    from x, so in a Heun step the corrector's evaluation sees the predicted particles), then ∇ψ is
    taken with σ when the (bound) field's ``grad`` takes it. σ-free fields ignore σ.
    """

    def __init__(self, guidance: Any):
        if isinstance(guidance, SigmaGuidance):
            guidance = guidance.guidance
        if guidance is None or not (callable(getattr(guidance, "grad", None)) or callable(guidance)):
            raise ValueError(f"guidance must provide grad(x[, sigma]) -> (N, d) or be a callable (x[, sigma]) -> "
                             f"(N, d), got {type(guidance).__name__}")
        self.guidance = guidance
        self._field = guidance if callable(getattr(guidance, "grad", None)) else _CallableField(guidance)
        self._takes: dict[type, bool] = {}

    def _grad_takes_sigma(self, field: Any) -> bool:
        key = type(field)
        if key not in self._takes:
            self._takes[key] = takes_sigma(field.grad)
        return self._takes[key]

    def check(self, x: torch.Tensor, name: str = "x") -> None:
        """ValueError naming the field when it cannot act on particles shaped like x (N, d)."""
        check = getattr(self._field, "check", None)
        if callable(check):
            check(x, name)
            return
        dim = getattr(self._field, "dim", None)
        if isinstance(dim, int) and dim != x.shape[1]:
            raise ValueError(f"guidance lives in dimension {dim} but {name} has dimension {x.shape[1]}")

    def __call__(self, x: torch.Tensor, sigma: Any = None) -> torch.Tensor:
        """∇ψ(x, σ) (N, d) with the field bound to x at level σ."""
        field = bind_field(self._field, x, sigma)
        g = field.grad(x, sigma) if sigma is not None and self._grad_takes_sigma(field) else field.grad(x)
        if not isinstance(g, torch.Tensor) or g.shape != x.shape:
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            raise ValueError(f"guidance gradient has shape {shape} for particles of shape {tuple(x.shape)}")
        return g

    def __repr__(self) -> str:
        return f"SigmaGuidance({self.guidance!r})"

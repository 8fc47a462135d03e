"""Kernel-witness guidance, σ-free or at a noise level σ (docs/theory.md §5, §10).

ψ is the closed-form kernel witness between a reference data set y_1..y_M (weights a_j ≥ 0,
Σ a_j = 1) and the CURRENT particles x_1..x_N, rebuilt at every evaluation (:meth:`KernelGuidance.bind`):

    D(x) = Σ_j a_j k(x, y_j) − (1/N) Σ_i k(x, x_i),       D: (N, d) → (N,),  ∇D: (N, d) → (N, d).

At a noise level σ (a diffusion sampler's particles are x_0 + σε) the data side is taken at that
level too, one of (``noise``):

- ``"none"``: the clean reference, whatever σ (the σ-free witness);
- ``"perturb"``: the reference perturbed once and for all, y_j + σ ε_j with ε (M, d) ~ N(0, I)
  drawn once from ``noise_seed`` (on first use): a one-sample estimate of the witness between p_d^σ
  and the particles (a median bandwidth then resolves from the perturbed pool, growing with σ);
- ``"bandwidth"`` (Gaussian kernels): the exact expectation over that perturbation. For
  k_h(x, y) = exp(−‖x − y‖²/(2h²)) in R^d,

      E_ε k_h(x, y + σε) = (h²/(h² + σ²))^{d/2} k_{√(h² + σ²)}(x, y),

  so the attraction uses bandwidth h(σ) = √(h² + σ²) with that amplitude, each scale of a
  multi-scale kernel likewise, while the repulsion keeps h: the particles are already at level σ.
  (h² + 2σ² would be the smoothed kernel between two perturbed points, i.e. the MMD of the clean
  laws; here only the reference is clean.)

With σ = None (the Langevin sampler) or σ = 0 every option is the σ-free witness.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from scoregan._checks import check_choice, check_int, check_matrix
from scoregan._dist import gather
from scoregan.objectives.kernels import (
    GaussianKernel,
    Witness,
    kernel_witness,
    resolve_kernel,
)
from scoregan.sampling.guidance_base import Guidance

__all__ = ["NOISE_MODES", "KernelGuidance"]

#: How :class:`KernelGuidance` takes the data side to a noise level σ (module doc).
NOISE_MODES: tuple[str, ...] = ("none", "perturb", "bandwidth")


def _sigma_value(sigma: Any) -> float | None:
    """σ as a float (None, or 0 for no noise); ValueError for a non-scalar σ."""
    if sigma is None:
        return None
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"sigma must be a scalar for kernel guidance, got shape {tuple(sigma.shape)}")
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise ValueError(f"sigma must be a number or a one-element tensor, got {sigma!r}")
    value = float(sigma)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {value!r}")
    return value


def smoothed_gaussian(kernel: GaussianKernel, sigma: float, dim: int) -> GaussianKernel:
    """E_ε k(·, y + σε) for a resolved Gaussian kernel in R^dim: scales √(h_l² + σ²), weights
    w_l (h_l²/(h_l² + σ²))^{dim/2} (module doc)."""
    hs = kernel.bandwidth if isinstance(kernel.bandwidth, tuple) else (float(kernel.bandwidth),)
    ws = kernel.scale_weights if kernel.scale_weights is not None else (1.0,)
    h2 = [h * h + sigma * sigma for h in hs]
    return GaussianKernel(tuple(math.sqrt(v) for v in h2),
                          tuple(w * (h * h / v) ** (dim / 2) for h, w, v in zip(hs, ws, h2)))


class _BoundWitness(Guidance):
    """A sum of :class:`~scoregan.objectives.kernels.Witness` terms as a field: ψ (N,), ∇ψ (N, d)."""

    def __init__(self, owner: KernelGuidance, *witnesses: Witness):
        self._owner, self._witnesses = owner, witnesses
        self.dim = witnesses[0].dim

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        o = self._owner
        out = [w.like(x).grad(x, backend=o.backend, precision=o.precision) for w in self._witnesses]
        return out[0] if len(out) == 1 else sum(out[1:], out[0])

    def value(self, x: torch.Tensor) -> torch.Tensor:
        out = [w.like(x).value(x) for w in self._witnesses]
        return out[0] if len(out) == 1 else sum(out[1:], out[0])


class KernelGuidance(Guidance):
    """ψ = kernel witness between ``reference`` (M, d) and the current particles (N, d), at level σ.

        ψ(x) = Σ_j a_j k(x, ỹ_j) − (1/N) Σ_i k(x, x_i)          (the second term only if ``repulsion``)
        ∇ψ(x) = kernel.witness_grad(x, [ỹ; x_1..x_N], [a; −1/N])    (N, d)

    with ỹ the reference at level σ as chosen by ``noise`` (module doc; ỹ = y without σ).

    Args:
        kernel: a ``scoregan.objectives.kernel(...)`` object (``witness``, ``witness_grad``).
        reference: (M, d) reference samples (the data).
        reference_weights: (M,) non-negative weights a_j, normalised to sum to one; uniform if None.
        repulsion: keep the particle term (the MMD flow); ``False`` keeps only the attraction
            Σ_j a_j k(x, y_j) (a kernel density ascent that collapses onto the modes).
        backend, precision: passed through to ``kernel.witness_grad`` (e.g. ``backend="triton"``
            for the fused CUDA kernel, ``precision="tf32"`` for tensor cores).
        noise: ``"perturb"`` (default), ``"bandwidth"`` (Gaussian kernels only) or ``"none"``: how
            the reference is taken to the level σ that the diffusion samplers pass; without σ (the
            Langevin sampler, ``grad(x)``) all three are the σ-free witness, so the default changes
            nothing there. ``"perturb"`` is the default because it fits every kernel and targets the
            right law at level σ (p_d^σ, not the clean p_d); in tests/sampling/test_diffusion.py it
            ties with ``"bandwidth"`` and was more robust than ``"none"`` under strong guidance.
        noise_seed: the seed of the fixed perturbation ε (M, d) of ``noise="perturb"``.

    The gradient is taken in the evaluation point only, with the ensemble frozen during a step
    (:meth:`bind`), which is the particle discretisation of the Wasserstein gradient flow of
    MMD²/2 (scaled by the guidance scale). A data-dependent kernel parameter (a median bandwidth)
    is fixed at each :meth:`bind` from the pooled [reference at σ; particles].
    """

    def __init__(self, kernel: Any, reference: torch.Tensor, *, reference_weights: torch.Tensor | None = None,
                 repulsion: bool = True, backend: str = "auto", precision: str = "ieee", noise: str = "perturb",
                 noise_seed: int = 0) -> None:
        for attr in ("witness", "witness_grad"):
            if not callable(getattr(kernel, attr, None)):
                raise ValueError(f"kernel must provide {attr}(x, centres, weights) (a scoregan.objectives.kernel "
                                 f"object), got {type(kernel).__name__}")
        check_matrix("reference", reference)
        if not reference.is_floating_point() or reference.shape[0] < 1:
            raise ValueError(f"reference must be a non-empty floating (M, d) tensor, got dtype {reference.dtype} "
                             f"and shape {tuple(reference.shape)}")
        if reference_weights is None:
            a = torch.full((reference.shape[0],), 1.0 / reference.shape[0], dtype=reference.dtype,
                           device=reference.device)
        else:
            a = torch.as_tensor(reference_weights, dtype=reference.dtype, device=reference.device)
            if a.shape != (reference.shape[0],):
                raise ValueError(f"reference_weights must have shape (M,) = ({reference.shape[0]},), "
                                 f"got shape {tuple(a.shape)}")
            if bool((a < 0).any()) or not bool(torch.isfinite(a).all()) or float(a.sum()) <= 0:
                raise ValueError("reference_weights must be finite, non-negative and not all zero")
            a = a / a.sum()
        if not isinstance(repulsion, bool):
            raise ValueError(f"repulsion must be True or False, got {repulsion!r}")
        check_choice("noise", noise, NOISE_MODES)
        if noise == "bandwidth" and not isinstance(kernel, GaussianKernel):
            raise ValueError(f"noise='bandwidth' needs a Gaussian kernel (its smoothing by N(0, σ²) is a Gaussian), "
                             f"got {type(kernel).__name__}; use noise='perturb'")
        check_int("noise_seed", noise_seed, minimum=0)
        self.kernel = kernel
        self.reference = reference.detach()
        self.reference_weights = a
        self.repulsion = repulsion
        self.backend = backend
        self.precision = precision
        self.noise = noise
        self.noise_seed = noise_seed
        self.dim = int(reference.shape[1])
        self._converted: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self._eps: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _reference_like(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reference, weights) in x's device and dtype, converted once per (device, dtype)."""
        key = (x.device, x.dtype)
        if key not in self._converted:
            self._converted[key] = (self.reference.to(x), self.reference_weights.to(x))
        return self._converted[key]

    def perturbation(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """The fixed ε (M, d) ~ N(0, I) of ``noise="perturb"``: drawn in float64 on the CPU from
        ``noise_seed`` on first use (σ-free use never draws it), then in ``like``'s dtype and device."""
        like = self.reference if like is None else like
        key = (like.device, like.dtype)
        if key not in self._eps:
            eps = torch.randn(tuple(self.reference.shape), generator=torch.Generator().manual_seed(self.noise_seed),
                              dtype=torch.float64)
            self._eps[key] = eps.to(like)
        return self._eps[key]

    def bind(self, particles: torch.Tensor, sigma: float | torch.Tensor | None = None) -> Guidance:
        """The witness with the ensemble frozen at ``particles`` (N, d), the reference at level σ
        (module doc): centres [ỹ; x], weights [a; −1/N]."""
        self.check(particles, "particles")
        s = _sigma_value(sigma)
        y, a = self._reference_like(particles)
        # every rank's particles repel (data parallel sampling): the ensemble is the whole sample
        ens = gather(particles.detach())
        if s and self.noise == "perturb":
            y = y + s * self.perturbation(particles)
        if s and self.noise == "bandwidth":
            k0 = resolve_kernel(self.kernel, ens, y)  # h0 from [reference; particles], as without σ
            parts = [Witness(smoothed_gaussian(k0, s, self.dim), y, a)]
            if self.repulsion:
                parts.append(Witness(k0, ens, torch.full((ens.shape[0],), -1.0 / ens.shape[0], dtype=ens.dtype,
                                                         device=ens.device)))
            return _BoundWitness(self, *parts)
        # one kernel for this step's field, resolved from [reference; particles]
        witness = kernel_witness(self.kernel, y, ens, a, negative_centres=self.repulsion,
                                 names=("reference", "particles"))
        return _BoundWitness(self, witness)

    def check(self, x: torch.Tensor, name: str = "x0") -> None:
        if x.shape[1] != self.dim:
            raise ValueError(f"reference has dimension {self.dim} but {name} has dimension {x.shape[1]} "
                             f"(shapes {tuple(self.reference.shape)} and {tuple(x.shape)})")

    def grad(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """∇ψ(x) (N, d) with x itself as the particle ensemble, the reference at level σ."""
        return self.bind(x, sigma).grad(x)

    def value(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """ψ(x) (N,) with x itself as the particle ensemble, the reference at level σ."""
        return self.bind(x, sigma).value(x)

    def __repr__(self) -> str:
        return (f"KernelGuidance(kernel={self.kernel!r}, reference=({self.reference.shape[0]}, {self.dim}), "
                f"repulsion={self.repulsion}, backend={self.backend!r}, precision={self.precision!r}, "
                f"noise={self.noise!r})")

"""Guidance fields ψ for the Langevin sampler: ∇ψ is added to the score, ψ (when known) to the log-density.

Two kinds (docs/theory.md §10):

- :class:`KernelGuidance`: ψ = the closed-form kernel witness between a reference data set
  y_1..y_M and the CURRENT particles x_1..x_N, recomputed at every step,

      D(x) = Σ_j a_j k(x, y_j) − (1/N) Σ_i k(x, x_i),      a_j ≥ 0, Σ_j a_j = 1 (a_j = 1/M by default).

  Its gradient is the MMD particle flow: the first term attracts particles to the data, the second
  (the "repulsion") spreads them apart, so together they move the particle measure toward the data.
- :class:`DiscriminatorGuidance`: ψ = log r = log p_d/p_g estimated by a trained discriminator. For
  the GAN discriminators of scoregan the raw output v IS that estimate (D = sigmoid(v) and the
  optimal logit is log r), so s_g + ∇ψ = s_d turns a generator score into a data score.
- :class:`LatentGuidance` / :class:`PullbackGuidance`: either pulled back through a generator,
  ψ(z) = ψ_x(G(z)) (the first for a discriminator, the second for any field, a witness included).

Protocol used by :func:`scoregan.sampling.langevin` (any object with ``grad`` works):

- ``grad(x) -> (N, d)``: ∇ψ at the particles x (N, d).
- ``value(x) -> (N,)`` (optional): ψ itself, needed only for the Metropolis correction.
- ``bind(particles) -> field`` (optional): the field for one step when ψ depends on the particle
  ensemble (kernel guidance); ``field.grad(y)`` / ``field.value(y)`` then evaluate ψ with the
  ensemble frozen at ``particles``. Static fields return themselves.
- ``dim`` (optional): the dimension the field lives in, checked against the particles up front.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from scoregan._autograd import input_gradient
from scoregan._dist import gather
from scoregan._checks import check_choice, check_matrix
from scoregan.objectives.kernels import Witness, kernel_witness

__all__ = ["Guidance", "KernelGuidance", "DiscriminatorGuidance", "LatentGuidance", "PullbackGuidance",
           "module_input_dim", "module_output_dim"]


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

    Uses an ``in_dim`` / ``in_features`` attribute when the module declares one, else the first
    ``nn.Linear`` it contains when that is its first layer with parameters.
    """
    for attr in ("in_dim", "in_features"):
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


def _dimension_error(argument: str, what: str, expected: int, got: int) -> ValueError:
    return ValueError(f"{argument}: {what} has dimension {expected} but the particles have dimension {got}")


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


# ------------------------------------------------------------------------------ kernel witness
class _BoundWitness(Guidance):
    """A :class:`~scoregan.objectives.kernels.Witness` as a guidance field: ψ = D̂ (N,), ∇ψ = ∇D̂ (N, d)."""

    def __init__(self, owner: KernelGuidance, witness: Witness):
        self._owner, self._witness = owner, witness
        self.dim = witness.dim

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        o = self._owner
        return self._witness.like(x).grad(x, backend=o.backend, precision=o.precision)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self._witness.like(x).value(x)


class KernelGuidance(Guidance):
    """ψ = kernel witness between ``reference`` (M, d) and the current particles (N, d).

        ψ(x) = Σ_j a_j k(x, y_j) − (1/N) Σ_i k(x, x_i)          (the second term only if ``repulsion``)
        ∇ψ(x) = kernel.witness_grad(x, [y; x_1..x_N], [a; −1/N])    (N, d)

    Args:
        kernel: a ``scoregan.objectives.kernel(...)`` object (``witness``, ``witness_grad``).
        reference: (M, d) reference samples (the data).
        reference_weights: (M,) non-negative weights a_j, normalised to sum to one; uniform if None.
        repulsion: keep the particle term (the MMD flow); ``False`` keeps only the attraction
            Σ_j a_j k(x, y_j) (a kernel density ascent that collapses onto the modes).
        backend, precision: passed through to ``kernel.witness_grad`` (e.g. ``backend="triton"``
            for the fused CUDA kernel, ``precision="tf32"`` for tensor cores).

    The gradient is taken in the evaluation point only, with the ensemble frozen during a step
    (:meth:`bind`), which is the particle discretisation of the Wasserstein gradient flow of
    MMD²/2 (scaled by the guidance scale). A data-dependent kernel parameter (a median bandwidth)
    is fixed at each :meth:`bind` from the pooled [reference; particles].
    """

    def __init__(self, kernel: Any, reference: torch.Tensor, *, reference_weights: torch.Tensor | None = None,
                 repulsion: bool = True, backend: str = "auto", precision: str = "ieee") -> None:
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
        self.kernel = kernel
        self.reference = reference.detach()
        self.reference_weights = a
        self.repulsion = repulsion
        self.backend = backend
        self.precision = precision
        self.dim = int(reference.shape[1])
        self._converted: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def _reference_like(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reference, weights) in x's device and dtype, converted once per (device, dtype)."""
        key = (x.device, x.dtype)
        if key not in self._converted:
            self._converted[key] = (self.reference.to(x), self.reference_weights.to(x))
        return self._converted[key]

    def bind(self, particles: torch.Tensor) -> Guidance:
        """The witness with the ensemble frozen at ``particles`` (N, d): centres [y; x], weights [a; −1/N]."""
        self.check(particles, "particles")
        y, a = self._reference_like(particles)
        # one kernel for this step's field, resolved from [reference; particles]
        # every rank's particles repel (data parallel sampling): the ensemble is the whole sample
        witness = kernel_witness(self.kernel, y, gather(particles.detach()), a, negative_centres=self.repulsion,
                                 names=("reference", "particles"))
        return _BoundWitness(self, witness)

    def check(self, x: torch.Tensor, name: str = "x0") -> None:
        if x.shape[1] != self.dim:
            raise ValueError(f"reference has dimension {self.dim} but {name} has dimension {x.shape[1]} "
                             f"(shapes {tuple(self.reference.shape)} and {tuple(x.shape)})")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """∇ψ(x) (N, d) with x itself as the particle ensemble."""
        return self.bind(x).grad(x)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """ψ(x) (N,) with x itself as the particle ensemble."""
        return self.bind(x).value(x)

    def __repr__(self) -> str:
        return (f"KernelGuidance(kernel={self.kernel!r}, reference=({self.reference.shape[0]}, {self.dim}), "
                f"repulsion={self.repulsion}, backend={self.backend!r}, precision={self.precision!r})")


# ------------------------------------------------------------------------ trained discriminator
LINKS = ("logit", "fgan", "probability")


class DiscriminatorGuidance(Guidance):
    """ψ = log r(x) = log p_d(x)/p_g(x) read off a trained discriminator; ∇ψ by autograd.

    Args:
        discriminator: an ``nn.Module`` or callable x (N, d) ↦ raw output (N,) or (N, 1).
        link: how the raw output v becomes log r:
            - ``"logit"``: ψ = v. The GAN discriminators of scoregan output the logit, D = sigmoid(v),
              and the Bayes-optimal logit is log p_d/p_g (for the original and non-saturating GAN).
            - ``"fgan"``: an f-GAN critic trained with ``divergence``: log r = divergence.log_ratio(T)
              for its output T = divergence.activation(v). scoregan's convention is
              activation(v) = f'(e^v) and log_ratio = log (f')⁻¹, so the composition is the identity
              and ψ = v, computed as such (no round trip through T). The identity is checked for the
              given divergence at construction (a divergence with another convention is refused).
            - ``"probability"``: the output is D ∈ (0, 1) itself: ψ = log D − log(1 − D) (the
              least-squares GAN's optimum D = p_d/(p_d + p_g)); outputs outside (0, 1) are clamped
              to [ε, 1 − ε] (ε the dtype's epsilon), where ψ is flat.
        divergence: a ``scoregan.objectives.divergence(name)`` object; required for ``link="fgan"``.

    An IPM critic (WGAN-GP, MMD-GAN) does not estimate log r; used here with ``link="logit"`` its
    gradient still transports particles toward the data (as in discriminator optimal transport),
    but the chain then samples p_g·e^{λ critic}, not p_d.

    The network is evaluated in its own dtype and device; the gradient comes back in the
    particles' dtype and device. No graph is kept and no parameter gradient is accumulated.
    """

    def __init__(self, discriminator: Callable[[torch.Tensor], torch.Tensor], *, link: str = "logit",
                 divergence: Any | None = None) -> None:
        if not callable(discriminator):
            raise ValueError(f"discriminator must be an nn.Module or a callable x (N, d) -> (N,), "
                             f"got {type(discriminator).__name__}")
        check_choice("link", link, LINKS)
        if link == "fgan":
            if divergence is None:
                raise ValueError("divergence is required with link='fgan' (a scoregan.objectives.divergence object)")
            for attr in ("activation", "log_ratio"):
                if not callable(getattr(divergence, attr, None)):
                    raise ValueError(f"divergence must provide {attr}(); got {type(divergence).__name__}")
            v = torch.linspace(-8.0, 8.0, 33, dtype=torch.float64)
            back = divergence.log_ratio(divergence.activation(v))
            if not torch.allclose(back, v, rtol=1e-6, atol=1e-6):
                raise ValueError(f"divergence={divergence!r} does not decode its own activation "
                                 f"(log_ratio(activation(v)) != v): its raw output is not log r")
        elif divergence is not None:
            raise ValueError(f"divergence is only used with link='fgan', got link={link!r}")
        self.discriminator = discriminator
        self.link = link
        self.divergence = divergence
        self.dim = module_input_dim(discriminator)
        self._dtype, self._device = _float_dtype_device(discriminator)

    # -- ψ as a differentiable function of the network input
    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's raw output v(x) as (N,), in the network's dtype."""
        v = self.discriminator(x)
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"discriminator must return a tensor, got {type(v).__name__}")
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.shape != (x.shape[0],):
            raise ValueError(f"discriminator must map (N, d) to (N,) or (N, 1); for input {tuple(x.shape)} "
                             f"it returned shape {tuple(v.shape)}")
        return v

    def log_ratio(self, x: torch.Tensor) -> torch.Tensor:
        """ψ(x) = estimated log p_d(x)/p_g(x) as (N,), differentiable in x (network dtype)."""
        v = self.raw(x)
        if self.link == "probability":  # clamped into (0, 1): an unconstrained (least-squares) output may leave it
            eps = torch.finfo(v.dtype).eps
            v = v.clamp(eps, 1.0 - eps)
            return torch.log(v) - torch.log1p(-v)
        return v  # "logit" and "fgan": the raw output is log r (see the class docstring)

    def _net_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().to(dtype=self._dtype or x.dtype, device=self._device or x.device)

    def check(self, x: torch.Tensor, name: str = "x0") -> None:
        """Raise ``ValueError`` naming the discriminator if it cannot take particles shaped like ``x``."""
        if self.dim is not None:
            if x.shape[1] != self.dim:
                raise ValueError(f"discriminator expects inputs of dimension {self.dim} but {name} has dimension "
                                 f"{x.shape[1]} (shape {tuple(x.shape)})")
            return
        # Unknown architecture: one evaluation on two rows (no gradient) tells us.
        try:
            with torch.no_grad():
                self.raw(self._net_input(x[:2]))
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"discriminator cannot be applied to {name} of shape {tuple(x.shape)}: {exc}") from exc

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """ψ(x) (N,) in x's dtype and device."""
        with torch.no_grad():
            return self.log_ratio(self._net_input(x)).to(dtype=x.dtype, device=x.device)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """∇ψ(x) (N, d) by autograd (ψ is per-sample, so the gradient of Σ_n ψ(x_n) is row-wise)."""
        return input_gradient(self.log_ratio, self._net_input(x)).to(dtype=x.dtype, device=x.device)

    def __repr__(self) -> str:
        return f"DiscriminatorGuidance({type(self.discriminator).__name__}, link={self.link!r}, dim={self.dim})"


class LatentGuidance(Guidance):
    """ψ(z) = log r(G(z)): a discriminator's log-ratio pulled back through a generator to latent space.

        ψ(z) = ψ_D(G(z)),      ∇_z ψ(z) = J_G(z)ᵀ ∇_x ψ_D(G(z))          z (N, latent_dim)

    Args:
        generator_net: an ``nn.Module`` or callable z (N, latent_dim) ↦ x (N, d).
        discriminator: a :class:`DiscriminatorGuidance`, or a network / callable turned into one
            with ``link="logit"``.
    """

    def __init__(self, generator_net: Callable[[torch.Tensor], torch.Tensor],
                 discriminator: DiscriminatorGuidance | Callable[[torch.Tensor], torch.Tensor]) -> None:
        if not callable(generator_net):
            raise ValueError(f"generator_net must be an nn.Module or a callable z -> x, got {type(generator_net).__name__}")
        self.generator_net = generator_net
        self.discriminator = (discriminator if isinstance(discriminator, DiscriminatorGuidance)
                              else DiscriminatorGuidance(discriminator))
        self.dim = module_input_dim(generator_net)
        self._dtype, self._device = _float_dtype_device(generator_net)

    def _net_input(self, z: torch.Tensor) -> torch.Tensor:
        return z.detach().to(dtype=self._dtype or z.dtype, device=self._device or z.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) as (N, d), no graph, in z's dtype and device."""
        with torch.no_grad():
            x = self.generator_net(self._net_input(z))
        return x.to(dtype=z.dtype, device=z.device)

    def _psi(self, z: torch.Tensor) -> torch.Tensor:
        x = self.generator_net(z)
        d = self.discriminator
        return d.log_ratio(x.to(dtype=d._dtype or x.dtype, device=d._device or x.device))

    def check(self, z: torch.Tensor, name: str = "z0") -> None:
        """Check z against the generator's input and the generator's output against the discriminator."""
        if self.dim is not None and z.shape[1] != self.dim:
            raise ValueError(f"generator_net expects latents of dimension {self.dim} but {name} has dimension "
                             f"{z.shape[1]} (shape {tuple(z.shape)})")
        out_dim = module_output_dim(self.generator_net)
        if out_dim is None:
            try:
                out_dim = self.decode(z[:2]).shape[1]
            except (RuntimeError, ValueError) as exc:
                raise ValueError(f"generator_net cannot be applied to {name} of shape {tuple(z.shape)}: {exc}") from exc
        self.discriminator.check(torch.zeros(2, out_dim, dtype=z.dtype, device=z.device), name="the generator output")

    def value(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._psi(self._net_input(z)).to(dtype=z.dtype, device=z.device)

    def grad(self, z: torch.Tensor) -> torch.Tensor:
        return input_gradient(self._psi, self._net_input(z)).to(dtype=z.dtype, device=z.device)


class PullbackGuidance(Guidance):
    """Any data-space field ψ_x (``grad``, optionally ``value`` and ``bind``) pulled back to latent space.

        ψ(z) = ψ_x(G(z)),      ∇_z ψ(z) = J_G(z)ᵀ ∇_x ψ_x(G(z))          z (N, latent_dim)

    The vector-Jacobian product takes one backward pass through G; ∇_x ψ_x itself comes from the
    field's own ``grad`` (a closed-form witness needs no autograd). An ensemble-dependent field
    (:class:`KernelGuidance`) is bound at each step to the decoded particles G(z_1..z_N) (:meth:`bind`),
    so the witness's repulsion acts between the generated points, as in data space.

    Args:
        generator_net: an ``nn.Module`` or callable z (N, latent_dim) ↦ x (N, d).
        field: the data-space guidance (e.g. a :class:`KernelGuidance`).
    """

    def __init__(self, generator_net: Callable[[torch.Tensor], torch.Tensor], field: Any) -> None:
        if not callable(generator_net):
            raise ValueError(f"generator_net must be an nn.Module or a callable z -> x, got {type(generator_net).__name__}")
        if not callable(getattr(field, "grad", None)):
            raise ValueError(f"field must provide grad(x) -> (N, d) (e.g. KernelGuidance), got {type(field).__name__}")
        self.generator_net, self.field = generator_net, field
        self.dim = module_input_dim(generator_net)
        self.has_value = callable(getattr(field, "value", None)) and getattr(field, "has_value", True)
        self._dtype, self._device = _float_dtype_device(generator_net)

    def _net_input(self, z: torch.Tensor) -> torch.Tensor:
        return z.detach().to(dtype=self._dtype or z.dtype, device=self._device or z.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) as (N, d), no graph, in z's dtype and device."""
        with torch.no_grad():
            return self.generator_net(self._net_input(z)).to(dtype=z.dtype, device=z.device)

    def bind(self, particles: torch.Tensor) -> Guidance:
        """The pull-back of ``field.bind(G(particles))``; ``self`` for a static field."""
        bind = getattr(self.field, "bind", None)
        if not callable(bind):
            return self
        return PullbackGuidance(self.generator_net, bind(self.decode(particles)))

    def check(self, z: torch.Tensor, name: str = "z0") -> None:
        """Check z against the generator's input and the generator's output against the field."""
        if self.dim is not None and z.shape[1] != self.dim:
            raise ValueError(f"generator_net expects latents of dimension {self.dim} but {name} has dimension "
                             f"{z.shape[1]} (shape {tuple(z.shape)})")
        check = getattr(self.field, "check", None)
        if callable(check):
            check(self.decode(z[:2]), "the generator output")

    def value(self, z: torch.Tensor) -> torch.Tensor:
        """ψ_x(G(z)) (N,) in z's dtype and device."""
        return self.field.value(self.decode(z)).to(dtype=z.dtype, device=z.device)

    def grad(self, z: torch.Tensor) -> torch.Tensor:
        """J_G(z)ᵀ ∇_x ψ_x(G(z)) (N, latent_dim), in z's dtype and device."""
        with torch.enable_grad():
            zg = self._net_input(z).requires_grad_(True)
            x = self.generator_net(zg)
            gx = self.field.grad(x.detach().to(dtype=z.dtype, device=z.device))
            (gz,) = torch.autograd.grad(x, zg, grad_outputs=gx.to(dtype=x.dtype, device=x.device))
        return gz.to(dtype=z.dtype, device=z.device)

    def __repr__(self) -> str:
        return f"PullbackGuidance({type(self.generator_net).__name__}, {self.field!r})"

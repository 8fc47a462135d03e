"""Guidance fields ψ for the samplers: ∇ψ is added to the score, ψ (when known) to the log-density.

Two kinds (docs/theory.md §10), both usable at a noise level σ by the diffusion samplers:

- :class:`KernelGuidance`: ψ = the closed-form kernel witness between a reference data set
  y_1..y_M and the CURRENT particles x_1..x_N, recomputed at every step,

      D(x) = Σ_j a_j k(x, y_j) − (1/N) Σ_i k(x, x_i),      a_j ≥ 0, Σ_j a_j = 1 (a_j = 1/M by default).

  Its gradient is the MMD particle flow: the first term attracts particles to the data, the second
  (the "repulsion") spreads them apart, so together they move the particle measure toward the data.
  At a level σ the reference is taken to that level (``noise``; :mod:`scoregan.sampling.kernel_guidance`).
- :class:`DiscriminatorGuidance`: ψ = log r = log p_d/p_g estimated by a trained discriminator. For
  the GAN discriminators of scoregan the raw output v IS that estimate (D = sigmoid(v) and the
  optimal logit is log r), so s_g + ∇ψ = s_d turns a generator score into a data score. A
  noise-conditional discriminator D(x, σ) ≈ log p_d^σ/p_g^σ (``noise_conditional=True``) does the
  same at every level of a diffusion sampler: s_g(x, σ) + ∇ψ(x, σ) = s_d(x, σ).
- :class:`LatentGuidance` / :class:`PullbackGuidance`: either pulled back through a generator,
  ψ(z) = ψ_x(G(z)) (the first for a discriminator, the second for any field, a witness included).

Protocol used by :func:`scoregan.sampling.langevin` (any object with ``grad`` works):

- ``grad(x) -> (N, d)``: ∇ψ at the particles x (N, d).
- ``value(x) -> (N,)`` (optional): ψ itself, needed only for the Metropolis correction.
- ``bind(particles) -> field`` (optional): the field for one step when ψ depends on the particle
  ensemble (kernel guidance); ``field.grad(y)`` / ``field.value(y)`` then evaluate ψ with the
  ensemble frozen at ``particles``. Static fields return themselves.
- ``dim`` (optional): the dimension the field lives in, checked against the particles up front.

The diffusion samplers also pass σ where ``grad`` / ``value`` / ``bind`` take it as a second
argument (:class:`SigmaGuidance`, :mod:`scoregan.sampling.guidance_base`). The base class, the
adapter and the kernel guidance live in their own modules and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from scoregan._autograd import input_gradient
from scoregan._checks import check_choice
from scoregan.sampling.guidance_base import (
    Guidance,
    SigmaGuidance,
    _float_dtype_device,
    bind_field,
    module_input_dim,
    module_output_dim,
)
from scoregan.sampling.kernel_guidance import NOISE_MODES, KernelGuidance

__all__ = ["Guidance", "KernelGuidance", "DiscriminatorGuidance", "LatentGuidance", "PullbackGuidance",
           "SigmaGuidance", "NOISE_MODES", "bind_field", "module_input_dim", "module_output_dim"]


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
        noise_conditional: the discriminator takes (x (N, d), σ) ↦ (N,) or (N, 1), a noise- (or
            time-) conditional network estimating log p_d^σ/p_g^σ; σ (a float, a 0-d or an (N,)
            tensor, moved to the network's dtype and device) is then required by :meth:`grad` and
            :meth:`value`. Without it σ is accepted and ignored (one log-ratio at every level).

    An IPM critic (WGAN-GP, MMD-GAN) does not estimate log r; used here with ``link="logit"`` its
    gradient still transports particles toward the data (as in discriminator optimal transport),
    but the chain then samples p_g·e^{λ critic}, not p_d.

    The network is evaluated in its own dtype and device; the gradient comes back in the
    particles' dtype and device. No graph is kept and no parameter gradient is accumulated.
    """

    def __init__(self, discriminator: Callable[..., torch.Tensor], *, link: str = "logit",
                 divergence: Any | None = None, noise_conditional: bool = False) -> None:
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
        if not isinstance(noise_conditional, bool):
            raise ValueError(f"noise_conditional must be True or False, got {noise_conditional!r}")
        self.noise_conditional = noise_conditional
        self.discriminator = discriminator
        self.link = link
        self.divergence = divergence
        self.dim = module_input_dim(discriminator)
        self._dtype, self._device = _float_dtype_device(discriminator)

    # -- ψ as a differentiable function of the network input
    def _net_sigma(self, sigma: Any, x: torch.Tensor) -> Any:
        """σ for the network: required when noise-conditional, in the network's dtype and device."""
        if sigma is None:
            raise ValueError("sigma is required: the discriminator is noise-conditional (noise_conditional=True)")
        if isinstance(sigma, torch.Tensor):
            return sigma.detach().to(dtype=x.dtype, device=x.device)
        return sigma

    def raw(self, x: torch.Tensor, sigma: Any = None) -> torch.Tensor:
        """The discriminator's raw output v(x[, σ]) as (N,), in the network's dtype."""
        v = self.discriminator(x, self._net_sigma(sigma, x)) if self.noise_conditional else self.discriminator(x)
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"discriminator must return a tensor, got {type(v).__name__}")
        if v.ndim == 2 and v.shape[1] == 1:
            v = v[:, 0]
        if v.shape != (x.shape[0],):
            raise ValueError(f"discriminator must map (N, d) to (N,) or (N, 1); for input {tuple(x.shape)} "
                             f"it returned shape {tuple(v.shape)}")
        return v

    def log_ratio(self, x: torch.Tensor, sigma: Any = None) -> torch.Tensor:
        """ψ(x[, σ]) = estimated log p_d^σ(x)/p_g^σ(x) as (N,), differentiable in x (network dtype)."""
        v = self.raw(x, sigma)
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
                xi = self._net_input(x[:2])
                self.raw(xi, torch.ones((), dtype=xi.dtype, device=xi.device) if self.noise_conditional else None)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"discriminator cannot be applied to {name} of shape {tuple(x.shape)}: {exc}") from exc

    def value(self, x: torch.Tensor, sigma: Any = None) -> torch.Tensor:
        """ψ(x[, σ]) (N,) in x's dtype and device (σ used only when noise-conditional)."""
        sigma = sigma if self.noise_conditional else None
        with torch.no_grad():
            return self.log_ratio(self._net_input(x), sigma).to(dtype=x.dtype, device=x.device)

    def grad(self, x: torch.Tensor, sigma: Any = None) -> torch.Tensor:
        """∇ψ(x[, σ]) (N, d) by autograd (ψ is per-sample, so the gradient of Σ_n ψ(x_n) is row-wise)."""
        sigma = sigma if self.noise_conditional else None
        return input_gradient(lambda xi: self.log_ratio(xi, sigma), self._net_input(x)).to(dtype=x.dtype,
                                                                                           device=x.device)

    def __repr__(self) -> str:
        cond = ", noise_conditional=True" if self.noise_conditional else ""
        return (f"DiscriminatorGuidance({type(self.discriminator).__name__}, link={self.link!r}, dim={self.dim}"
                f"{cond})")


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
        if self.discriminator.noise_conditional:
            raise ValueError("discriminator: latent guidance has no noise level; give a discriminator of x alone "
                             "(noise_conditional=False)")
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

"""The kernel choice of the kernel-based rules (kernel flow-matching GAN, GMMN, MMD-GAN), typed for
configs (they train with :func:`scoregan.objectives.kernels.mmd2` and ``kernel_witness``).

Every kernel of :mod:`scoregan.objectives.kernels` is a config away::

    trainer: {kernel: gaussian, bandwidth: [0.5, 1, 2, 4]}     # multi-scale Gaussian
    trainer: {kernel: gaussian, bandwidth: median}             # median heuristic, per batch
    trainer: {kernel: imq, imq_c: 1.0, imq_beta: -0.5}
    trainer: {kernel: laplace, bandwidth: 1.0}
    trainer: {kernel: energy}                                  # −‖x − y‖
    trainer: {kernel: polyharmonic, order: 2, eps: 0.0}        # r^(2m−n) (log r), n = the data dimension
    trainer: {kernel: coulomb, eps: 0.1}                       # order-1 polyharmonic, Plummer-softened
"""

from __future__ import annotations

from dataclasses import dataclass

from scoregan.schema import ConfigError, spec
from scoregan.objectives import KERNELS, Kernel, kernel


@dataclass
class KernelFields:
    """Kernel fields of a trainer config (mixed into the rule's ``Config``)."""

    kernel: str = spec("gaussian", choices=KERNELS, help="IPM kernel (see scoregan.objectives.KERNELS)")
    bandwidth: list[float] | float | str = spec(1.0, help="gaussian / laplace bandwidth h: a number, 'median', "
                                                          "or a list of scales (multi-scale gaussian)")
    imq_c: float = spec(1.0, min=0, exclusive_min=True, help="inverse multiquadric offset c")
    imq_beta: float = spec(-0.5, max=0, exclusive_max=True, help="inverse multiquadric exponent beta (< 0)")
    order: int = spec(1, min=1, help="polyharmonic order m (kernel r^(2m-n), log r when 2m-n is even)")
    eps: float = spec(0.1, min=0, help="softening ε of the polyharmonic / coulomb kernels")
    kernel_dim: int | None = spec(None, min=1, help="polyharmonic / coulomb dimension n (null: the data dimension)")

    def __post_init__(self) -> None:
        try:
            build_kernel(self)
        except ValueError as exc:  # name the field the kernel refused when its message says which
            fields = [f for f in ("bandwidth", "imq_c", "imq_beta", "order", "eps", "kernel_dim")
                      if f.removeprefix("imq_") in str(exc).split(":")[0] or f in str(exc).split(":")[0]]
            where = (f"trainer.{fields[0]} = {getattr(self, fields[0])!r}" if fields
                     else f"trainer.kernel = {self.kernel!r}")
            raise ConfigError(f"{where} (kernel {self.kernel!r}): {exc}") from None


def build_kernel(c: KernelFields) -> Kernel:
    """The :class:`~scoregan.objectives.Kernel` the fields describe (ValueError if they do not fit)."""
    name = c.kernel
    if name == "gaussian":
        bw = c.bandwidth
        return kernel("gaussian", bandwidth=tuple(bw) if isinstance(bw, list) else bw)
    if name == "laplace":
        if not isinstance(c.bandwidth, float):
            raise ValueError(f"bandwidth = {c.bandwidth!r}: the laplace kernel takes one number")
        return kernel("laplace", bandwidth=c.bandwidth)
    if name == "imq":
        return kernel("imq", c=c.imq_c, beta=c.imq_beta)
    if name == "energy":
        return kernel("energy")
    if name == "polyharmonic":
        return kernel("polyharmonic", order=c.order, dim=c.kernel_dim, eps=c.eps)
    return kernel("coulomb", dim=c.kernel_dim, eps=c.eps)

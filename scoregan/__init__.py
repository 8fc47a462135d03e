"""scoregan: GANs as particle flows written in scores.

f-GAN generators move their samples along w_f(r)·(∇log p_d − ∇log p_g) (weighted score matching);
IPM-GAN generators along the gradient of a kernel witness (kernel-smoothed score matching).
See ``scoregan.flows`` for the one place where that is written down.
"""

__version__ = "0.1.0"

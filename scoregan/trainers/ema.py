"""Exponential moving averages of network weights, kept as registered modules (so checkpoints and an
exact resume include them)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """average ← decay · average + (1 − decay) · module, for a pair of networks of the same architecture.

    The parameter and buffer lists are collected once (they are the same tensors for the life of the
    modules: optimisers and ``load_state_dict`` update them in place), and the update is one fused
    ``_foreach_lerp_`` over all parameters; buffers are copied.
    """

    def __init__(self, average: nn.Module, module: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.decay = decay
        self.avg_params = list(average.parameters())
        self.params = list(module.parameters())
        self.avg_buffers = list(average.buffers())
        self.buffers = list(module.buffers())
        if len(self.avg_params) != len(self.params) or len(self.avg_buffers) != len(self.buffers):
            raise ValueError("the average and the module must have the same parameters and buffers")

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.avg_params, self.params, 1.0 - self.decay)
        for ba, bm in zip(self.avg_buffers, self.buffers):
            ba.copy_(bm)

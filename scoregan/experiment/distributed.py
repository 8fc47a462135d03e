"""Launching under ``torchrun``: the process group, each rank's device, and what rank 0 alone does.

``torchrun --nproc_per_node=N -m scoregan train CONFIG`` (or ``--nnodes ... --rdzv-endpoint ...``)
sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`setup` then joins the process group (NCCL on
CUDA, gloo on the CPU) and puts rank r on ``cuda:LOCAL_RANK`` (or the CPU). Data parallelism itself
lives below (``scoregan._dist`` and ``StepContext``): every rank draws the same random streams and keeps
its block of each batch, so ``train.batch_size`` is the global batch, the data order does not depend
on the number of processes, and a checkpoint written under N processes resumes under any M that
divides the batch. Rank 0 alone writes the run directory, logs, evaluates and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from scoregan._dist import world


@dataclass(frozen=True)
class Ranks:
    """This process's place: ``rank`` of ``world_size`` (0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``train.device`` as a device: ``auto`` is CUDA when available; under torchrun CUDA means
    ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device = {name!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dev = torch.device("cuda", local_rank)
    return dev


def setup(device_name: str) -> tuple[Ranks, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (once per process); (ranks, device)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks(), resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, size = world()
    return Ranks(rank, size), device

"""Data parallelism primitives, identity in a single process (``torch.distributed`` not initialised).

Under ``torchrun`` every rank holds the same networks, draws the same random streams and keeps its
shard of each batch (``scoregan.trainers.StepContext``); gradients are averaged across ranks before
every optimiser step (:func:`average_gradients`, what DistributedDataParallel's all-reduce does, done
where the rules already clip, so clipping sees the global gradient and double backward for gradient
penalties works). Objectives that need the whole batch (kernel witnesses, MMD², batch scores) gather
it: :func:`gather` without gradient for stopped targets, ``grad=True`` where the loss is
differentiated through the gathered points (its backward sums every rank's contribution).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) in a single process."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def gather(x: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
    """The rows of every rank's x (n, ...) concatenated in rank order, (n · world, ...); x itself in a
    single process. ``grad=True`` keeps the graph (each rank's gradient flows back to its own rows)."""
    if not is_distributed():
        return x
    if grad:
        from torch.distributed.nn.functional import all_gather  # noqa: PLC0415  (loads autograd collectives)

        return torch.cat(all_gather(x), dim=0)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over the ranks (one flattened all-reduce)."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_ranks(values: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """Each scalar averaged over the ranks (a non-finite value anywhere stays non-finite)."""
    if not is_distributed() or not values:
        return values
    t = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(values, t.tolist()))


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module_(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers copied into every rank's ``module`` (same initial networks)."""
    if not is_distributed():
        return
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)

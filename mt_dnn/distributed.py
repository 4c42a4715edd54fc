"""Data parallelism over processes started by ``torchrun`` (NCCL on GPUs, gloo on CPUs).

Every rank holds the whole network and trains on its shard of each global batch (the sampler
shards it, so all ranks train the same task at each step). Gradients are averaged across ranks
once per optimizer update, after the last accumulating micro-step: accumulation needs no
``no_sync``, and SMART's extra forward passes need no special handling, because nothing is
communicated during backward. Evaluation is sharded and gathered back in dataset order.

    torchrun --nproc_per_node 2 train.py ...                      # one node
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 train.py ...
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from data_utils.errors import MTDNNInputError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: global rank, world size and the local rank (its GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes score files and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def init_distributed(local_rank_flag: int, use_cuda: bool) -> DistContext:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        raise MTDNNInputError("WORLD_SIZE is set but RANK/MASTER_ADDR are not: start several processes with torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", max(local_rank_flag, 0)))
    gpu = use_cuda and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Give every rank rank 0's weights and buffers (they are seeded alike; this makes it certain)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Average the gradients of ``params`` across ranks, one flat all-reduce per dtype and device.

    All ranks train the same task at each step, so the same parameters have gradients everywhere.
    """
    grads: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for param in params:
        if param.grad is not None:
            grads.setdefault((param.grad.dtype, param.grad.device), []).append(param.grad)
    for bucket in grads.values():
        flat = torch.cat([grad.reshape(-1) for grad in bucket])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for grad in bucket:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()


def all_finite(loss: torch.Tensor, ctx: DistContext) -> bool:
    """Whether the loss is finite on every rank (all ranks must skip a bad update together)."""
    finite = torch.isfinite(loss.detach()).to(torch.int32)
    if ctx.enabled:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def gather_objects(value: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``value``, in rank order (a one-element list in a single process)."""
    if not ctx.enabled:
        return [value]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def shut_down(ctx: DistContext) -> None:
    """Leave the process group (a no-op in a single process)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()

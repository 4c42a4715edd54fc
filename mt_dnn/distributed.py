"""Data parallelism over processes started by ``torchrun`` (NCCL on GPUs, gloo on CPUs).

Every rank holds the whole network and trains on its shard of each global batch (the sampler
shards it, so all ranks train the same task at each step). Gradients are averaged across ranks
once per optimizer update, after the last accumulating micro-step: nothing is communicated during
backward, so accumulating micro-steps need no ``no_sync``, and SMART's extra forward passes need
no special handling. SMART's initial noise is drawn for the global batch from the generator every
rank shares and sliced to this rank's rows, so each example gets the noise it gets in one process.
Evaluation is sharded and gathered back in dataset order. ``--fsdp`` shards the network instead
(``mt_dnn/fsdp.py``).

    torchrun --nproc_per_node 2 train.py ...                      # one node
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 train.py ...
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from data_utils.errors import MTDNNInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run (global rank, world size, local rank: its GPU) and how the
    network is spread: FSDP shards across the processes, DataParallel over the GPUs of one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    fsdp: bool = False
    data_parallel: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes score files and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def init_distributed(local_rank_flag: int, use_cuda: bool, fsdp: bool = False) -> DistContext:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if fsdp and world_size <= 1:
        raise MTDNNInputError("--fsdp shards the network across processes: start the run with torchrun --nproc_per_node N (N ≥ 2)")
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
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, fsdp=fsdp)


def use_data_parallel(multi_gpu_on: bool, device: torch.device, ctx: DistContext) -> bool:
    """Whether ``--multi_gpu_on`` wraps the network in ``nn.DataParallel``: one process that sees several GPUs.

    Otherwise the flag has no effect and the run goes on, with a warning saying why.
    """
    if not multi_gpu_on:
        return False
    if ctx.enabled:
        logger.warning("--multi_gpu_on has no effect under torchrun: each process already drives one GPU")
        return False
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus <= 1:
        logger.warning("--multi_gpu_on has no effect: this run sees %d GPU(s); training goes on without DataParallel", gpus)
        return False
    logger.warning(
        "--multi_gpu_on: DataParallel over %d GPUs in one process; torchrun --nproc_per_node %d train.py … is faster",
        gpus, gpus,
    )
    return True


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Give every rank rank 0's weights and buffers (they are seeded alike; this makes it certain)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Average the gradients of ``params`` across ranks, one flat all-reduce per dtype and device.

    All ranks train the same task at each step, so the same parameters have gradients everywhere.
    """
    average_in_place([param.grad for param in params if param.grad is not None], world_size)


def average_in_place(tensors: list[torch.Tensor], world_size: int) -> None:
    """Replace each tensor by its mean across ranks (same list, same shapes on every rank)."""
    buckets: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for tensor in tensors:
        buckets.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for bucket in buckets.values():
        flat = torch.cat([tensor.reshape(-1) for tensor in bucket])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for tensor in bucket:
            tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


def global_batch_randn(local: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Standard normal noise shaped like ``local``, this rank's shard (batch first) of a global batch.

    Under torchrun the noise is drawn for the whole global batch (padded to its longest shard) from
    the default generator, which every rank advances alike, and this rank's rows are kept: each
    example gets the noise it gets in one process. In one process it is ``torch.randn_like(local)``.
    """
    if not ctx.enabled:
        return torch.randn_like(local)
    length = torch.tensor([local.size(1)], device=local.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    rows = local.size(0)  # shards are equal: the sampler pads an uneven global batch by repetition
    full = torch.randn(
        (rows * ctx.world_size, int(length.item()), *local.shape[2:]), dtype=local.dtype, device=local.device
    )
    return full[ctx.rank * rows : (ctx.rank + 1) * rows, : local.size(1)].contiguous()


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

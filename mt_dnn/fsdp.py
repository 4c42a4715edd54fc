"""``--fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``) for encoders that do not fit one GPU.

Each transformer layer of the encoder is one shard unit, the root (embeddings, pooler, heads) the
last. Gradients are reduce-scattered on every micro-step, so an accumulating update never holds
unsharded gradients. Checkpoints hold full state dicts in the layout of a one-process run
(optimizer state keyed by parameter index), so they resume with or without ``--fsdp``.

    torchrun --nproc_per_node 8 train.py ... --fsdp
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

# Rank 0 gathers whole tensors on the CPU; the other ranks take part and get empty dicts.
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
# Every rank holds the whole checkpoint (each reads the file) and keeps its shard of it.
_SCATTER = StateDictOptions(full_state_dict=True)


def transformer_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer layers: its largest ``nn.ModuleList`` (``encoder.layer`` in BERT)."""
    lists = [module for module in encoder.modules() if isinstance(module, nn.ModuleList) and len(module) > 0]
    if not lists:
        raise ValueError(f"{type(encoder).__name__} has no list of layers to shard")
    return max(lists, key=lambda layers: sum(p.numel() for p in layers.parameters()))


def shard_network(network: nn.Module, encoder: nn.Module, device: torch.device) -> None:
    """Shard each transformer layer of ``encoder`` over every rank, then the rest of ``network`` as the root."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for layer in transformer_layers(encoder):
        fully_shard(layer, mesh=mesh)
    fully_shard(network, mesh=mesh)


def reshard(network: nn.Module) -> None:
    """Free every gathered parameter (the root keeps its own after a forward): state dicts see the shards."""
    for module in network.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def _index_of_names(names_by_group: list[list[str]]) -> dict[str, int]:
    # torch numbers an optimizer's parameters in group order: the one-process checkpoint layout.
    return {name: index for index, name in enumerate(name for group in names_by_group for name in group)}


def full_training_state(network: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(weights, optimizer state) as one process saves them; whole on rank 0, empty elsewhere (collective)."""
    reshard(network)
    weights = get_model_state_dict(network, options=_GATHER)
    named = get_optimizer_state_dict(network, optimizer, options=_GATHER)
    if not named:
        return weights, {}
    index = _index_of_names([group["params"] for group in named["param_groups"]])
    return weights, {
        "state": {index[name]: value for name, value in named["state"].items()},
        "param_groups": [{**group, "params": [index[name] for name in group["params"]]} for group in named["param_groups"]],
    }


def load_full_training_state(
    network: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, Any], optimizer_state: dict[str, Any]
) -> None:
    """Load a one-process-layout checkpoint into the sharded network and optimizer (every rank holds it)."""
    reshard(network)
    set_model_state_dict(network, weights, options=_SCATTER)
    named_groups = get_optimizer_state_dict(network, optimizer, options=_SCATTER)["param_groups"]
    names = [name for group in named_groups for name in group["params"]]
    if len(names) != sum(len(group["params"]) for group in optimizer_state["param_groups"]):
        raise ValueError("the checkpoint's optimizer holds another number of parameters")
    named = {
        "state": {names[index]: value for index, value in optimizer_state["state"].items()},
        "param_groups": [
            {**group, "params": [names[index] for index in group["params"]]} for group in optimizer_state["param_groups"]
        ],
    }
    set_optimizer_state_dict(network, optimizer, named, options=_SCATTER)


def full_gradient(grad: torch.Tensor) -> torch.Tensor:
    """A sharded gradient made whole on every rank (collective: call it on all ranks in the same order)."""
    return grad.full_tensor() if isinstance(grad, DTensor) else grad


def sharded_like(param: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """``whole`` (every rank holds it) cut to ``param``'s sharding, with no communication."""
    if not isinstance(param, DTensor):
        return whole.to(param.device)
    return distribute_tensor(whole.to(param.device), param.device_mesh, param.placements, src_data_rank=None)

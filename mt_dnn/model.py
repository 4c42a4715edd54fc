"""``MTDNNModel``: the update step (loss, SMART, distillation, mixed precision, accumulation,
clipping, optimizer and schedule), prediction, and checkpoint state (SPEC §6–§7)."""
from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from data_utils.errors import MTDNNInputError
from data_utils.task_def import TaskDef
from mt_dnn.cpu_dropout import FastCpuDropout
from mt_dnn.distributed import DistContext, all_finite, all_reduce_gradients, average_in_place, broadcast_parameters
from mt_dnn.fsdp import (
    full_gradient,
    full_training_state,
    load_full_training_state,
    reshard,
    shard_network,
    sharded_like,
)
from mt_dnn.inference import EvalSettings, predict_logits
from mt_dnn.loss import build_criterion
from mt_dnn.optim import build_optimizer, build_scheduler, clip_grad_norm_
from mt_dnn.options import AdvOptions, TrainOptions, autocast_context, autocast_dtype, resolve_optimizer_kernel
from mt_dnn.perturbation import SmartPerturbation
from mt_dnn.tasks import get_task_handler

if TYPE_CHECKING:
    from mt_dnn.batch import Batch
    from mt_dnn.matcher import SANBertNetwork

logger = logging.getLogger(__name__)


class NonFiniteLossError(MTDNNInputError):
    """Raised after too many consecutive non-finite losses: the run has diverged (one line, exit 2, like any run fault)."""


class MTDNNModel:
    """Owns the network, optimizer, schedule and grad scaler of a run; one ``update`` per micro-batch."""

    def __init__(
        self,
        network: SANBertNetwork,
        task_defs: list[TaskDef],
        train_opts: TrainOptions,
        adv_opts: AdvOptions,
        total_updates: int,
        device: torch.device,
        dist_ctx: DistContext = DistContext(),
    ):
        self.device = device
        self.dist = dist_ctx
        self.network = network.to(device)
        if dist_ctx.enabled:
            broadcast_parameters(self.network)  # before sharding: every shard comes from rank 0's weights
        if dist_ctx.fsdp:
            shard_network(self.network, self.network.bert, device)
        # Training forwards go through DataParallel under --multi_gpu_on; ``network`` stays the bare module
        # (its state dict has no ``module.`` prefix; evaluation runs on the first GPU).
        self.forward_network = nn.DataParallel(self.network) if dist_ctx.data_parallel else self.network
        self.opts = train_opts
        self.task_ids = {task_def.name: index for index, task_def in enumerate(task_defs)}
        self.handlers = [get_task_handler(task_def.task_type) for task_def in task_defs]
        self.criteria = [build_criterion(task_def.loss, task_def.name) for task_def in task_defs]
        self.kd_criteria = [build_criterion(task_def.kd_loss, task_def.name) for task_def in task_defs]
        self.adv_criteria = [build_criterion(task_def.adv_loss, task_def.name) for task_def in task_defs]
        self.smart = SmartPerturbation(adv_opts, dist_ctx) if adv_opts.adv_train else None
        kernel = resolve_optimizer_kernel(train_opts.optimizer_kernel, device.type, total_updates)
        self.optimizer = build_optimizer(self.network, replace(train_opts, optimizer_kernel=kernel))
        self.total_updates = total_updates  # the learning-rate schedule's length, in optimizer updates
        self.scheduler = build_scheduler(self.optimizer, train_opts, total_updates)
        self.scaler = torch.amp.GradScaler(device.type, enabled=train_opts.fp16)
        # Training forwards on a CPU draw their dropout masks from 32 random bits per element (--cpu_dropout).
        self.dropout_mode = FastCpuDropout if device.type == "cpu" and train_opts.cpu_dropout == "fast" else contextlib.nullcontext
        self.amp_dtype = autocast_dtype(train_opts)
        self.updates = 0
        self.micro_steps = 0
        self.bad_steps = 0
        # Whether the latest ``update`` call stepped the optimizer (the loop logs and saves on those).
        self.stepped = False

    @classmethod
    def for_run(
        cls,
        network: SANBertNetwork,
        task_defs: list[TaskDef],
        train_opts: TrainOptions,
        adv_opts: AdvOptions,
        run_batches: int,
        device: torch.device,
        dist_ctx: DistContext = DistContext(),
    ) -> MTDNNModel:
        """A model whose schedule spans the run's real number of updates, from its number of batches in all epochs."""
        updates = total_updates(run_batches, train_opts.grad_accumulation_step)
        return cls(network, task_defs, train_opts, adv_opts, updates, device, dist_ctx)

    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.network.parameters() if p.requires_grad]

    def update(self, batch: Batch) -> float | None:
        """Forward/backward one micro-batch; step the optimizer every ``grad_accumulation_step``.

        Returns the loss, or None when it was not finite and the update was skipped;
        ``self.stepped`` says whether the optimizer stepped.
        """
        self.stepped = False
        batch = batch.to(self.device)
        loss = self._training_loss(batch)
        if not all_finite(loss, self.dist):
            return self._skip_non_finite(batch)
        self.bad_steps = 0
        self.scaler.scale(loss.float() / self.opts.grad_accumulation_step).backward()
        self.micro_steps += 1
        if self.micro_steps % self.opts.grad_accumulation_step == 0:
            self._optimizer_step()
        return loss.item()

    def _training_loss(self, batch: Batch) -> torch.Tensor:
        """The loss an update backpropagates: the task's loss (and KD term), plus SMART's term under ``--adv_train``."""
        self.network.train()
        task_id = self.task_ids[batch.task_def.name]
        with autocast_context(self.device, self.amp_dtype), self.dropout_mode():
            logits, embedding = self.forward_network(
                batch.input_ids, batch.token_type_ids, batch.attention_mask, task_id, return_embedding=True
            )
            loss = self._task_loss(logits, batch, task_id)
            if self.smart is not None:
                adv_term = self.smart.adversarial_loss(
                    self.forward_network, batch, task_id, logits, embedding, self.handlers[task_id],
                    self.adv_criteria[task_id],
                )
                if adv_term is not None:
                    loss = loss + adv_term
        return loss

    def probe_memory(self, batch: Batch) -> None:
        """Forward and backward one batch as an update does, then drop its gradients: nothing is stepped
        and the RNG states are untouched. Call it between updates (no gradients pending)."""
        if self.micro_steps:
            raise RuntimeError("probe_memory between micro-steps would mix its gradients into the pending update")
        with self._forked_rng():
            loss = self._training_loss(batch.to(self.device))
            self.scaler.scale(loss.float()).backward()
        self.optimizer.zero_grad(set_to_none=True)

    def _task_loss(self, logits: torch.Tensor, batch: Batch, task_id: int) -> torch.Tensor:
        """The task's loss of a batch, plus the KD term under ``--mkd_opt`` when the batch carries soft labels."""
        handler = self.handlers[task_id]
        loss = handler.compute_loss(self.criteria[task_id], logits, batch)
        if self.opts.mkd_opt > 0 and batch.soft_labels is not None:
            student = handler.distill_targets_view(logits, batch)
            loss = loss + self.kd_criteria[task_id].distill(student, batch.soft_labels)
        return loss

    def check_batch(self, batch: Batch) -> None:
        """Forward one batch and compute its losses without training (eval mode, RNG states untouched).

        A head, loss or input that does not fit the data fails here, before the first update.
        """
        with self._forked_rng(), torch.no_grad():
            self._task_loss(self.predict(batch), batch.to(self.device), self.task_ids[batch.task_def.name])

    def _forked_rng(self) -> contextlib.AbstractContextManager:
        """The CPU's and this device's random states, restored on exit."""
        return torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else [])

    def _skip_non_finite(self, batch: Batch) -> None:
        self.bad_steps += 1
        logger.warning(
            "non-finite loss on %s (update %d): update skipped (%d in a row)", batch.dataset, self.updates, self.bad_steps
        )
        # Gradients already accumulated for this update belong to a diverging step: drop them.
        self.optimizer.zero_grad(set_to_none=True)
        self.micro_steps = 0
        if self.bad_steps >= self.opts.max_bad_steps:
            raise NonFiniteLossError(
                f"training stopped: {self.bad_steps} non-finite losses in a row at update {self.updates}; "
                "lower --learning_rate, or use --bf16 instead of --fp16"
            )
        return None

    def _optimizer_step(self) -> None:
        params = self._trainable()
        if self.dist.enabled and not self.dist.fsdp:  # FSDP reduce-scatters in every backward
            # Once per update, after the last accumulating micro-step: each rank's shard mean → the global mean.
            all_reduce_gradients(params, self.dist.world_size)
        self.scaler.unscale_(self.optimizer)
        if self.opts.grad_clipping > 0:
            for param in params:
                if param.grad is not None:
                    torch.nn.utils.clip_grad_norm_(param, self.opts.grad_clipping)
        if self.opts.global_grad_clipping > 0:
            clip_grad_norm_(params, self.opts.global_grad_clipping)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.updates += 1
        self.micro_steps = 0
        self.stepped = True

    def predict(self, batch: Batch) -> torch.Tensor:
        """Logits of one evaluation batch (network in eval mode, the run's precision)."""
        settings = EvalSettings(self.device, self.amp_dtype, dist=self.dist)
        return predict_logits(self.network, batch, self.task_ids[batch.task_def.name], settings)

    @property
    def learning_rate(self) -> float:
        """The current learning rate of the first parameter group."""
        return self.optimizer.param_groups[0]["lr"]

    def training_state(self) -> dict[str, Any]:
        """Everything an exact resume needs besides the data order and RNG states.

        An update still accumulating (``grad_accumulation_step`` > 1 across an epoch end) keeps its
        micro-step count and gradients, so the resumed run finishes it as the straight run does.
        Under torchrun every rank must call this (the pending gradients are averaged across ranks, and
        FSDP gathers its shards); under FSDP only rank 0 gets the weights and optimizer state.
        """
        if self.dist.fsdp:
            reshard(self.network)  # parameters (and their gradients) as shards
        pending = {
            name: full_gradient(param.grad).detach().clone()
            for name, param in self.network.named_parameters()
            if self.micro_steps and param.grad is not None
        }
        if self.dist.enabled and not self.dist.fsdp:
            # Each rank's gradients so far are of its own shards: the checkpoint keeps their mean, which
            # every rank of the resumed run (of any size) restarts from.
            average_in_place(list(pending.values()), self.dist.world_size)
        if self.dist.fsdp:
            weights, optimizer_state = full_training_state(self.network, self.optimizer)
        else:
            weights, optimizer_state = self.network.state_dict(), self.optimizer.state_dict()
        return {
            "state": weights,
            "optimizer": optimizer_state,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "updates": self.updates,
            "micro_steps": self.micro_steps,
            "pending_grads": pending,
        }

    def load_training_state(self, checkpoint: dict[str, Any]) -> None:
        """Restore network, optimizer, schedule, scaler, update count and a pending update."""
        if self.dist.fsdp:
            load_full_training_state(self.network, self.optimizer, checkpoint["state"], checkpoint["optimizer"])
        else:
            self.network.load_state_dict(checkpoint["state"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.updates = int(checkpoint["updates"])
        self.micro_steps = int(checkpoint.get("micro_steps", 0))
        for name, param in self.network.named_parameters():
            grad = checkpoint.get("pending_grads", {}).get(name)
            param.grad = sharded_like(param, grad) if grad is not None else None


def total_updates(run_batches: int, grad_accumulation_step: int) -> int:
    """The real number of optimizer updates of a run of ``run_batches`` batches (the LR schedule's length)."""
    # Micro-steps carry across epochs, so the count is over the whole run.
    return max(1, run_batches // grad_accumulation_step)

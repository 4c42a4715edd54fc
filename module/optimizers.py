"""Adamax variants used by MT-DNN (SPEC §6).

``Adamax`` is the BERT-style Adamax of MT-DNN v0.1, the optimizer behind the paper's numbers:
    m ← β1·m + (1 − β1)·g
    u ← max(β2·u, |g| + eps)
    p ← p − lr·(m / (u + eps) + wd·p)
with no bias correction. ``AdamaxW`` is the later bias-corrected variant with decoupled weight
decay; with weight_decay 0 it takes the same steps as ``torch.optim.Adamax``.
Learning-rate schedules are applied from outside (torch LR schedulers write ``group["lr"]``).

Two ways to run a step: eager multi-tensor passes (the default; on a CPU in cache-sized blocks), or,
with ``compiled=True`` on a CPU, one ``torch.compile``-generated loop per tensor that reads each
element of the parameter, gradient and state once (``--optimizer_kernel``, bench/README.md; tensors
of fewer than ``COMPILED_MIN_ELEMENTS`` still take the eager passes). The compiled loop computes the
same formula; the compiler may fuse a multiply and an add, so its numbers can differ from the eager
passes in the last bit of an element.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.optim import Optimizer

# A step is ten elementwise passes over every parameter and its state: on a CPU, bound by memory
# traffic. There they run block by block, each block of about this many elements (views of the
# tensors) staying in cache through all ten passes: the same operations on the same elements, so
# the same numbers, with a fraction of the trips to memory (bench/README.md). On a GPU the passes
# run over whole tensors (multi-tensor kernels).
CPU_BLOCK_ELEMENTS = 1 << 18
# The compiled kernel (``compiled=True``) takes tensors of at least this many elements; below it a call costs
# more than the work (biases, LayerNorm weights: ~60 µs a call against ~2 µs a tensor in the eager passes), so
# small tensors join the eager passes: 21 → 18 ms a step over MiniLM's parameters (bench/README.md).
COMPILED_MIN_ELEMENTS = 1 << 14

Row = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]  # param, grad, exp_avg, exp_inf, step

logger = logging.getLogger(__name__)


def _check_hyperparameters(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """Raise ValueError for a hyper-parameter outside its valid range."""
    if lr < 0.0:
        raise ValueError(f"invalid learning rate {lr}")
    if eps < 0.0:
        raise ValueError(f"invalid eps {eps}")
    for index, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"invalid beta at index {index}: {beta}")
    if weight_decay < 0.0:
        raise ValueError(f"invalid weight_decay {weight_decay}")


def cache_blocks(rows: list[Row], block: int) -> Iterator[list[Row]]:
    """``rows`` regrouped into blocks of about ``block`` elements: a larger tensor (with its gradient and
    state) is cut into flat views, smaller ones are gathered; every element appears exactly once."""
    pending: list[Row] = []
    size = 0
    for row in rows:
        tensors = row[:4]
        # Plain contiguous tensors only: a view of a tensor subclass (FSDP's DTensor shards) may not write back.
        if tensors[0].numel() > block and all(type(t.data) is torch.Tensor and t.is_contiguous() for t in tensors):
            pieces = [(*views, row[4]) for views in zip(*(t.view(-1).split(block) for t in tensors))]
        else:
            pieces = [row]
        for piece in pieces:
            pending.append(piece)
            size += piece[0].numel()
            if size >= block:
                yield pending
                pending, size = [], 0
    if pending:
        yield pending


def _moments_in_place(grad: torch.Tensor, exp_avg: torch.Tensor, exp_inf: torch.Tensor, beta1: torch.Tensor,
                      one_minus_beta1: torch.Tensor, beta2: torch.Tensor, eps: torch.Tensor) -> None:
    """m ← β1·m + (1 − β1)·g and u ← max(β2·u, |g| + eps) on one tensor (the compiled kernels' shared part)."""
    exp_avg.mul_(beta1).add_(grad * one_minus_beta1)
    torch.maximum(exp_inf.mul_(beta2), grad.abs() + eps, out=exp_inf)


def _adamax_kernel(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_inf: torch.Tensor,
                   beta1: torch.Tensor, one_minus_beta1: torch.Tensor, beta2: torch.Tensor, eps: torch.Tensor,
                   lr: torch.Tensor, weight_decay: torch.Tensor) -> None:
    """``Adamax``'s step on one tensor: p ← p − lr·(m / (u + eps) + wd·p)."""
    _moments_in_place(grad, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps)
    param.sub_(lr * (exp_avg / (exp_inf + eps) + weight_decay * param))


def _adamaxw_kernel(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_inf: torch.Tensor,
                    beta1: torch.Tensor, one_minus_beta1: torch.Tensor, beta2: torch.Tensor, eps: torch.Tensor,
                    decay: torch.Tensor, step_size: torch.Tensor) -> None:
    """``AdamaxW``'s step on one tensor: p ← p·(1 − lr·wd), then p ← p − lr / (1 − β1^t) · m / u."""
    param.mul_(decay)
    _moments_in_place(grad, exp_avg, exp_inf, beta1, one_minus_beta1, beta2, eps)
    param.add_(step_size * (exp_avg / exp_inf))


@functools.cache
def compiled_kernel(kernel: Callable[..., None]) -> Callable[..., None]:
    """``kernel`` compiled once per process for tensors of any length (``dynamic``: one loop for every size)."""
    return torch.compile(kernel, dynamic=True, fullgraph=True)


def _scalar(value: float) -> torch.Tensor:
    """A hyper-parameter as a 0-dim float32 tensor: the compiled loop takes it as an input, not a constant
    (a new learning rate must not recompile)."""
    return torch.tensor(value, dtype=torch.float32)


class _AdamaxBase(Optimizer):
    """Shared bookkeeping: hyper-parameters, closures, each group's parameters with gradients and state."""

    _kernel: Callable[..., None]  # the variant's one-tensor step, compiled under ``compiled=True``

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
        compiled: bool = False,
    ):
        _check_hyperparameters(lr, betas, eps, weight_decay)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})
        self.cpu_block_elements = CPU_BLOCK_ELEMENTS  # 0: whole tensors on a CPU too (bench/train_bench.py's on/off)
        # Whether CPU float32 tensors take the compiled one-pass kernel; it turns False (with a warning) when
        # the kernel cannot be compiled here, and the eager passes run instead.
        self.compiled = compiled
        self.compiled_min_elements = COMPILED_MIN_ELEMENTS
        self._compiled_ready = False

    def _group_tensors(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], ...]:
        """Parameters that have a gradient, their gradients, first moments and infinity norms."""
        params, grads, exp_avgs, exp_infs = [], [], [], []
        for param in group["params"]:
            if param.grad is None:
                continue
            if param.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            state = self.state[param]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_inf"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["step"] += 1
            params.append(param)
            grads.append(param.grad)
            exp_avgs.append(state["exp_avg"])
            exp_infs.append(state["exp_inf"])
        return params, grads, exp_avgs, exp_infs

    @staticmethod
    def _update_moments(
        grads: list[torch.Tensor],
        exp_avgs: list[torch.Tensor],
        exp_infs: list[torch.Tensor],
        beta1: float,
        beta2: float,
        eps: float,
    ) -> None:
        """m ← β1·m + (1 − β1)·g and u ← max(β2·u, |g| + eps), in place."""
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        abs_grads = torch._foreach_abs(grads)
        torch._foreach_add_(abs_grads, eps)
        torch._foreach_mul_(exp_infs, beta2)
        torch._foreach_maximum_(exp_infs, abs_grads)

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                      exp_infs: list[torch.Tensor], steps: list[int]) -> None:
        """Apply the variant's parameter update once the moments are updated (``steps``: each tensor's step count)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Take one optimisation step; ``closure`` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_infs = self._group_tensors(group)
            if not params:
                continue
            rows = list(zip(params, grads, exp_avgs, exp_infs, [self.state[p]["step"] for p in params]))
            if self.compiled and self._compiled_kernel_ready():
                rows = self._compiled_step(group, rows)
            if not rows:
                continue
            blocked = params[0].device.type == "cpu" and self.cpu_block_elements > 0
            beta1, beta2 = group["betas"]
            for block in cache_blocks(rows, self.cpu_block_elements) if blocked else [rows]:
                block_params, block_grads, block_avgs, block_infs, steps = (list(column) for column in zip(*block))
                self._before_moments(group, block_params)
                self._update_moments(block_grads, block_avgs, block_infs, beta1, beta2, group["eps"])
                self._update_group(group, block_params, block_avgs, block_infs, steps)
        return loss

    def _before_moments(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """Hook for work on the parameters before the moments change (decoupled weight decay)."""

    def _compiled_kernel_ready(self) -> bool:
        """Compile the kernel on first use (on throwaway tensors); False if it cannot be built."""
        if not self._compiled_ready:
            started = time.perf_counter()
            try:
                kernel = compiled_kernel(type(self)._kernel)
                # One loop for every length of two and more. The compiler sizes the loop's threading by the first
                # length it sees: a large one, so that big tensors are split over the threads.
                kernel(*(torch.ones(1 << 20) for _ in range(4)), *(_scalar(0.5) for _ in range(6)))
            # No C++ compiler, an unsupported platform: torch.compile fails with many exception types, and the
            # eager passes still work.
            except Exception as err:  # noqa: BLE001
                logger.warning("compiled %s step unavailable (%s); using the eager passes",
                               type(self).__name__, str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
                self.compiled = False
                return False
            self._compiled_ready = True
            logger.info("%s: compiled update kernel ready in %.1f s (--optimizer_kernel)", type(self).__name__,
                        time.perf_counter() - started)
        return True

    def _compiled_step(self, group: dict[str, Any], rows: list[Row]) -> list[Row]:
        """Step the rows the compiled kernel takes (plain contiguous CPU float32 tensors of at least
        ``compiled_min_elements``); return the others."""
        kernel = compiled_kernel(type(self)._kernel)
        beta1, beta2 = group["betas"]
        shared = [_scalar(beta1), _scalar(1.0 - beta1), _scalar(beta2), _scalar(group["eps"])]
        per_step: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        rest = []
        for row in rows:
            tensors, step = row[:4], row[4]
            if tensors[0].numel() >= self.compiled_min_elements and all(
                    type(t.data) is torch.Tensor and t.device.type == "cpu" and t.dtype == torch.float32
                    and t.is_contiguous() for t in tensors):
                if step not in per_step:
                    per_step[step] = self._kernel_scalars(group, step)
                # Detached flat views: the same storage, and one compiled loop whatever the shape.
                kernel(*(t.detach().view(-1) for t in tensors), *shared, *per_step[step])
            else:
                rest.append(row)
        return rest

    def _kernel_scalars(self, group: dict[str, Any], step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The variant's two last kernel arguments for a tensor at ``step``."""
        raise NotImplementedError


class Adamax(_AdamaxBase):
    """BERT-style Adamax of MT-DNN v0.1: no bias correction, weight decay added to the update."""

    _kernel = _adamax_kernel

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 5e-5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        compiled: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, compiled)

    def _kernel_scalars(self, group: dict[str, Any], step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _scalar(group["lr"]), _scalar(group["weight_decay"])

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                      exp_infs: list[torch.Tensor], steps: list[int]) -> None:
        """p ← p − lr·(m / (u + eps) + wd·p)."""
        updates = torch._foreach_div(exp_avgs, torch._foreach_add(exp_infs, group["eps"]))
        if group["weight_decay"] != 0.0:
            torch._foreach_add_(updates, params, alpha=group["weight_decay"])
        torch._foreach_add_(params, updates, alpha=-group["lr"])


class AdamaxW(_AdamaxBase):
    """Adamax with bias correction of the first moment and decoupled (AdamW-style) weight decay."""

    _kernel = _adamaxw_kernel

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        compiled: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, compiled)

    def _kernel_scalars(self, group: dict[str, Any], step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _scalar(1.0 - group["lr"] * group["weight_decay"]), _scalar(-group["lr"] / (1.0 - group["betas"][0] ** step))

    def _before_moments(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """p ← p·(1 − lr·wd), decoupled from the gradient."""
        if group["weight_decay"] != 0.0:
            torch._foreach_mul_(params, 1.0 - group["lr"] * group["weight_decay"])

    def _update_group(self, group: dict[str, Any], params: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                      exp_infs: list[torch.Tensor], steps: list[int]) -> None:
        """p ← p − lr / (1 − β1^t) · m / u."""
        beta1 = group["betas"][0]
        # Parameters may have joined the group at different times, so steps can differ.
        step_sizes = [-group["lr"] / (1.0 - beta1**step) for step in steps]
        torch._foreach_addcdiv_(params, exp_avgs, exp_infs, step_sizes)

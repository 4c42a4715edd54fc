"""Dropout masks on a CPU from 32 random bits per element (``--cpu_dropout fast``).

torch's CPU dropout draws one Bernoulli sample per element: a serial loop over the elements (MKL's
sampler on Intel CPUs), a sixth of a MiniLM training update's time on 2 cores (bench/README.md).
Here one serial draw of 64 random bits from torch's generator serves two elements, and the
comparison with p·2³² and the scaling run as ordinary (parallel, vectorized) tensor operations.
The masks have the same distribution (each element kept with probability 1 − p, to within 2⁻³²,
independently) and the kept elements are scaled by 1/(1 − p) as torch does; only the random stream
differs, so a seed draws other masks than torch's sampler does. GPUs keep torch's fused kernel.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

CPU_DROPOUTS = ("fast", "torch")


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A boolean CPU tensor of ``shape``, each element True with probability 1 − ``p`` (torch's default generator)."""
    count = math.prod(shape)
    # random_(-2**63, None) draws over int64's whole range: both 32-bit halves of each word are uniform.
    words = torch.empty((count + 1) // 2, dtype=torch.int64).random_(-(2**63), None)
    bits = words.view(torch.int32)[:count].view(shape)
    return bits >= round(p * 2**32) - 2**31


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of ``x`` with a :func:`keep_mask`: x · mask / (1 − p), differentiable in ``x``."""
    scale = torch.ones((), dtype=x.dtype).div_(1.0 - p)  # 1/(1 − p) rounded to x's dtype, as torch's dropout has it
    return x * (keep_mask(x.shape, p) * scale)


def _dropout_arguments(args: tuple, kwargs: dict) -> tuple[torch.Tensor, float, bool, bool]:
    """``F.dropout``'s (input, p, training, inplace) from a call's positional and keyword arguments."""
    names = ("input", "p", "training", "inplace")
    values = dict(zip(names, args), **kwargs)
    return values["input"], float(values.get("p", 0.5)), bool(values.get("training", True)), bool(values.get("inplace", False))


class FastCpuDropout(TorchFunctionMode):
    """While active, ``F.dropout`` of a CPU tensor in training mode (``nn.Dropout`` and the attention
    functions of ``transformers`` call it) draws its mask with :func:`keep_mask`; every other call,
    and dropout at evaluation, on a GPU or in place, runs as it would without the mode."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.dropout:
            x, p, training, inplace = _dropout_arguments(args, kwargs)
            if training and 0.0 < p < 1.0 and not inplace and x.device.type == "cpu" and x.is_floating_point():
                return dropout(x, p)
        return func(*args, **kwargs)

"""Typed options of a training run, one dataclass per concern (SPEC §9).

``train.py`` builds them from argparse, saves them to ``config.json`` and passes each one
down explicitly; nothing reads a global options dict.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from mt_dnn.tasks.base import SANOptions


@dataclass(frozen=True)
class DataOptions:
    """Where data comes from and how it is batched."""

    data_dir: str = "data/canonical_data/bert-base-uncased"
    task_def: str = "experiments/glue/glue_task_def.yml"
    train_datasets: tuple[str, ...] = ("mnli",)
    test_datasets: tuple[str, ...] = ("mnli_matched", "mnli_mismatched")
    max_seq_len: int = 512
    do_padding: bool = False
    batch_size: int = 8
    batch_size_eval: int = 8
    mix_opt: int = 0
    ratio: float = 0.0
    sampling: str = "proportional"
    sampling_temperature: float = 1.0
    dropout_w: float = 0.0
    bin_on: bool = False
    bin_size: int = 64
    bin_grow_ratio: float = 0.5
    data_sort_on: bool = False
    group_by_length: bool = True
    max_tokens_per_batch: int = 0
    pad_to_multiple_of: int = 1  # resolved: train.py turns --pad_to_multiple_of auto into a number
    dataloader_num_workers: int = 2


@dataclass(frozen=True)
class ModelOptions:
    """The shared encoder and the task heads."""

    init_checkpoint: str = "bert-base-uncased"
    encoder_type: int = 1
    transformer_cache: str | None = None
    bert_dropout_p: float = 0.1
    num_hidden_layers: int = -1
    update_bert_opt: int = 0
    dropout_p: float = 0.1
    pooler_actf: str = "tanh"
    init_ratio: float = 1.0
    vb_dropout: bool = True
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    san: SANOptions = field(default_factory=SANOptions)


@dataclass(frozen=True)
class TrainOptions:
    """The update step: optimizer, schedule, precision, clipping, distillation."""

    epochs: int = 5
    optimizer: str = "adamax"
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    momentum: float = 0.0
    warmup: float = 0.1
    scheduler_type: int = 0
    grad_accumulation_step: int = 1
    grad_clipping: float = 0.0
    global_grad_clipping: float = 1.0
    fp16: bool = False
    bf16: bool = False
    mkd_opt: int = 0
    seed: int = 2018
    max_bad_steps: int = 10
    optimizer_kernel: str = "auto"
    cpu_dropout: str = "fast"


@dataclass(frozen=True)
class AdvOptions:
    """SMART adversarial training (SPEC §6)."""

    adv_train: bool = False
    adv_opt: int = 0
    adv_norm_level: int = 0
    adv_p_norm: str = "inf"
    adv_alpha: float = 1.0
    adv_k: int = 1
    adv_step_size: float = 1e-5
    adv_noise_var: float = 1e-5
    adv_epsilon: float = 1e-6


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` runs bfloat16 matrix products natively (CPU: AVX-512 BF16 or AMX; CUDA: compute ≥ 8.0)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:  # not Linux: no cheap way to tell, stay in float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device_type: str) -> str:
    """``--precision auto`` → ``bf16`` where ``device_type`` runs it natively, else ``fp32``; other values as given."""
    if precision == "auto":
        return "bf16" if native_bf16(device_type) else "fp32"
    return precision


def resolve_attention(kernel: str, device_type: str) -> str:
    """``--attn_implementation auto`` → ``eager`` on a CPU (faster there for BERT-sized batches, bench/README.md),
    ``sdpa`` elsewhere; other values as given."""
    if kernel == "auto":
        return "eager" if device_type == "cpu" else "sdpa"
    return kernel


# Under bf16/fp16 on a CPU every matrix product goes through oneDNN, which compiles a kernel per shape (~1 ms
# each, ~0.45 MB kept in its caches); an update of one batch length needs about 20. Lengths rounded up to a
# multiple of 8 leave at most 16 distinct ones below 128 tokens, whose kernels stay cached (bench/README.md).
CPU_REDUCED_PRECISION_PAD_MULTIPLE = 8


def resolve_pad_to_multiple_of(value: str | int, device_type: str, precision: str) -> int:
    """``--pad_to_multiple_of auto`` → ``CPU_REDUCED_PRECISION_PAD_MULTIPLE`` for a bf16/fp16 run on a CPU, 1 (each
    batch as long as its longest example) otherwise; a number as given."""
    if value != "auto":
        return int(value)
    return CPU_REDUCED_PRECISION_PAD_MULTIPLE if device_type == "cpu" and precision in ("bf16", "fp16") else 1


OPTIMIZER_KERNELS = ("auto", "compiled", "eager")
# A compiled Adamax update saves ~20-30 ms per MiniLM update on 2 CPU cores and costs ~3 s to compile once per
# process (~13 s with torch's on-disk compile cache empty): it pays from a few hundred updates on (bench/README.md).
COMPILED_KERNEL_MIN_UPDATES = 500


def resolve_optimizer_kernel(kernel: str, device_type: str, total_updates: int) -> str:
    """``--optimizer_kernel auto`` → ``compiled`` on a CPU for a run of at least ``COMPILED_KERNEL_MIN_UPDATES``
    optimizer updates, ``eager`` otherwise; other values as given."""
    if kernel == "auto":
        return "compiled" if device_type == "cpu" and total_updates >= COMPILED_KERNEL_MIN_UPDATES else "eager"
    return kernel


def rebuild_attention(kernel: str | None) -> str:
    """The kernel to rebuild a saved encoder with: the run's own, SDPA when that needs a GPU package (flash)."""
    return kernel if kernel in ("eager", "sdpa") else "sdpa"


def autocast_dtype(opts: TrainOptions) -> torch.dtype | None:
    """The autocast dtype of ``--fp16``/``--bf16``, or None for float32."""
    return torch.float16 if opts.fp16 else torch.bfloat16 if opts.bf16 else None


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op for float32 (``dtype`` None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def options_to_dict(options: Any) -> dict[str, Any]:
    """A JSON-safe dict of an options dataclass (tuples become lists)."""
    return dataclasses.asdict(options)


def model_options_from_dict(data: dict[str, Any]) -> ModelOptions:
    """Inverse of ``options_to_dict`` for ``ModelOptions`` (as stored in checkpoints)."""
    values = dict(data)
    values["san"] = SANOptions(**values.get("san", {}))
    return ModelOptions(**values)

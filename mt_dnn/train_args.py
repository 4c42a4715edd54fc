"""The flags of ``train.py`` (SPEC §9) and their split into the typed option objects.

``build_parser`` defines every flag with its default; ``options_from_args`` checks flag
combinations and builds ``RunOptions``, ``DataOptions``, ``ModelOptions``, ``TrainOptions`` and
``AdvOptions``, which ``train.py`` passes down explicitly.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, fields
from typing import Any

import torch

from data_utils.errors import MTDNNInputError
from mt_dnn.options import AdvOptions, DataOptions, ModelOptions, TrainOptions
from mt_dnn.tasks import SANOptions

logger = logging.getLogger("mt_dnn")


def str2bool(value: str) -> bool:
    """argparse type for ``true/false`` flags such as ``--vb_dropout``."""
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


NO_EFFECT = "accepted for compatibility with upstream scripts; no effect here"


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """Every flag of SPEC §9 with its default."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--log_file", default="mt-dnn-train.log")
    data.add_argument("--tensorboard", action="store_true")
    data.add_argument("--tensorboard_logdir", default="tensorboard_logdir")
    data.add_argument("--init_checkpoint", default="bert-base-uncased")
    data.add_argument("--data_dir", default="data/canonical_data/bert-base-uncased")
    data.add_argument("--task_def", default="experiments/glue/glue_task_def.yml")
    data.add_argument("--train_datasets", default="mnli")
    data.add_argument("--test_datasets", default="mnli_matched,mnli_mismatched")
    data.add_argument("--glue_format_on", action="store_true")
    data.add_argument("--mkd_opt", type=int, default=0)
    data.add_argument("--do_padding", action="store_true")
    data.add_argument("--dataloader_num_workers", type=int, default=2)
    data.add_argument("--transformer_cache", default=".cache")
    data.add_argument("--tokenizer", default=None, help="tokenizer id/folder (default: --init_checkpoint)")
    model = p.add_argument_group("model")
    model.add_argument("--update_bert_opt", type=int, default=0)
    model.add_argument("--multi_gpu_on", action="store_true")
    model.add_argument("--mem_cum_type", default="simple")
    model.add_argument("--answer_num_turn", type=int, default=5)
    model.add_argument("--answer_mem_drop_p", type=float, default=0.1)
    model.add_argument("--answer_att_hidden_size", type=int, default=128)
    model.add_argument("--answer_att_type", default="bilinear", help=NO_EFFECT)
    model.add_argument("--answer_rnn_type", default="gru", help=NO_EFFECT)
    model.add_argument("--answer_sum_att_type", default="bilinear")
    model.add_argument("--answer_merge_opt", type=int, default=1, help=NO_EFFECT)
    model.add_argument("--answer_mem_type", type=int, default=1)
    model.add_argument("--max_answer_len", type=int, default=10, help="longest answer span (tokens) span decoding considers")
    model.add_argument("--answer_dropout_p", type=float, default=0.1, help="accepted; unused, as upstream")
    model.add_argument("--answer_weight_norm_on", action="store_true")
    model.add_argument("--dump_state_on", action="store_true", help=NO_EFFECT)
    model.add_argument("--answer_opt", type=int, default=1, help=NO_EFFECT)
    model.add_argument("--pooler_actf", default="tanh")
    model.add_argument("--mtl_opt", type=int, default=0, help=NO_EFFECT)
    model.add_argument("--ratio", type=float, default=0.0)
    model.add_argument("--mix_opt", type=int, default=0)
    model.add_argument("--max_seq_len", type=int, default=512)
    model.add_argument("--init_ratio", type=float, default=1.0, help="new heads' linear weights ~ N(0, (0.02·r)²)")
    model.add_argument("--encoder_type", type=int, default=1, help=NO_EFFECT + " (the encoder class comes from its config)")
    model.add_argument("--num_hidden_layers", type=int, default=-1)
    model.add_argument("--vb_dropout", type=str2bool, default=True)
    model.add_argument("--sampling", choices=("proportional", "temperature"), default="proportional")
    model.add_argument("--sampling_temperature", type=float, default=1.0)
    model.add_argument("--bin_on", action="store_true")
    model.add_argument("--bin_size", type=int, default=64)
    model.add_argument("--bin_grow_ratio", type=float, default=0.5)
    model.add_argument("--data_sort_on", action="store_true")
    model.add_argument("--name", default="farmer", help=NO_EFFECT)
    # Upstream's masked-LM pre-training flags: accepted, MaskLM tasks are rejected by the registry.
    model.add_argument("--bert_model_type", default="bert-base-uncased", help=NO_EFFECT)
    model.add_argument("--do_lower_case", action="store_true", help=NO_EFFECT)
    model.add_argument("--masked_lm_prob", type=float, default=0.15, help=NO_EFFECT)
    model.add_argument("--short_seq_prob", type=float, default=0.2, help=NO_EFFECT)
    model.add_argument("--max_predictions_per_seq", type=int, default=128, help=NO_EFFECT)
    train = p.add_argument_group("training")
    train.add_argument(
        "--cuda",
        action=argparse.BooleanOptionalAction,
        default=torch.cuda.is_available(),
        help="run on the GPU (default: when one is available); --no-cuda runs on the CPU",
    )
    train.add_argument("--log_per_updates", type=int, default=500)
    train.add_argument("--save_per_updates", type=int, default=10000)
    train.add_argument("--save_per_updates_on", action="store_true")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch_size", type=int, default=8)
    train.add_argument("--batch_size_eval", type=int, default=8)
    train.add_argument("--optimizer", default="adamax")
    train.add_argument("--grad_clipping", type=float, default=0.0)
    train.add_argument("--global_grad_clipping", type=float, default=1.0)
    train.add_argument("--weight_decay", type=float, default=0.01)
    train.add_argument("--learning_rate", type=float, default=5e-5)
    train.add_argument("--momentum", type=float, default=0.0)
    train.add_argument("--warmup", type=float, default=0.1)
    train.add_argument("--warmup_schedule", default="warmup_linear")
    train.add_argument("--adam_eps", type=float, default=1e-6)
    train.add_argument("--dropout_p", type=float, default=0.1)
    train.add_argument("--dropout_w", type=float, default=0.0)
    train.add_argument("--bert_dropout_p", type=float, default=0.1)
    train.add_argument("--model_ckpt", default="checkpoints/model_0.pt")
    train.add_argument("--resume", action="store_true")
    train.add_argument("--scheduler_type", type=int, default=0)
    train.add_argument("--output_dir", default="checkpoint")
    train.add_argument("--seed", type=int, default=2018)
    train.add_argument("--grad_accumulation_step", type=int, default=1)
    train.add_argument("--fp16", action="store_true")
    train.add_argument("--fp16_opt_level", default="O1", help=NO_EFFECT)
    train.add_argument("--bf16", action="store_true")
    train.add_argument("--adv_train", action="store_true")
    train.add_argument("--adv_opt", type=int, default=0, help=NO_EFFECT)
    train.add_argument("--adv_norm_level", type=int, default=0)
    train.add_argument("--adv_p_norm", default="inf")
    train.add_argument("--adv_alpha", type=float, default=1.0)
    train.add_argument("--adv_k", type=int, default=1)
    train.add_argument("--adv_step_size", type=float, default=1e-5)
    train.add_argument("--adv_noise_var", type=float, default=1e-5)
    train.add_argument("--adv_epsilon", type=float, default=1e-6)
    train.add_argument("--encode_mode", action="store_true")
    train.add_argument("--debug", action="store_true", help=NO_EFFECT)
    dist = p.add_argument_group("distributed")
    dist.add_argument("--local_rank", "--local-rank", type=int, default=int(os.environ.get("LOCAL_RANK", -1)))
    dist.add_argument("--world_size", type=int, default=1, help=NO_EFFECT)
    dist.add_argument("--master_addr", default="localhost", help=NO_EFFECT)
    dist.add_argument("--master_port", default="6600", help=NO_EFFECT)
    dist.add_argument("--backend", default="nccl", help=NO_EFFECT)
    return p


# Upstream's --warmup_schedule names mapped onto --scheduler_type.
WARMUP_SCHEDULES = {"warmup_linear": 0, "warmup_cosine": 1, "warmup_constant": 2, "warmup_polynomial": 3}


@dataclass(frozen=True)
class RunOptions:
    """Run-level options: where outputs go, what to evaluate, how to resume."""

    output_dir: str
    log_file: str
    cuda: bool
    resume: bool
    model_ckpt: str
    glue_format_on: bool
    log_per_updates: int
    save_per_updates: int
    save_per_updates_on: bool
    tensorboard: bool
    tensorboard_logdir: str
    tokenizer: str | None
    encode_mode: bool


def _pick(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)


def options_from_args(args: argparse.Namespace) -> tuple[RunOptions, DataOptions, ModelOptions, TrainOptions, AdvOptions]:
    """Split the parsed flags into the typed option objects; bad combinations fail here."""
    split = lambda text: tuple(name for name in text.split(",") if name)  # noqa: E731
    if args.fp16 and args.bf16:
        raise MTDNNInputError("--fp16 and --bf16 are exclusive: pick one")
    if args.grad_accumulation_step < 1:
        raise MTDNNInputError("--grad_accumulation_step must be at least 1")
    if args.multi_gpu_on or args.local_rank >= 0 or args.world_size > 1:
        raise MTDNNInputError("multi-GPU training (--multi_gpu_on, torchrun/--local_rank) is not available yet")
    if args.warmup_schedule not in WARMUP_SCHEDULES:
        raise MTDNNInputError(f"--warmup_schedule must be one of {sorted(WARMUP_SCHEDULES)}")
    if args.fp16_opt_level != "O1":
        logger.info("--fp16_opt_level %s is ignored: --fp16 uses torch.autocast with a GradScaler", args.fp16_opt_level)
    scheduler_type = args.scheduler_type
    if args.scheduler_type == 0 and args.warmup_schedule != "warmup_linear":
        scheduler_type = WARMUP_SCHEDULES[args.warmup_schedule]
    run = _pick(RunOptions, args)
    data = _pick(
        DataOptions,
        args,
        train_datasets=split(args.train_datasets),
        test_datasets=split(args.test_datasets),
        sampling_temperature=args.sampling_temperature,
    )
    if not data.train_datasets and not args.encode_mode:
        raise MTDNNInputError("--train_datasets is empty")
    san = SANOptions(
        num_turn=args.answer_num_turn,
        mem_type=args.answer_mem_type,
        mem_drop_p=args.answer_mem_drop_p,
        mem_cum_type=args.mem_cum_type,
        weight_norm_on=args.answer_weight_norm_on,
        att_hidden_size=args.answer_att_hidden_size,
        sum_att_type=args.answer_sum_att_type,
        max_answer_len=args.max_answer_len,
    )
    model = _pick(ModelOptions, args, san=san)
    train = _pick(TrainOptions, args, scheduler_type=scheduler_type)
    adv = _pick(AdvOptions, args)
    return run, data, model, train, adv

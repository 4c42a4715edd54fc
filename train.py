"""Multi-task training of MT-DNN with per-epoch evaluation, score files and exact resume.

One process (CPU or one GPU):

    python train.py --init_checkpoint ../shared/models/all-MiniLM-L6-v2 \
        --data_dir data/canonical_data/all-MiniLM-L6-v2 \
        --task_def experiments/glue/glue_task_def.yml \
        --train_datasets rte,mrpc,stsb --test_datasets rte,mrpc,stsb \
        --max_seq_len 128 --batch_size 16 --epochs 3 --output_dir checkpoint

Resume exactly where a checkpoint stopped:

    python train.py ... --resume --model_ckpt checkpoint/model_0.pt

The file reads top to bottom: options → data → model → the training loop → evaluation.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import atomic_write
from data_utils.log_utils import setup_logging
from data_utils.task_def import TaskDef, get_task_def, load_task_defs, task_def_to_dict
from mt_dnn.batcher import Collater, MultiTaskDataset, TaskDataset, apply_word_dropout, build_eval_loader
from mt_dnn.inference import EvalSettings, encode_dataset, evaluate, format_metrics, write_eval_outputs
from mt_dnn.matcher import SANBertNetwork, is_mtdnn_checkpoint, load_encoder, load_mtdnn_checkpoint
from mt_dnn.model import MTDNNModel, total_updates
from mt_dnn.options import AdvOptions, DataOptions, ModelOptions, TrainOptions, options_to_dict
from mt_dnn.sampler import MultiTaskBatchSampler
from mt_dnn.tasks import SANOptions

logger = logging.getLogger("mt_dnn")


# ----------------------------------------------------------------------------- options
def str2bool(value: str) -> bool:
    """argparse type for ``true/false`` flags such as ``--vb_dropout``."""
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


NO_EFFECT = "accepted for compatibility with upstream scripts; no effect here"


def build_parser() -> argparse.ArgumentParser:
    """Every flag of SPEC §9 with its default."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    model.add_argument("--max_answer_len", type=int, default=10)
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
    model.add_argument("--encoder_type", type=int, default=1)
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
    train.add_argument("--cuda", action="store_true", default=torch.cuda.is_available())
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
    train.add_argument("--adv_opt", type=int, default=0)
    train.add_argument("--adv_norm_level", type=int, default=0)
    train.add_argument("--adv_p_norm", default="inf")
    train.add_argument("--adv_alpha", type=float, default=1.0)
    train.add_argument("--adv_k", type=int, default=1)
    train.add_argument("--adv_step_size", type=float, default=1e-5)
    train.add_argument("--adv_noise_var", type=float, default=1e-5)
    train.add_argument("--adv_epsilon", type=float, default=1e-6)
    train.add_argument("--encode_mode", action="store_true")
    train.add_argument("--debug", action="store_true")
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


def dataset_files(data: DataOptions, with_train: bool) -> tuple[dict[str, Path], dict[str, list[tuple[str, Path]]]]:
    """Train files and the dev/test files of every test dataset; a missing file is an error now."""
    data_dir = Path(data.data_dir)
    train = {}
    for name in data.train_datasets if with_train else ():
        path = data_dir / f"{name}_train.json"
        if not path.is_file():
            raise MTDNNInputError(f"training file of dataset {name!r} not found (run prepro_std.py first)", path)
        train[name] = path
    tests = {}
    for name in data.test_datasets:
        found = [(split, data_dir / f"{name}_{split}.json") for split in ("dev", "test")]
        found = [(split, path) for split, path in found if path.is_file()]
        if not found:
            raise MTDNNInputError(f"test dataset {name!r}: neither {name}_dev.json nor {name}_test.json exists", data_dir)
        tests[name] = found
    return train, tests


def open_tensorboard(run: RunOptions, output_dir: Path) -> Any:
    """A ``SummaryWriter`` under ``<output_dir>/<tensorboard_logdir>`` with ``--tensorboard``, else None."""
    if not run.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("--tensorboard needs the tensorboard package (pip install tensorboard); not logging to it")
        return None
    return SummaryWriter(str(output_dir / run.tensorboard_logdir))


# ----------------------------------------------------------------------------- state
def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    version, key, *rest = state["python"]
    random.setstate((version, tuple(key), *rest))
    name, keys, *others = state["numpy"]
    np.random.set_state((name, keys.numpy(), *others))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, model: MTDNNModel, config: dict[str, Any], epoch: int,
                    sampler_state: dict[str, Any], word_dropout_rng: torch.Generator) -> None:
    """Atomically write ``model_*.pt``: weights, optimizer, schedule, scaler, data position, RNGs."""
    state = model.training_state()
    state.update(
        config=config,
        epoch=epoch,
        sampler=sampler_state,
        rng={**rng_state(), "word_dropout": word_dropout_rng.get_state()},
    )
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)
    logger.info("saved %s", path)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    """Train, evaluate every epoch, write score files and checkpoints."""
    args = build_parser().parse_args(argv)
    run, data, model_opts, train_opts, adv_opts = options_from_args(args)
    task_defs_all = load_task_defs(data.task_def)
    train_files, test_files = dataset_files(data, with_train=not run.encode_mode)
    output_dir = Path(run.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(output_dir / run.log_file if not os.path.isabs(run.log_file) else run.log_file)
    set_seed(train_opts.seed)
    device = torch.device("cuda" if run.cuda and torch.cuda.is_available() else "cpu")

    # Tasks: one head per distinct task of the training (and test) datasets, in first-seen order.
    task_defs: list[TaskDef] = []
    for name in list(data.train_datasets) + list(data.test_datasets):
        task_def = get_task_def(task_defs_all, name, data.task_def)
        if task_def not in task_defs:
            task_defs.append(task_def)

    from transformers import AutoTokenizer

    tokenizer_source = run.tokenizer or (None if is_mtdnn_checkpoint(model_opts.init_checkpoint) else model_opts.init_checkpoint)
    if tokenizer_source is None:
        raise MTDNNInputError("--init_checkpoint is an MT-DNN .pt file: name its tokenizer with --tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, cache_dir=model_opts.transformer_cache)

    eval_collater = Collater(tokenizer.pad_token_id or 0, data.max_seq_len, data.do_padding, keep_samples=True)
    eval_sets = {
        (name, split): TaskDataset(path, get_task_def(task_defs_all, name, data.task_def), name, data.max_seq_len)
        for name, files in test_files.items()
        for split, path in files
    }
    network = SANBertNetwork(load_encoder(model_opts), task_defs, model_opts, sep_token_id=tokenizer.sep_token_id)
    if is_mtdnn_checkpoint(model_opts.init_checkpoint) and not run.resume:
        # A saved run contributes weights only (heads matched by task name), never options.
        source = load_mtdnn_checkpoint(model_opts.init_checkpoint)
        source_tasks = [task["name"] for task in (source.get("config") or {}).get("task_defs", [])]
        fresh = network.load_weights(source["state"], source_tasks)
        if fresh:
            logger.info("heads not in %s start fresh: %s", model_opts.init_checkpoint, ", ".join(fresh))
    if run.encode_mode:
        network.to(device)
        for name, files in test_files.items():
            # As upstream: the test split's encodings (the dev split's when there is no test file).
            split = "test" if "test" in dict(files) else "dev"
            loader = build_eval_loader(eval_sets[(name, split)], data.batch_size_eval, eval_collater)
            with atomic_write(output_dir / f"{name}_encoding.pt", "wb") as handle:
                torch.save(encode_dataset(network, loader, device), handle)
            logger.info("wrote %s", output_dir / f"{name}_encoding.pt")
        return

    # Data: per-task datasets, the multi-task sampler (paper's Algorithm 1), the collater.
    train_sets = [
        TaskDataset(path, get_task_def(task_defs_all, name, data.task_def), name, data.max_seq_len, is_train=True)
        for name, path in train_files.items()
    ]
    sampler = MultiTaskBatchSampler(
        train_sets,
        data.batch_size,
        mix_opt=data.mix_opt,
        ratio=data.ratio,
        sampling=data.sampling,
        temperature=data.sampling_temperature,
        seed=train_opts.seed,
        bin_on=data.bin_on,
        bin_size=data.bin_size,
        bin_grow_ratio=data.bin_grow_ratio,
        data_sort_on=data.data_sort_on,
    )
    collater = Collater(tokenizer.pad_token_id or 0, data.max_seq_len, data.do_padding)
    train_loader = torch.utils.data.DataLoader(
        MultiTaskDataset(train_sets),
        batch_sampler=sampler,
        collate_fn=collater,
        num_workers=data.dataloader_num_workers,
        generator=torch.Generator().manual_seed(train_opts.seed),
    )
    # Model: optimizer and schedule over the real number of updates.
    updates_total = total_updates(len(sampler), train_opts.epochs, train_opts.grad_accumulation_step)
    model = MTDNNModel(network, task_defs, train_opts, adv_opts, updates_total, device)
    config = {
        "run": options_to_dict(run),
        "data": options_to_dict(data),
        "model": options_to_dict(model_opts),
        "train": options_to_dict(train_opts),
        "adv": options_to_dict(adv_opts),
        "task_defs": [task_def_to_dict(t) for t in task_defs],
        "encoder_config": network.bert.config.to_dict(),
        "tokenizer": {
            "name": tokenizer_source,
            "pad_token_id": tokenizer.pad_token_id or 0,
            "sep_token_id": tokenizer.sep_token_id,
        },
    }
    with atomic_write(output_dir / "config.json") as handle:
        json.dump(config, handle, indent=2, default=str)
    logger.info("network:\n%s", network)
    logger.info(
        "%d trainable parameters; %d batches per epoch, %d updates in all",
        sum(p.numel() for p in network.parameters() if p.requires_grad),
        len(sampler),
        updates_total,
    )

    tensorboard = open_tensorboard(run, output_dir)
    start_epoch, start_position = 0, 0
    word_dropout_rng = torch.Generator().manual_seed(train_opts.seed)
    if run.resume:
        checkpoint = load_mtdnn_checkpoint(run.model_ckpt)
        model.load_training_state(checkpoint)
        set_rng_state(checkpoint["rng"])
        word_dropout_rng.set_state(checkpoint["rng"]["word_dropout"])
        # The sampler refuses a checkpoint saved with other data, batch size, seed or mixing options.
        sampler.load_state_dict(checkpoint["sampler"])
        start_epoch, start_position = checkpoint["sampler"]["epoch"], checkpoint["sampler"]["start"]
        logger.info("resumed from %s at epoch %d, batch %d, update %d", run.model_ckpt, start_epoch, start_position, model.updates)

    eval_settings = EvalSettings.of_run(model_opts, train_opts, device)

    def evaluate_all(epoch: int | None, updates: int | None) -> None:
        # Evaluation draws no training randomness: fork the RNG so resume stays exact.
        with torch.random.fork_rng(devices=[]):
            for (name, split), dataset in eval_sets.items():
                loader = build_eval_loader(dataset, data.batch_size_eval, eval_collater)
                result = evaluate(model.network, loader, dataset.task_def, split == "dev", eval_settings)
                write_eval_outputs(result, output_dir, name, split, dataset.task_def, run.glue_format_on, epoch, updates)
                logger.info("%s %s (epoch %s, update %d): %s", name, split, epoch, model.updates, format_metrics(result.metrics))
                for metric, value in result.metrics.items():
                    if tensorboard is not None and isinstance(value, float):
                        tensorboard.add_scalar(f"{name}/{split}/{metric}", value, model.updates)

    special_ids = tokenizer.all_special_ids
    unk_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    for epoch in range(start_epoch, train_opts.epochs):
        sampler.set_epoch(epoch, start=start_position)
        logger.info("epoch %d: %d batches", epoch, len(sampler) - start_position)
        started, examples, running_loss = time.time(), 0, None
        progress = tqdm(train_loader, total=len(sampler) - start_position, disable=not sys.stderr.isatty(), desc=f"epoch {epoch}")
        for position, batch in enumerate(progress, start=start_position + 1):
            if data.dropout_w > 0:
                batch.input_ids = apply_word_dropout(
                    batch.input_ids, batch.attention_mask, data.dropout_w, unk_id, special_ids, word_dropout_rng
                )
            loss = model.update(batch)
            examples += batch.batch_size
            if loss is not None:
                running_loss = loss if running_loss is None else 0.99 * running_loss + 0.01 * loss
            if model.updates % run.log_per_updates == 0 and model.micro_steps == 0:
                rate = examples / max(time.time() - started, 1e-9)
                eta = (len(sampler) - position) * (time.time() - started) / max(position - start_position, 1)
                logger.info(
                    "task %s update %d loss %.4f lr %.3e | %.1f examples/s | epoch ETA %.0fs",
                    batch.dataset, model.updates, running_loss or float("nan"), model.learning_rate, rate, eta,
                )
                if tensorboard is not None and running_loss is not None:
                    tensorboard.add_scalar("train/loss", running_loss, model.updates)
                    tensorboard.add_scalar("train/lr", model.learning_rate, model.updates)
            if run.save_per_updates_on and model.micro_steps == 0 and model.updates % run.save_per_updates == 0:
                evaluate_all(None, model.updates)
                save_checkpoint(
                    output_dir / f"model_{epoch}_{model.updates}.pt", model, config, epoch,
                    sampler.state_dict(batches_done=position), word_dropout_rng,
                )
        start_position = 0
        elapsed = time.time() - started
        logger.info("epoch %d done in %.0fs (%.1f examples/s)", epoch, elapsed, examples / max(elapsed, 1e-9))
        evaluate_all(epoch, None)
        save_checkpoint(
            output_dir / f"model_{epoch}.pt", model, config, epoch, sampler.state_dict(batches_done=len(sampler)), word_dropout_rng
        )


if __name__ == "__main__":
    run_cli(main)

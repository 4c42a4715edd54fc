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

import json
import logging
import os
import random
import sys
import time
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
from mt_dnn.checkpoint import is_mtdnn_checkpoint, load_mtdnn_checkpoint, save_training_checkpoint, set_rng_state
from mt_dnn.encode import write_encodings
from mt_dnn.inference import EvalSettings, evaluate, format_metrics, write_eval_outputs
from mt_dnn.matcher import SANBertNetwork, load_encoder
from mt_dnn.model import MTDNNModel
from mt_dnn.options import DataOptions, options_to_dict
from mt_dnn.sampler import MultiTaskBatchSampler, SamplerOptions
from mt_dnn.train_args import RunOptions, build_parser, options_from_args  # noqa: F401  (build_parser, options_from_args: tests import them from here)

logger = logging.getLogger("mt_dnn")


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


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    """Train, evaluate every epoch, write score files and checkpoints."""
    args = build_parser(__doc__).parse_args(argv)
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
    if run.encode_mode:  # each test dataset's test split (else dev) → {name}_encoding.pt, then stop
        write_encodings(network.to(device), eval_sets, output_dir, data.batch_size_eval, eval_collater, device)
        return

    # Data: per-task datasets, the multi-task sampler (paper's Algorithm 1), the collater.
    train_sets = [
        TaskDataset(path, get_task_def(task_defs_all, name, data.task_def), name, data.max_seq_len, is_train=True)
        for name, path in train_files.items()
    ]
    sampler = MultiTaskBatchSampler(train_sets, data.batch_size, options=SamplerOptions.of_run(data, train_opts.seed))
    collater = Collater(tokenizer.pad_token_id or 0, data.max_seq_len, data.do_padding)
    train_loader = torch.utils.data.DataLoader(
        MultiTaskDataset(train_sets),
        batch_sampler=sampler,
        collate_fn=collater,
        num_workers=data.dataloader_num_workers,
        generator=torch.Generator().manual_seed(train_opts.seed),
    )
    # Model: optimizer and schedule over the real number of updates.
    model = MTDNNModel.for_run(network, task_defs, train_opts, adv_opts, len(sampler), device)
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
        model.total_updates,
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
            if model.stepped and model.updates % run.log_per_updates == 0:
                rate = examples / max(time.time() - started, 1e-9)
                eta = (len(sampler) - position) * (time.time() - started) / max(position - start_position, 1)
                logger.info(
                    "task %s update %d loss %.4f lr %.3e | %.1f examples/s | epoch ETA %.0fs",
                    batch.dataset, model.updates, running_loss or float("nan"), model.learning_rate, rate, eta,
                )
                if tensorboard is not None and running_loss is not None:
                    tensorboard.add_scalar("train/loss", running_loss, model.updates)
                    tensorboard.add_scalar("train/lr", model.learning_rate, model.updates)
            if run.save_per_updates_on and model.stepped and model.updates % run.save_per_updates == 0:
                evaluate_all(None, model.updates)
                save_training_checkpoint(
                    output_dir / f"model_{epoch}_{model.updates}.pt", model.training_state(), config, epoch,
                    sampler.state_dict(batches_done=position), word_dropout_rng,
                )
        start_position = 0
        elapsed = time.time() - started
        logger.info("epoch %d done in %.0fs (%.1f examples/s)", epoch, elapsed, examples / max(elapsed, 1e-9))
        evaluate_all(epoch, None)
        save_training_checkpoint(
            output_dir / f"model_{epoch}.pt", model.training_state(), config, epoch, sampler.state_dict(batches_done=len(sampler)), word_dropout_rng
        )


if __name__ == "__main__":
    run_cli(main)

"""Multi-task training of MT-DNN with per-epoch evaluation, score files and exact resume.

One process (CPU or one GPU):

    python train.py --init_checkpoint ../shared/models/all-MiniLM-L6-v2 \
        --data_dir data/canonical_data/all-MiniLM-L6-v2 \
        --task_def experiments/glue/glue_task_def.yml \
        --train_datasets rte,mrpc,stsb --test_datasets rte,mrpc,stsb \
        --max_seq_len 128 --batch_size 16 --epochs 3 --output_dir checkpoint

Several processes (GPUs, or CPU processes with gloo), --batch_size staying the global batch:

    torchrun --nproc_per_node 4 train.py ...
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 --nproc_per_node 8 train.py ...
    torchrun --nnodes 2 --node_rank 1 --master_addr HOST --master_port 29500 --nproc_per_node 8 train.py ...
    torchrun --nproc_per_node 8 train.py ... --fsdp           # shard an encoder too big for one GPU

Resume exactly where the last save stopped (with any number of processes): the same command plus

    python train.py ... --resume                # reads <output_dir>/last.pt (or --model_ckpt FILE)

Every input (flags, paths, datasets against the encoder's positions and the tasks' labels) is
checked before the first update. Each epoch is checkpointed before it is evaluated (weights in
model_<epoch>.pt, the resumable state in last.pt); an evaluation that fails is reported and training
goes on, and the run then exits with code 2 naming it. After each evaluation, history.json and
training_curves.png show the training loss and dev metrics so far.

The file reads top to bottom: setup → train one epoch → save → evaluate, repeated per epoch.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import atomic_write
from data_utils.log_utils import ProgressClock, format_duration, log_to_files_only
from data_utils.task_def import load_task_defs, task_def_to_dict
from mt_dnn.batcher import Collater, MultiTaskDataset, TaskDataset, apply_word_dropout, build_eval_loader
from mt_dnn.checkpoint import (
    RESUME_FILE,
    check_resumable,
    load_mtdnn_checkpoint,
    prune_weight_files,
    save_run_checkpoint,
    set_rng_state,
)
from mt_dnn.distributed import DistContext, init_distributed, shut_down, use_data_parallel
from mt_dnn.encode import write_encodings
from mt_dnn.encoder import encoder_limits, initial_network
from mt_dnn.host_memory import bound_primitive_caches, configure_cpu_allocator
from mt_dnn.inference import EvalSettings, evaluate, format_metrics, write_eval_outputs
from mt_dnn.model import MTDNNModel
from mt_dnn.options import AdvOptions, DataOptions, ModelOptions, TrainOptions, options_to_dict
from mt_dnn.run_history import RunHistory, write_history_and_plot
from mt_dnn.run_setup import (
    WARM_SHAPES_LIMIT,
    check_run,
    dataset_files,
    load_datasets,
    open_tensorboard,
    preflight,
    prepare_output_dir,
    probe_memory,
    run_task_defs,
    set_seed,
    warm_batch_shapes,
)
from mt_dnn.sampler import MultiTaskBatchSampler, SamplerOptions
from mt_dnn.sources import run_tokenizer
from mt_dnn.train_args import RunOptions, build_parser, options_from_args  # noqa: F401  (tests import them from here)

logger = logging.getLogger("mt_dnn")


# ----------------------------------------------------------------------------- setup
@dataclass
class TrainingRun:
    """What setup builds and the loop uses."""

    run: RunOptions
    data: DataOptions
    train_opts: TrainOptions
    output_dir: Path
    model: MTDNNModel
    sampler: MultiTaskBatchSampler
    train_loader: torch.utils.data.DataLoader
    eval_sets: dict[tuple[str, str], TaskDataset]
    eval_collater: Collater
    eval_settings: EvalSettings
    dist: DistContext
    config: dict[str, Any]
    word_dropout_rng: torch.Generator
    unk_id: int
    special_ids: list[int]
    tensorboard: Any = None
    history: RunHistory = field(default_factory=RunHistory)
    memory_probed: bool = False  # each task's largest batch has run once (after this process's first update)


def setup(
    run: RunOptions,
    data: DataOptions,
    model_opts: ModelOptions,
    train_opts: TrainOptions,
    adv_opts: AdvOptions,
    ctx: DistContext,
) -> TrainingRun | None:
    """Load and check everything a run needs; None when ``--encode_mode`` has written its encodings."""
    task_defs_all = load_task_defs(data.task_def)
    train_files, test_files = dataset_files(data, with_train=not run.encode_mode)
    if run.resume and not Path(run.model_ckpt).is_file():
        raise MTDNNInputError(
            "checkpoint to resume not found (--resume reads <output_dir>/last.pt, or the file --model_ckpt names)",
            run.model_ckpt,
        )
    output_dir = prepare_output_dir(run, ctx.is_main)
    set_seed(train_opts.seed)
    if run.threads:
        torch.set_num_threads(run.threads)
    device = torch.device(f"cuda:{ctx.local_rank}" if run.cuda and torch.cuda.is_available() else "cpu")
    ctx = replace(ctx, data_parallel=use_data_parallel(run.multi_gpu_on, device, ctx))
    # Before the first matrix product: oneDNN and ideep read their cache capacities once.
    primitive_caches = bound_primitive_caches(run.cpu_primitive_cache) if device.type == "cpu" else {}
    task_defs = run_task_defs(task_defs_all, data)
    tokenizer_source, tokenizer = run_tokenizer(run.tokenizer, model_opts.init_checkpoint, model_opts.transformer_cache)
    network = initial_network(model_opts, task_defs, tokenizer.sep_token_id, run.resume)
    limits = encoder_limits(network.bert)
    if limits.positions is not None and data.max_seq_len > limits.positions:
        raise MTDNNInputError(f"--max_seq_len {data.max_seq_len} is more than the encoder's {limits.positions} positions")
    eval_sets = load_datasets(test_files, task_defs_all, data, limits, is_train=False)
    eval_collater = Collater(tokenizer.pad_token_id or 0, data.max_seq_len, data.do_padding, keep_samples=True)
    if run.encode_mode:  # each test dataset's test split (else dev) → {name}_encoding.pt, then stop
        if ctx.is_main:
            write_encodings(network.to(device), eval_sets, output_dir, data.batch_size_eval, eval_collater, device)
        return None

    # Data: per-task datasets, the multi-task sampler (paper's Algorithm 1), the collater.
    train_sets = list(load_datasets(train_files, task_defs_all, data, limits, is_train=True).values())
    # Every rank plans the same global batches and takes its shard of each.
    sampler_options = replace(SamplerOptions.of_run(data, train_opts.seed), rank=ctx.rank, world_size=ctx.world_size)
    sampler = MultiTaskBatchSampler(train_sets, data.batch_size, options=sampler_options)
    train_loader = torch.utils.data.DataLoader(
        MultiTaskDataset(train_sets),
        batch_sampler=sampler,
        collate_fn=Collater(tokenizer.pad_token_id or 0, data.max_seq_len, data.do_padding,
                            pad_to_multiple_of=data.pad_to_multiple_of),
        num_workers=data.dataloader_num_workers,
        # Workers kept from one epoch to the next: restarting them stalled the first batches of every epoch (the
        # sampler runs in this process, so nothing they compute depends on the epoch).
        persistent_workers=data.dataloader_num_workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(train_opts.seed),
    )
    check_run(data, train_opts, tokenizer, train_sets, len(sampler), device)
    if run.compile:  # in place: parameter names and checkpoints stay those of the plain encoder
        network.bert.compile(dynamic=True)
    # Model: optimizer and schedule over the real number of updates.
    # Under torchrun every rank starts from rank 0's weights; --fsdp shards them, --multi_gpu_on wraps them.
    model = MTDNNModel.for_run(network, task_defs, train_opts, adv_opts, sampler.total_batches(train_opts.epochs), device, ctx)
    eval_settings = EvalSettings.of_run(model_opts, train_opts, device, ctx)
    preflight(model, train_sets, train_loader.collate_fn, list(eval_sets.values()), eval_collater, data, eval_settings)
    precision = "bf16" if train_opts.bf16 else "fp16" if train_opts.fp16 else "fp32"
    logger.info("%s on %s; training batches padded to a multiple of %d tokens (--pad_to_multiple_of)",
                precision, device, data.pad_to_multiple_of)
    if device.type == "cpu":  # once every check has passed: a failing run's only line is its error
        configure_cpu_allocator(run.cpu_allocator)
        logger.info("CPU primitive caches (--cpu_primitive_cache): %s",
                    ", ".join(f"{name}={value}" for name, value in primitive_caches.items()))
    config = {
        "run": options_to_dict(run),
        "data": options_to_dict(data),
        "model": options_to_dict(model_opts),
        "train": options_to_dict(train_opts),
        "adv": options_to_dict(adv_opts),
        "task_defs": [task_def_to_dict(t) for t in task_defs],
        "encoder_config": network.bert.config.to_dict(),
        "tokenizer": {"name": tokenizer_source, "pad_token_id": tokenizer.pad_token_id or 0, "sep_token_id": tokenizer.sep_token_id},
    }
    if ctx.is_main:
        with atomic_write(output_dir / "config.json") as handle:
            json.dump(config, handle, indent=2, default=str)
    logger.info("network:\n%s", network)
    logger.info(
        "%d trainable parameters; %d batches per epoch, %d updates in all; %d process(es), each with 1/%d of a batch",
        sum(p.numel() for p in network.parameters() if p.requires_grad),
        len(sampler),
        model.total_updates,
        ctx.world_size,
        ctx.world_size,
    )
    return TrainingRun(
        run, data, train_opts, output_dir, model, sampler, train_loader, eval_sets, eval_collater,
        eval_settings, ctx, config,
        word_dropout_rng=torch.Generator().manual_seed(train_opts.seed),
        unk_id=tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0,
        special_ids=tokenizer.all_special_ids,
        tensorboard=open_tensorboard(run, output_dir) if ctx.is_main else None,
    )


def resume(t: TrainingRun) -> tuple[int, int]:
    """Restore model, RNGs and data position from ``--model_ckpt``; returns (epoch, batch) to start from."""
    path = t.run.model_ckpt
    checkpoint = load_mtdnn_checkpoint(path)
    check_resumable(checkpoint, t.config, path)
    try:
        t.model.load_training_state(checkpoint)
    except (RuntimeError, ValueError, KeyError) as err:
        raise MTDNNInputError(f"cannot resume: the checkpoint's state does not fit this run ({str(err).splitlines()[0]})", path) from None
    set_rng_state(checkpoint["rng"])
    t.word_dropout_rng.set_state(checkpoint["rng"]["word_dropout"])
    t.history = RunHistory.from_state_dict(checkpoint.get("history"))
    for folder in (Path(path).parent, t.output_dir):  # epochs saved before their evaluation ran
        t.history.fill_dev_from_score_files(folder, list(t.data.test_datasets))
    # The sampler refuses a checkpoint saved with other data, batch size, seed or mixing options.
    t.sampler.load_state_dict(checkpoint["sampler"])
    epoch, position = checkpoint["sampler"]["epoch"], checkpoint["sampler"]["start"]
    logger.info("resumed from %s at epoch %d, batch %d, update %d", path, epoch, position, t.model.updates)
    return epoch, position


# ----------------------------------------------------------------------------- the loop
def train_one_epoch(t: TrainingRun, epoch: int, start_position: int) -> None:
    """One pass over the sampler's plan from ``start_position``: update, log, save every N updates."""
    t.sampler.set_epoch(epoch, start=start_position)
    batches = len(t.sampler)
    logger.info("epoch %d: %d batches", epoch, batches - start_position)
    if start_position == 0:
        t.history.start_epoch()
    started, examples = time.time(), 0
    # A progress bar on a terminal; lines in the log every --log_per_updates, or --log_every_seconds without a bar.
    bar = t.dist.is_main and sys.stderr.isatty()
    clock = ProgressClock(t.run.log_per_updates, 0 if bar else t.run.log_every_seconds)
    progress = tqdm(t.train_loader, total=batches - start_position, disable=not bar, desc=f"epoch {epoch}")
    for position, batch in enumerate(progress, start=start_position + 1):
        if t.data.dropout_w > 0:
            batch.input_ids = apply_word_dropout(
                batch.input_ids, batch.attention_mask, t.data.dropout_w, t.unk_id, t.special_ids, t.word_dropout_rng
            )
        loss = t.model.update(batch)
        examples += batch.batch_size * t.dist.world_size  # the global batch: every rank took its share
        if loss is not None:
            t.history.add_loss(loss)
        if not t.model.stepped:
            continue
        if not t.memory_probed:  # now that the optimizer state exists: the largest batches, and any OOM, at update 1
            probe_memory(t.model, t.sampler, t.train_loader.dataset.datasets, t.train_loader.collate_fn)
            if t.model.device.type == "cpu" and t.model.amp_dtype is not None and t.dist.world_size == 1:
                warm_started = time.time()  # oneDNN's kernels for every batch shape, built once, now
                shapes = warm_batch_shapes(t.model, t.sampler, t.train_loader.dataset.datasets, t.train_loader.collate_fn)
                if shapes:
                    logger.info("ran each of the first epoch's %d batch shapes once (%.1fs)", shapes, time.time() - warm_started)
                else:
                    logger.info("over %d distinct batch shapes: their kernels are built as they come", WARM_SHAPES_LIMIT)
            t.memory_probed = True
        updates = t.model.updates
        if clock.due(updates):
            done, left = position - start_position, batches - position
            log_progress(t, epoch, batch.dataset, examples, time.time() - started, done, left)
        if t.run.save_per_updates_on and updates % t.run.save_per_updates == 0:
            save(t, f"model_{epoch}_{updates}.pt", epoch, batches_done=position)
            evaluate_all(t, None, updates)
    t.history.end_epoch(epoch, t.model.updates)
    elapsed = time.time() - started
    logger.info("epoch %d done in %s (%.1f examples/s)", epoch, format_duration(elapsed), examples / max(elapsed, 1e-9))


def log_progress(
    t: TrainingRun, epoch: int, task: str, examples: int, elapsed: float, batches_done: int, batches_left: int
) -> None:
    """One progress line: epoch, update/total, task, running loss, lr, examples/s, ETA of the epoch and the run."""
    updates, running_loss = t.model.updates, t.history.running_loss
    per_batch = elapsed / max(batches_done, 1)
    epoch_eta = batches_left * per_batch
    run_eta = epoch_eta + (t.train_opts.epochs - epoch - 1) * len(t.sampler) * per_batch
    logger.info(
        "epoch %d | task %s update %d/%d | loss %.4f lr %.3e | %.1f examples/s | ETA epoch %s, run %s (training only)",
        epoch, task, updates, t.model.total_updates, running_loss if running_loss is not None else float("nan"),
        t.model.learning_rate, examples / max(elapsed, 1e-9), format_duration(epoch_eta), format_duration(run_eta),
    )
    t.history.add_point(epoch, updates, t.model.learning_rate)
    if t.tensorboard is not None and running_loss is not None:
        t.tensorboard.add_scalar("train/loss", running_loss, updates)
        t.tensorboard.add_scalar("train/lr", t.model.learning_rate, updates)


def save(t: TrainingRun, name: str, epoch: int, batches_done: int) -> None:
    """Rank 0: the weights file ``<output_dir>/<name>``, the resumable ``last.pt``, then ``--keep_last``."""
    state = t.model.training_state()  # on every rank: pending gradients are averaged, FSDP gathers its shards
    if not t.dist.is_main:
        return
    save_run_checkpoint(
        t.output_dir, name, state, t.config, epoch, t.sampler.state_dict(batches_done=batches_done),
        t.word_dropout_rng, t.history.state_dict(),
    )
    prune_weight_files(t.output_dir, t.run.keep_last)


def evaluate_all(t: TrainingRun, epoch: int | None, updates: int | None) -> list[str]:
    """Evaluate every dev/test set and write its score file; returns one line per evaluation that failed."""
    failures = []
    # Decoding settings each dataset's dev split chose (SQuAD v2: the null-answer threshold), for its test split.
    chosen: dict[str, dict[str, Any]] = {}
    # Evaluation draws no training randomness: fork the RNG so resume stays exact.
    with torch.random.fork_rng(devices=[]):
        for (name, split), dataset in t.eval_sets.items():
            try:
                loader = build_eval_loader(dataset, t.data.batch_size_eval, t.eval_collater, t.dist.rank, t.dist.world_size)
                result = evaluate(t.model.network, loader, dataset.task_def, split == "dev", t.eval_settings, chosen.get(name))
                if split == "dev":
                    chosen[name] = result.decoding
                if t.dist.is_main:
                    write_eval_outputs(result, t.output_dir, name, split, dataset.task_def, t.run.glue_format_on, epoch, updates)
            except (MTDNNInputError, OSError, ValueError, RuntimeError) as err:
                # The checkpoint is already saved: report, go on with the next dataset and the next epoch.
                failures.append(f"{name} {split} (epoch {epoch}, update {t.model.updates}): {type(err).__name__}: {err}")
                logger.error("evaluation of %s failed; training goes on", failures[-1])
                continue
            logger.info("%s %s (epoch %s, update %d): %s", name, split, epoch, t.model.updates, format_metrics(result.metrics))
            if epoch is not None and split == "dev":
                t.history.add_dev_metrics(epoch, name, result.metrics)
            for metric, value in result.metrics.items():
                if t.tensorboard is not None and isinstance(value, float):
                    t.tensorboard.add_scalar(f"{name}/{split}/{metric}", value, t.model.updates)
    if t.dist.is_main:
        write_history_and_plot(t.history, t.output_dir)
    return failures


def main(argv: list[str] | None = None) -> None:
    """Train, checkpoint and evaluate every epoch; exit 2 with one line on any fault."""
    run, data, model_opts, train_opts, adv_opts = options_from_args(build_parser(__doc__).parse_args(argv))
    ctx = init_distributed(run.local_rank, run.cuda, run.fsdp)
    try:
        t = setup(run, data, model_opts, train_opts, adv_opts, ctx)
        if t is None:
            return
        start_epoch, start_position = resume(t) if run.resume else (0, 0)
        if start_epoch >= train_opts.epochs:
            logger.warning(
                "%s ends a %d-epoch run: nothing left to train (to go on, start a new run from it with --init_checkpoint)",
                run.model_ckpt, train_opts.epochs,
            )
            return
        failures: list[str] = []
        for epoch in range(start_epoch, train_opts.epochs):
            train_one_epoch(t, epoch, start_position)
            start_position = 0
            save(t, f"model_{epoch}.pt", epoch, batches_done=len(t.sampler))
            failures += evaluate_all(t, epoch, None)
        if failures:
            raise MTDNNInputError(f"training finished, but {len(failures)} evaluation(s) failed; first: {failures[0]}")
    except MTDNNInputError as err:
        log_to_files_only(f"error: {err}")  # run_cli prints it to stderr
        raise
    except KeyboardInterrupt:
        state = Path(run.output_dir) / RESUME_FILE
        if state.is_file():
            logger.warning("interrupted; to continue from the last save (%s), run the same command with --resume", state)
        else:
            logger.warning("interrupted before the first save: nothing to resume")
        sys.exit(130)
    finally:
        shut_down(ctx)


if __name__ == "__main__":
    run_cli(main)

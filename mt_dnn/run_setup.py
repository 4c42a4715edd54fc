"""Setup of a training run besides the model: the output folder (log, lock, stale temp files), the
dataset files, the task heads, seeds, TensorBoard, and the checks run before the first update
(``check_run``, ``preflight``).

``train.py`` calls these before the first update, so a wrong path, an unwritable folder or a
dataset that does not fit the encoder is one line naming it, not a fault an epoch later.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_utils.errors import MTDNNInputError
from data_utils.file_io import remove_stale_temp_files
from data_utils.formats import get_data_format
from data_utils.log_utils import setup_logging
from data_utils.task_def import TaskDef, get_task_def
from mt_dnn.batch import Batch
from mt_dnn.batcher import Collater, TaskDataset
from mt_dnn.encoder import EncoderLimits
from mt_dnn.inference import EvalSettings, predict_logits
from mt_dnn.model import MTDNNModel
from mt_dnn.options import DataOptions, TrainOptions
from mt_dnn.sampler import MultiTaskBatchSampler, shard_batch
from mt_dnn.tasks import get_task_handler
from mt_dnn.train_args import RunOptions

logger = logging.getLogger("mt_dnn")

# The files a run writes atomically into --output_dir: a killed process can leave their temp files.
STALE_TEMP_TARGETS = (
    "model_*.pt", "last.pt", "*_scores_*", "*_encoding.pt", "config.json", "history.json", "training_curves.png"
)


def prepare_output_dir(run: RunOptions, is_main: bool = True) -> Path:
    """Create ``--output_dir``, check it and the log file are writable, start logging, clear stale temp files.

    Under torchrun only rank 0 (``is_main``) writes the log file and logs below warnings.
    """
    output_dir = Path(run.output_dir)
    log_file = Path(run.log_file) if os.path.isabs(run.log_file) else output_dir / run.log_file
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        for folder in {output_dir, log_file.parent}:
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        if is_main:
            setup_logging(log_file)
        else:
            setup_logging(None, logging.WARNING)
    except OSError as err:
        raise MTDNNInputError(f"--output_dir/--log_file cannot be written: {err.strerror or err}", log_file) from None
    if is_main:
        lock_output_dir(output_dir)  # before clearing temp files: a live run's save may be one of them
        for pattern in STALE_TEMP_TARGETS:
            for stale in remove_stale_temp_files(output_dir, pattern):
                logger.warning("removed %s, left by a save that was interrupted", stale)
    return output_dir


def dataset_files(data: DataOptions, with_train: bool) -> tuple[dict[str, Path], dict[str, list[tuple[str, Path]]]]:
    """Train files and the dev/test files of every test dataset; a missing file is an error now."""
    data_dir = Path(data.data_dir)
    if not data_dir.is_dir():
        raise MTDNNInputError("--data_dir: folder not found (run prepro_std.py first)", data_dir)
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


def load_datasets(
    files: dict[str, Path] | dict[str, list[tuple[str, Path]]],
    task_defs_all: dict[str, TaskDef],
    data: DataOptions,
    limits: EncoderLimits,
    is_train: bool,
) -> dict[tuple[str, str], TaskDataset]:
    """Every dataset file, checked line by line and against the encoder's positions and vocabularies."""
    split_files = [(name, "train", path) for name, path in files.items()] if is_train else [
        (name, split, path) for name, found in files.items() for split, path in found
    ]
    datasets = {}
    for name, split, path in split_files:
        task_def = get_task_def(task_defs_all, name, data.task_def)
        datasets[(name, split)] = dataset = TaskDataset(path, task_def, name, data.max_seq_len, is_train=is_train)
        dataset.check_fits(limits.positions, limits.vocab_size, limits.type_vocab_size)
    return datasets


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def run_task_defs(task_defs_all: dict[str, TaskDef], data: DataOptions) -> list[TaskDef]:
    """One head per distinct task of the training (and test) datasets, in first-seen order."""
    task_defs: list[TaskDef] = []
    for name in list(data.train_datasets) + list(data.test_datasets):
        task_def = get_task_def(task_defs_all, name, data.task_def)
        if task_def not in task_defs:
            task_defs.append(task_def)
    trained = {get_task_def(task_defs_all, name, data.task_def).name for name in data.train_datasets}
    untrained = [task_def.name for task_def in task_defs if task_def.name not in trained]
    if untrained and data.train_datasets:
        logger.warning(
            "no --train_datasets entry trains the head of %s: its scores come from a new head (or from "
            "--init_checkpoint's head of that task)", ", ".join(untrained)
        )
    return task_defs


def lock_output_dir(output_dir: Path) -> None:
    """Claim ``--output_dir`` for this process until it exits: a second live run into it is refused
    (its checkpoints and score files would overwrite this one's); a lock left by a dead process is taken over."""
    lock = output_dir / ".mt-dnn.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None and owner != os.getpid() and _alive(owner):
                raise MTDNNInputError(
                    f"another run (process {owner}) is writing into this --output_dir; wait for it or choose another",
                    output_dir,
                ) from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        atexit.register(_release, lock, os.getpid())
        return
    raise MTDNNInputError("cannot take the lock file .mt-dnn.lock", output_dir)


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release(lock: Path, pid: int) -> None:
    if _lock_owner(lock) == pid:
        lock.unlink(missing_ok=True)


def check_run(
    data: DataOptions, train_opts: TrainOptions, tokenizer: Any, train_sets: list[TaskDataset], batches_per_epoch: int,
    device: torch.device,
) -> None:
    """Run-level faults found before the first update: a --max_seq_len with no room for text, an
    accumulation that never reaches one update; and warnings for settings that run but do not do what was meant."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    if data.max_seq_len <= specials:
        raise MTDNNInputError(f"--max_seq_len {data.max_seq_len} leaves no room for text: a pair takes {specials} special tokens")
    if batches_per_epoch * train_opts.epochs < train_opts.grad_accumulation_step:
        raise MTDNNInputError(
            f"--grad_accumulation_step {train_opts.grad_accumulation_step} is more than the run's "
            f"{batches_per_epoch * train_opts.epochs} batches: no update would ever happen"
        )
    if train_opts.mkd_opt > 0 and not any(dataset.has_soft_labels for dataset in train_sets):
        logger.warning("--mkd_opt %d: no training file carries 'softlabel' (prepare_distillation_data.py): no KD term", train_opts.mkd_opt)
    if train_opts.fp16 and device.type == "cpu":
        logger.warning("--fp16 on a CPU runs float16 in emulation, several times slower than float32; --bf16 is native there")


def preflight(
    model: MTDNNModel,
    train_sets: list[TaskDataset],
    train_collate: Callable[[list], Batch],
    eval_sets: list[TaskDataset],
    eval_collate: Callable[[list], Batch],
    data: DataOptions,
    settings: EvalSettings,
) -> None:
    """One batch of every training file through forward and loss, one of every dev/test file through
    forward and decoding, before the first update: a loss, head or input that does not fit fails now."""
    for dataset in train_sets:
        with _first_batch_faults(dataset):
            model.check_batch(_first_batch(dataset, train_collate, data.batch_size))
    for dataset in eval_sets:
        with _first_batch_faults(dataset):
            batch = _first_batch(dataset, eval_collate, data.batch_size_eval)
            logits = predict_logits(model.network, batch, model.network.task_id(dataset.task_def.name), settings)
            get_task_handler(dataset.task_def.task_type).decode(logits.cpu(), batch, settings.decode)


def probe_memory(
    model: MTDNNModel, sampler: MultiTaskBatchSampler, train_sets: list[TaskDataset], collate: Callable[[list], Batch]
) -> None:
    """Each task's largest batch through forward and backward, gradients dropped, RNG untouched (the run's
    numbers do not change). Called after the first update, when the optimizer state exists: the largest
    activations of the run are allocated now, and a batch that does not fit fails at update 1, not hours in."""
    for shard in sampler.largest_batches():
        task = shard[0][0]
        shard = with_padding(shard, train_sets[task].lengths())
        try:
            model.probe_memory(collate([train_sets[task][index] for _, index in shard]))
        except torch.OutOfMemoryError:
            lengths = train_sets[task].lengths()
            longest = max(lengths[index] for _, index in shard)
            raise MTDNNInputError(
                f"out of memory on {train_sets[task].task_def.name}'s largest batch ({len(shard)} rows of up to "
                f"{longest} tokens): lower --batch_size or --max_tokens_per_batch, or add --gradient_checkpointing",
                train_sets[task].path,
            ) from None


# Above this many distinct batch shapes (e.g. exact lengths: one per length), building every kernel up front
# would cost more start-up than it saves.
WARM_SHAPES_LIMIT = 48


def warm_batch_shapes(
    model: MTDNNModel, sampler: MultiTaskBatchSampler, train_sets: list[TaskDataset], collate: Collater,
    limit: int = WARM_SHAPES_LIMIT,
) -> int:
    """One batch of each distinct shape (rows × padded length) of the first epoch through ``model.probe_memory``,
    when there are at most ``limit``; returns how many ran (0 above the limit). On a CPU under bf16/fp16, oneDNN
    builds and caches a kernel per product shape as it first meets it: built here, right after update 1, the
    kernels and the memory they hold are in place before the run goes on, so its resident size is flat from then
    on (bench/README.md). Nothing the run computes changes (``probe_memory``: gradients dropped, RNG untouched)."""
    rows_per_example = [len(get_data_format(d.task_def.data_format).token_rows(d[0].sample)) for d in train_sets]
    lengths = [d.lengths() for d in train_sets]
    options = sampler.options
    shapes: dict[tuple[int, int], tuple[int, list[int]]] = {}
    for task, indices in sampler.epoch_plan(0):
        shard = shard_batch(indices, options.rank, options.world_size)
        if not shard:
            continue
        shape = (len(shard) * rows_per_example[task], collate.padded_length(max(lengths[task][i] for i in shard)))
        shapes.setdefault(shape, (task, shard))
        if len(shapes) > limit:
            return 0
    for task, shard in shapes.values():
        model.probe_memory(collate([train_sets[task][index] for index in shard]))
    return len(shapes)


def with_padding(shard: list[tuple[int, int]], lengths: list[int]) -> list[tuple[int, int]]:
    """``shard`` (``(task, index)`` pairs) with its last example swapped for the task's longest shorter one when
    all its examples have the same length: the same padded shape, now with padding. Under bfloat16 autocast a
    batch with padding keeps one more float32 batch × heads × length² tensor per layer for the backward (the
    masked attention scores; MiniLM, 16 × 128 tokens: 72 MB), so it is the larger of the two. Unchanged when
    the shard has padding already or cannot have any."""
    longest = max(lengths[index] for _, index in shard)
    if len(shard) < 2 or any(lengths[index] < longest for _, index in shard):
        return shard
    shorter = [index for index, length in enumerate(lengths) if length < longest]
    if not shorter:
        return shard
    return [*shard[:-1], (shard[0][0], max(shorter, key=lambda index: lengths[index]))]


def _first_batch(dataset: TaskDataset, collate: Callable[[list], Batch], size: int) -> Batch:
    return collate([dataset[i] for i in range(min(size, len(dataset)))])


@contextlib.contextmanager
def _first_batch_faults(dataset: TaskDataset) -> Iterator[None]:
    """Turn a fault of a dataset's first batch into one line naming its file and what to check."""
    try:
        yield
    except (RuntimeError, ValueError, IndexError, TypeError, KeyError) as err:
        reason = str(err).splitlines()[0] if str(err) else ""
        raise MTDNNInputError(
            f"its first batch fails before training ({type(err).__name__}: {reason}); check task "
            f"{dataset.task_def.name}'s loss, n_class and data_format in --task_def",
            dataset.path,
        ) from None

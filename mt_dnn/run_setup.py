"""Setup of a training run besides the model: the output folder and log, the dataset files, seeds, TensorBoard.

``train.py`` calls these before the first update, so a wrong path, an unwritable folder or a
dataset that does not fit the encoder is one line naming it, not a fault an epoch later.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_utils.errors import MTDNNInputError
from data_utils.file_io import remove_stale_temp_files
from data_utils.log_utils import setup_logging
from data_utils.task_def import TaskDef, get_task_def
from mt_dnn.batcher import TaskDataset
from mt_dnn.options import DataOptions
from mt_dnn.train_args import RunOptions

logger = logging.getLogger("mt_dnn")

# The files a run writes atomically into --output_dir: a killed process can leave their temp files.
STALE_TEMP_TARGETS = ("model_*.pt", "*_scores_*", "*_encoding.pt", "config.json")


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
    for pattern in STALE_TEMP_TARGETS if is_main else ():
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
    limit: int | None,
    is_train: bool,
) -> dict[tuple[str, str], TaskDataset]:
    """Every dataset file, checked line by line and against the encoder's ``limit`` positions."""
    split_files = [(name, "train", path) for name, path in files.items()] if is_train else [
        (name, split, path) for name, found in files.items() for split, path in found
    ]
    datasets = {}
    for name, split, path in split_files:
        task_def = get_task_def(task_defs_all, name, data.task_def)
        datasets[(name, split)] = dataset = TaskDataset(path, task_def, name, data.max_seq_len, is_train=is_train)
        if limit is not None:
            dataset.check_fits(limit)
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
    return task_defs

"""The one owner of the checkpoint files (SPEC §7): their layout, reading them without pickle,
writing them atomically, checking their keys, and rebuilding the network a training run saved.

A run writes two kinds of file into ``--output_dir``:

- ``model_<epoch>.pt`` (and per-update ``model_<epoch>_<updates>.pt``): weights only,
  ``{"state", "config", "epoch", "updates"}``: what ``--init_checkpoint``, ``predict.py`` and
  ``extractor.py`` read;
- ``last.pt``, replaced at every save: everything an exact ``--resume`` needs, ``{"state",
  "optimizer", "config", "scheduler", "scaler", "updates", "micro_steps", "pending_grads", "epoch",
  "sampler", "rng", "history"}`` (earlier versions wrote this layout into every ``model_*.pt``).

Released encoder-only files hold ``{"state", "config"}``.
Rebuilding needs nothing downloaded: the encoder comes from the checkpoint's own
``encoder_config``, one head per entry of its ``task_defs``, weights loaded strictly::

    run = load_run_checkpoint("checkpoint/model_2.pt", torch.device("cpu"))
    run.task_defs[0].name, run.network(input_ids, token_type_ids, attention_mask, task_id=0)
"""
from __future__ import annotations

import logging
import pickle
import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, BertConfig, PretrainedConfig

from data_utils.errors import MTDNNInputError
from data_utils.file_io import atomic_write
from data_utils.task_def import TaskDef, task_def_from_dict
from mt_dnn.matcher import SANBertNetwork
from mt_dnn.options import ModelOptions, TrainOptions, model_options_from_dict, rebuild_attention
from mt_dnn.state_keys import BERT_CONFIG_KEYS, check_state_keys

logger = logging.getLogger(__name__)

def is_mtdnn_checkpoint(path: str) -> bool:
    """True for a path to an existing ``.pt`` file; ``load_mtdnn_checkpoint`` then checks its layout."""
    return path.endswith(".pt") and Path(path).is_file()


# torch.save before torch 1.6 (the original's released models) wrote a pickle stream opening with this.
_LEGACY_HEADER = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)


def _is_legacy_torch_file(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(_LEGACY_HEADER)) == _LEGACY_HEADER


def load_mtdnn_checkpoint(path: str) -> dict[str, Any]:
    """Load an MT-DNN ``.pt`` file without pickle; a clear error when it is not one."""
    if Path(path).is_dir():
        raise MTDNNInputError("is a folder, not a checkpoint file: pass an MT-DNN model_<epoch>.pt", path)
    if not Path(path).is_file():
        raise MTDNNInputError("checkpoint not found", path)
    if not zipfile.is_zipfile(path) and not _is_legacy_torch_file(path):
        raise MTDNNInputError(
            "cannot read checkpoint: not a torch.save zip archive or legacy file "
            "(truncated, corrupt or another kind of file)",
            path,
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running code from the file: never here.
        raise MTDNNInputError(
            "cannot read checkpoint: it holds Python objects besides tensors and plain data, and mt-dnn "
            "never unpickles code from a checkpoint",
            path,
        ) from None
    except Exception as err:  # torch raises several types for a damaged archive
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise MTDNNInputError(f"cannot read checkpoint ({type(err).__name__}: {first_line}); damaged file?", path) from None
    if not isinstance(checkpoint, dict) or "state" not in checkpoint:
        raise MTDNNInputError("not an MT-DNN checkpoint (expected a dict with a 'state' key)", path)
    return checkpoint


def encoder_config_from_checkpoint(checkpoint: dict[str, Any]) -> PretrainedConfig:
    """The encoder config a checkpoint records: ours (``encoder_config``) or a released BERT one."""
    config = checkpoint.get("config") or {}
    if "encoder_config" in config:
        encoder_config = dict(config["encoder_config"])
        return AutoConfig.for_model(encoder_config.pop("model_type"), **encoder_config)
    return BertConfig(**{key: config[key] for key in BERT_CONFIG_KEYS if key in config})


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


# The resumable state of a run, replaced at every save.
RESUME_FILE = "last.pt"
# What a weights file keeps of the full state.
WEIGHTS_KEYS = ("state", "config", "epoch", "updates")
_WEIGHTS_FILE = re.compile(r"model_(\d+)(?:_(\d+))?\.pt")


def save_run_checkpoint(
    output_dir: Path,
    name: str,
    training_state: dict[str, Any],
    config: dict[str, Any],
    epoch: int,
    sampler_state: dict[str, Any],
    word_dropout_rng: torch.Generator,
    history: dict[str, Any] | None = None,
) -> None:
    """Atomically write the weights file ``<output_dir>/<name>``, then replace ``<output_dir>/last.pt``
    with the full state: the model's training state plus config, data position, RNGs and history."""
    state = dict(training_state)
    state.update(
        config=config,
        epoch=epoch,
        sampler=sampler_state,
        rng={**rng_state(), "word_dropout": word_dropout_rng.get_state()},
        history=history or {},
    )
    _save(output_dir / name, {key: state[key] for key in WEIGHTS_KEYS})
    _save(output_dir / RESUME_FILE, state)
    logger.info("saved %s (weights) and %s (resumable state)", output_dir / name, output_dir / RESUME_FILE)


def _save(path: Path, state: dict[str, Any]) -> None:
    try:
        with atomic_write(path, "wb") as handle:
            torch.save(state, handle)
    except (OSError, RuntimeError) as err:
        # torch reports a full disk as a RuntimeError from its zip writer; atomic_write has removed the temp file.
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "write failed (disk full?)"
        raise MTDNNInputError(f"cannot save checkpoint: {reason}; earlier checkpoints are intact", path) from None


def weight_files(output_dir: Path) -> list[Path]:
    """The ``model_<epoch>[_<updates>].pt`` files of ``output_dir``, oldest first (``model_<e>.pt`` last of epoch e)."""
    found = []
    for path in output_dir.glob("model_*.pt"):
        match = _WEIGHTS_FILE.fullmatch(path.name)
        if match:
            epoch, updates = int(match[1]), int(match[2]) if match[2] else float("inf")
            found.append(((epoch, updates), path))
    return [path for _, path in sorted(found)]


def prune_weight_files(output_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` weight files (0 keeps all); returns the deleted paths."""
    if keep_last <= 0:
        return []
    doomed = weight_files(output_dir)[:-keep_last]
    for path in doomed:
        path.unlink(missing_ok=True)
        logger.info("removed %s (--keep_last %d)", path, keep_last)
    return doomed


# Encoder config keys that must agree for a checkpoint's weights and optimizer state to fit a network.
_ENCODER_SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
# Task definition keys that decide a head's shape.
_HEAD_SHAPE_KEYS = ("task_type", "n_class", "enable_san", "data_format")


def check_resumable(checkpoint: dict[str, Any], config: dict[str, Any], path: str | Path) -> None:
    """One-line error naming what differs when ``checkpoint`` was not written by a run of this ``config``,
    or holds weights only.

    Compared: the task set (names in head order), each head's shape-deciding definition, the
    encoder's architecture and the optimizer.
    """
    if "optimizer" not in checkpoint:
        raise MTDNNInputError(
            f"cannot resume from a weights-only file (model_<epoch>.pt holds no optimizer state): resume from "
            f"{Path(path).parent / RESUME_FILE}, which --resume reads from --output_dir by default",
            path,
        )
    saved = checkpoint.get("config") or {}
    if "task_defs" not in saved or "encoder_config" not in saved:
        raise MTDNNInputError("cannot resume: not a checkpoint written by train.py (its config has no task_defs)", path)
    saved_tasks = [task["name"] for task in saved["task_defs"]]
    run_tasks = [task["name"] for task in config["task_defs"]]
    if saved_tasks != run_tasks:
        raise MTDNNInputError(
            f"cannot resume: the checkpoint's tasks are {saved_tasks}, this run's are {run_tasks} "
            "(to start a new run from its weights, use --init_checkpoint instead of --resume)",
            path,
        )
    for saved_task, run_task in zip(saved["task_defs"], config["task_defs"]):
        for key in _HEAD_SHAPE_KEYS:
            if saved_task.get(key) != run_task.get(key):
                raise MTDNNInputError(
                    f"cannot resume: task {run_task['name']} has {key} {saved_task.get(key)!r} in the checkpoint "
                    f"but {run_task.get(key)!r} in --task_def",
                    path,
                )
    for key in _ENCODER_SHAPE_KEYS:
        if saved["encoder_config"].get(key) != config["encoder_config"].get(key):
            raise MTDNNInputError(
                f"cannot resume: the encoder's {key} is {saved['encoder_config'].get(key)!r} in the checkpoint "
                f"but {config['encoder_config'].get(key)!r} for --init_checkpoint",
                path,
            )
    saved_optimizer = (saved.get("train") or {}).get("optimizer")
    if saved_optimizer != config["train"]["optimizer"]:
        raise MTDNNInputError(
            f"cannot resume: the checkpoint was trained with --optimizer {saved_optimizer}, this run asks for "
            f"{config['train']['optimizer']}",
            path,
        )


# Keys of a checkpoint's config that rebuilding its network needs.
_REQUIRED_CONFIG_KEYS = ("model", "train", "task_defs", "encoder_config")


@dataclass
class RunCheckpoint:
    """A training run's network with its weights, and the options it was built with."""

    network: SANBertNetwork
    task_defs: list[TaskDef]
    model_opts: ModelOptions
    train_opts: TrainOptions
    encoder_config: dict[str, Any]
    tokenizer: dict[str, Any]

    @property
    def pad_token_id(self) -> int:
        """The tokenizer's padding id (the encoder config's, then 0, for checkpoints that do not record it)."""
        pad = self.tokenizer.get("pad_token_id", self.encoder_config.get("pad_token_id"))
        return pad if isinstance(pad, int) else 0

    @property
    def task_names(self) -> list[str]:
        """The checkpoint's tasks in head order (``task_id`` = position)."""
        return [task_def.name for task_def in self.task_defs]


def _build_encoder(checkpoint: dict[str, Any]) -> torch.nn.Module:
    config = encoder_config_from_checkpoint(checkpoint)
    # The same attention kernel as training, so scores match the run's (flash kernels need their GPU package: SDPA).
    kernel = rebuild_attention(((checkpoint.get("config") or {}).get("model") or {}).get("attn_implementation"))
    try:
        return AutoModel.from_config(config, attn_implementation=kernel)
    except (ValueError, ImportError):
        return AutoModel.from_config(config)


def _load_strict(network: SANBertNetwork, state: dict[str, torch.Tensor], path: str | Path) -> None:
    result = network.load_state_dict(state, strict=False)
    # Position-id buffers are not weights; some transformers versions save them, others do not.
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    check_state_keys(missing, unexpected, path, prefix="weights do not fit the network of the checkpoint's own config")


def load_run_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> RunCheckpoint:
    """The network of a ``train.py`` checkpoint (encoder, every head, strict weights) in eval mode on ``device``."""
    checkpoint = load_mtdnn_checkpoint(str(path))
    config = checkpoint.get("config") or {}
    absent = [key for key in _REQUIRED_CONFIG_KEYS if key not in config]
    if absent:
        raise MTDNNInputError(
            f"config has no {', '.join(absent)}: not a checkpoint written by train.py "
            "(an encoder-only checkpoint has no task heads; train on it first)",
            path,
        )
    try:
        task_defs = [task_def_from_dict(entry) for entry in config["task_defs"]]
        model_opts = model_options_from_dict(config["model"])
        train_opts = TrainOptions(**config["train"])
    except (KeyError, TypeError, ValueError) as err:
        raise MTDNNInputError(f"config cannot be read ({type(err).__name__}: {err}); written by another version?", path) from None
    encoder_config = dict(config["encoder_config"])
    tokenizer = dict(config.get("tokenizer") or {})
    # RoBERTa-style encoders without type ids find the SAN premise end by the separator id.
    sep_token_id = tokenizer.get("sep_token_id", encoder_config.get("sep_token_id"))
    network = SANBertNetwork(_build_encoder(checkpoint), task_defs, model_opts, sep_token_id=sep_token_id)
    _load_strict(network, checkpoint["state"], path)
    network.to(device).eval()
    return RunCheckpoint(network, task_defs, model_opts, train_opts, encoder_config, tokenizer)

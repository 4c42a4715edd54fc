"""Rebuild the network a training run saved in ``model_*.pt`` (SPEC §7), for inference.

The encoder is built from the checkpoint's own ``encoder_config`` (nothing is downloaded),
one head per entry of its ``task_defs``, and the weights are loaded strictly::

    run = load_run_checkpoint("checkpoint/model_2.pt", torch.device("cpu"))
    run.task_defs[0].name, run.network(input_ids, token_type_ids, attention_mask, task_id=0)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel

from data_utils.errors import MTDNNInputError
from data_utils.task_def import TaskDef, task_def_from_dict
from mt_dnn.matcher import (
    SANBertNetwork,
    encoder_config_from_checkpoint,
    load_mtdnn_checkpoint,
)
from mt_dnn.options import ModelOptions, TrainOptions, model_options_from_dict

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
    # The same attention kernel as training (load_encoder asks for SDPA), so scores match the run's.
    try:
        return AutoModel.from_config(config, attn_implementation="sdpa")
    except (ValueError, ImportError):
        return AutoModel.from_config(config)


def _load_strict(network: SANBertNetwork, state: dict[str, torch.Tensor], path: str | Path) -> None:
    result = network.load_state_dict(state, strict=False)
    # Position-id buffers are not weights; some transformers versions save them, others do not.
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        problems = ([f"missing key {missing[0]!r}"] if missing else []) + (
            [f"unexpected key {unexpected[0]!r}"] if unexpected else []
        )
        raise MTDNNInputError(
            f"weights do not fit the network of the checkpoint's own config: {'; '.join(problems)} "
            f"({len(missing)} missing, {len(unexpected)} unexpected)",
            path,
        )


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

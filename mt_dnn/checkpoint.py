"""The one owner of the checkpoint file (SPEC §7): its layout, reading it without pickle,
writing it atomically with everything an exact resume needs, checking its keys, and
rebuilding the network a training run saved in ``model_*.pt``.

Layout: ``{"state", "optimizer", "config", "scheduler", "scaler", "updates", "micro_steps",
"pending_grads", "epoch", "sampler", "rng"}``; released encoder-only files hold ``{"state", "config"}``.
Rebuilding needs nothing downloaded: the encoder comes from the checkpoint's own
``encoder_config``, one head per entry of its ``task_defs``, weights loaded strictly::

    run = load_run_checkpoint("checkpoint/model_2.pt", torch.device("cpu"))
    run.task_defs[0].name, run.network(input_ids, token_type_ids, attention_mask, task_id=0)
"""
from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, BertConfig, PretrainedConfig

from data_utils.errors import MTDNNInputError
from data_utils.file_io import atomic_write
from data_utils.task_def import TaskDef, task_def_from_dict
from mt_dnn.options import ModelOptions, TrainOptions, model_options_from_dict

if TYPE_CHECKING:
    from mt_dnn.matcher import SANBertNetwork

logger = logging.getLogger(__name__)

# The BERT config keys of released MT-DNN checkpoints (SPEC §8, strip_model.py).
BERT_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "hidden_act",
    "intermediate_size",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
)
ENCODER_PREFIX = "bert."
LAYER_INDEX = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def is_mtdnn_checkpoint(path: str) -> bool:
    """True for a path to an existing ``.pt`` file; ``load_mtdnn_checkpoint`` then checks its layout."""
    return path.endswith(".pt") and Path(path).is_file()


def load_mtdnn_checkpoint(path: str) -> dict[str, Any]:
    """Load an MT-DNN ``.pt`` file without pickle; a clear error when it is not one."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad file
        raise MTDNNInputError(f"cannot read checkpoint: {str(err).splitlines()[0]}", path) from None
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


def normalize_state_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's weights with old ``LayerNorm.gamma``/``beta`` names mapped and position-id buffers dropped."""
    normalized = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue  # a buffer, not a weight; older checkpoints carry it, newer do not
        if key.endswith("LayerNorm.gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith("LayerNorm.beta"):
            key = key[: -len("beta")] + "bias"
        normalized[key] = value
    return normalized


def encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Encoder weights of a checkpoint, ``bert.`` prefix removed."""
    return {
        key[len(ENCODER_PREFIX) :]: value
        for key, value in normalize_state_keys(state).items()
        if key.startswith(ENCODER_PREFIX)
    }


def in_cut_layers(key: str, kept: int, depth: int) -> bool:
    """True for a weight of layers ``kept .. depth - 1``, the ones ``--num_hidden_layers`` cut away."""
    match = LAYER_INDEX.search(key)
    return match is not None and kept <= int(match.group(1)) < depth


def check_state_keys(
    missing: list[str], unexpected: list[str], path: str | Path | None, what: str = "key", prefix: str = ""
) -> None:
    """One-line error naming the first missing and first unexpected weight, when there are any."""
    if not missing and not unexpected:
        return
    problems = ([f"missing {what} {missing[0]!r}"] if missing else []) + (
        [f"unexpected {what} {unexpected[0]!r}"] if unexpected else []
    )
    lead = f"{prefix}: " if prefix else ""
    raise MTDNNInputError(f"{lead}{'; '.join(problems)} ({len(missing)} missing, {len(unexpected)} unexpected)", path)


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


def save_training_checkpoint(
    path: Path,
    training_state: dict[str, Any],
    config: dict[str, Any],
    epoch: int,
    sampler_state: dict[str, Any],
    word_dropout_rng: torch.Generator,
) -> None:
    """Atomically write ``model_*.pt``: the model's training state plus config, data position and RNGs."""
    state = dict(training_state)
    state.update(
        config=config,
        epoch=epoch,
        sampler=sampler_state,
        rng={**rng_state(), "word_dropout": word_dropout_rng.get_state()},
    )
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)
    logger.info("saved %s", path)


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
    from mt_dnn.matcher import SANBertNetwork  # matcher reads checkpoints through this module

    network = SANBertNetwork(_build_encoder(checkpoint), task_defs, model_opts, sep_token_id=sep_token_id)
    _load_strict(network, checkpoint["state"], path)
    network.to(device).eval()
    return RunCheckpoint(network, task_defs, model_opts, train_opts, encoder_config, tokenizer)

"""Weight names of MT-DNN checkpoints: the encoder prefix, upstream's old names, and the key check.

Plain functions over state-dict keys, shared by the checkpoint file (``checkpoint.py``), the
network (``matcher.py``) and the encoder loader (``encoder.py``) without importing one another.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from data_utils.errors import MTDNNInputError

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

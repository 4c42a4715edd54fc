"""Encoder outputs as data: what ``extractor.py`` and ``train.py --encode_mode`` write.

- ``extract``: per text line, the token vectors of chosen hidden-state layers (``extractor.py``).
- ``encode_dataset`` / ``write_encodings``: per row of a tokenized ``{name}_{split}.json``, the
  encoder's last hidden states cut to the row's real length, saved to
  ``<output_dir>/{name}_encoding.pt`` as ``{"uids": [...], "encodings": [tensor, ...]}``
  (``train.py --encode_mode``).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from data_utils.file_io import atomic_write
from mt_dnn.batcher import Collater, TaskDataset, build_eval_loader

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract(
    encoder: torch.nn.Module,
    tokenizer: Any,
    features: Sequence[dict[str, list[int]]],
    layers: Sequence[int],
    batch_size: int,
    device: torch.device,
) -> Iterator[dict[str, Any]]:
    """One output object per example, in input order, from batches padded to their longest row."""
    encoder.eval()
    use_type_ids = getattr(encoder.config, "type_vocab_size", 0) > 1
    for start in range(0, len(features), batch_size):
        chunk = features[start : start + batch_size]
        batch = tokenizer.pad(list(chunk), padding=True, return_tensors="pt")
        inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
        if use_type_ids and "token_type_ids" in batch:
            inputs["token_type_ids"] = batch["token_type_ids"].to(device)
        hidden_states = encoder(**inputs, output_hidden_states=True).hidden_states
        selected = [hidden_states[layer].float().cpu() for layer in layers]
        for row, feature in enumerate(chunk):
            n = len(feature["input_ids"])
            output: dict[str, Any] = {
                "uid": str(start + row),
                "tokens": tokenizer.convert_ids_to_tokens(feature["input_ids"]),
            }
            for layer, states in zip(layers, selected):
                output[str(layer)] = states[row, :n].tolist()
            yield output


@torch.no_grad()
def encode_dataset(network: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> dict[str, Any]:
    """``--encode_mode``: the encoder's last hidden states of every row, cut to its real length."""
    network.eval()
    uids: list[str] = []
    encodings: list[torch.Tensor] = []
    for batch in loader:
        batch = batch.to(device)
        features = network.encode(batch.input_ids, batch.token_type_ids, batch.attention_mask)
        lengths = batch.attention_mask.sum(dim=1).tolist()
        encodings.extend(states[:n].float().cpu() for states, n in zip(features.sequence_output, lengths))
        # Multi-hypothesis samples have k rows: repeat the uid per row.
        uids.extend(uid for uid in batch.uids for _ in range(batch.pairwise_size))
    return {"uids": uids, "encodings": encodings}


def write_encodings(
    network: torch.nn.Module,
    eval_sets: Mapping[tuple[str, str], TaskDataset],
    output_dir: str | Path,
    batch_size: int,
    collater: Collater,
    device: torch.device,
) -> list[Path]:
    """``--encode_mode``: write ``{name}_encoding.pt`` for every dataset of ``eval_sets`` (keyed ``(name, split)``).

    As upstream, a dataset's test split is encoded (its dev split when it has no test file).
    The network must already be on ``device``. Returns the files written, in dataset order.
    """
    names = list(dict.fromkeys(name for name, _ in eval_sets))
    written = []
    for name in names:
        split = "test" if (name, "test") in eval_sets else "dev"
        loader = build_eval_loader(eval_sets[(name, split)], batch_size, collater)
        path = Path(output_dir) / f"{name}_encoding.pt"
        with atomic_write(path, "wb") as handle:
            torch.save(encode_dataset(network, loader, device), handle)
        logger.info("wrote %s", path)
        written.append(path)
    return written

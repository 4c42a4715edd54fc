"""Convert a Google TensorFlow BERT checkpoint into the released MT-DNN ``.pt`` format (SPEC §8).

    pip install -e ".[tf]"
    python scripts/convert_tf_to_pt.py --tf_checkpoint_root uncased_L-12_H-768_A-12 \
        --pytorch_checkpoint_path bert_base_uncased.pt

``--tf_checkpoint_root`` holds ``bert_config.json`` and ``bert_model.ckpt.{index,data-*}``. The
output is ``{"state": {"bert.<Hugging Face BertModel name>": tensor}, "config": <the 11 BERT keys>}``,
what ``train.py --init_checkpoint OUT.pt --tokenizer NAME`` loads. Adam slots, ``global_step`` and
the pre-training heads (``cls/*``) are skipped; any other variable, or a missing weight, is an error.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import atomic_write
from data_utils.log_utils import setup_logging
from mt_dnn.state_keys import BERT_CONFIG_KEYS, ENCODER_PREFIX

logger = logging.getLogger("mt_dnn")

_SKIPPED = re.compile(r"(^|/)(adam_m|adam_v|global_step)$|^cls/")
# TF scope → BertModel module path, for the parts of a name that differ.
_RENAMES = (
    (re.compile(r"^bert/"), ""),
    (re.compile(r"/layer_(\d+)/"), r"/layer/\1/"),
    (re.compile(r"/(gamma)$"), "/weight"),
    (re.compile(r"/(beta)$"), "/bias"),
    (re.compile(r"/kernel$"), "/weight"),
)
_EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def hf_name(tf_name: str) -> tuple[str, bool] | None:
    """``(BertModel state-dict name, transpose?)`` of a TF BERT variable; None for one to skip."""
    if _SKIPPED.search(tf_name):
        return None
    if not tf_name.startswith("bert/"):
        raise ValueError(f"variable {tf_name!r} is not part of a BERT encoder")
    name = tf_name
    for pattern, replacement in _RENAMES:
        name = pattern.sub(replacement, name)
    transpose = tf_name.endswith("/kernel")  # TF dense kernels are [in, out], torch Linear weights [out, in]
    if name.split("/")[-1] in _EMBEDDING_TABLES:
        name += "/weight"
    return name.replace("/", "."), transpose


def read_bert_config(root: Path) -> dict[str, Any]:
    """The 11 keys of ``bert_config.json``."""
    path = root / "bert_config.json"
    if not path.is_file():
        raise MTDNNInputError("bert_config.json not found", path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise MTDNNInputError(f"invalid JSON: {err}", path) from None
    missing = [key for key in BERT_CONFIG_KEYS if key not in config]
    if missing:
        raise MTDNNInputError(f"missing BERT config key {missing[0]!r}", path)
    return {key: config[key] for key in BERT_CONFIG_KEYS}


def checkpoint_prefix(root: Path) -> Path:
    """``<root>/bert_model.ckpt``, or the one ``*.ckpt*.index`` checkpoint of ``root``."""
    if (root / "bert_model.ckpt.index").is_file():
        return root / "bert_model.ckpt"
    indexes = sorted(root.glob("*.index"))
    if len(indexes) != 1:
        raise MTDNNInputError(f"expected bert_model.ckpt.index (found {len(indexes)} .index files)", root)
    return indexes[0].with_suffix("")


def read_tf_variables(prefix: Path) -> dict[str, np.ndarray]:
    """Every variable of a TF checkpoint as numpy arrays."""
    try:
        import tensorflow as tf
    except ImportError:
        raise MTDNNInputError('TensorFlow is needed to read TF checkpoints: pip install -e ".[tf]"') from None
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as err:
        raise MTDNNInputError(f"cannot read the TF checkpoint: {str(err).splitlines()[0]}", prefix) from None
    return {name: reader.get_tensor(name) for name in sorted(reader.get_variable_to_shape_map())}


def convert(variables: dict[str, np.ndarray], config: dict[str, Any], source: Path) -> dict[str, torch.Tensor]:
    """The ``bert.*`` state of a BertModel of ``config`` from TF variables, every weight present and of its shape."""
    from transformers import BertConfig, BertModel

    expected = {
        key: value.shape for key, value in BertModel(BertConfig(**config)).state_dict().items() if not key.endswith("position_ids")
    }
    state: dict[str, torch.Tensor] = {}
    for tf_name, array in variables.items():
        try:
            mapped = hf_name(tf_name)
        except ValueError as err:
            raise MTDNNInputError(str(err), source) from None
        if mapped is None:
            continue
        name, transpose = mapped
        if name not in expected:
            raise MTDNNInputError(f"variable {tf_name!r} has no place in a BertModel (mapped to {name!r})", source)
        tensor = torch.from_numpy(np.ascontiguousarray(array.T if transpose else array)).float()
        if tensor.shape != expected[name]:
            raise MTDNNInputError(
                f"variable {tf_name!r} has shape {tuple(tensor.shape)}, bert_config.json needs {tuple(expected[name])}", source
            )
        state[ENCODER_PREFIX + name] = tensor
    missing = sorted(set(expected) - {key[len(ENCODER_PREFIX):] for key in state})
    if missing:
        raise MTDNNInputError(f"no TF variable for weight {missing[0]!r} ({len(missing)} missing)", source)
    return state


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of convert_tf_to_pt.py."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tf_checkpoint_root", required=True, help="folder with bert_config.json and bert_model.ckpt.*")
    p.add_argument("--pytorch_checkpoint_path", required=True, help="MT-DNN .pt file to write")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Convert and write the checkpoint; returns what was written."""
    args = build_parser().parse_args(argv)
    setup_logging()
    root = Path(args.tf_checkpoint_root)
    if not root.is_dir():
        raise MTDNNInputError("--tf_checkpoint_root: folder not found", root)
    config = read_bert_config(root)
    prefix = checkpoint_prefix(root)
    variables = read_tf_variables(prefix)
    result = {"state": convert(variables, config, prefix), "config": config}
    try:
        with atomic_write(args.pytorch_checkpoint_path, "wb") as handle:
            torch.save(result, handle)
    except (OSError, RuntimeError) as err:
        raise MTDNNInputError(f"cannot write: {err}", args.pytorch_checkpoint_path) from None
    skipped = len(variables) - len(result["state"])
    logger.info("wrote %s: %d weights (%d TF variables skipped)", args.pytorch_checkpoint_path, len(result["state"]), skipped)
    return result


if __name__ == "__main__":
    run_cli(main)

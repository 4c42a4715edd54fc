"""Strip a trained MT-DNN checkpoint to its encoder: the released ``{"state", "config"}`` format (SPEC §8).

    python scripts/strip_model.py --checkpoint checkpoint/model_2.pt --fout mt_dnn_base_uncased.pt

Drops the task heads (``scoring_list.*`` and every other non-encoder weight, except a shared
``pooler.*`` of encoders shipped without one), keeps the encoder's pooler, uses the EMA weights
when the checkpoint carries them (``"ema"``), and cuts a BERT config to the 11 keys of the released
files. The output starts a new run: ``train.py --init_checkpoint OUT.pt --tokenizer NAME``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import atomic_write
from data_utils.log_utils import setup_logging
from mt_dnn.checkpoint import encoder_config_from_checkpoint, load_mtdnn_checkpoint
from mt_dnn.state_keys import BERT_CONFIG_KEYS, ENCODER_PREFIX, normalize_state_keys

logger = logging.getLogger("mt_dnn")

# A shared pooler the network adds to encoders without one (matcher.py); it belongs with the encoder.
SHARED_POOLER_PREFIX = "pooler."


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of strip_model.py."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model_*.pt written by train.py (or a released MT-DNN .pt)")
    p.add_argument("--fout", required=True, help="encoder-only .pt to write")
    return p


def stripped(checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
    """``{"state", "config"}``: encoder (+ pooler) weights, EMA ones when present; a BERT config cut to 11 keys."""
    ema = checkpoint.get("ema")
    state = ema if isinstance(ema, dict) and ema else checkpoint["state"]
    if state is ema:
        logger.info("using the checkpoint's EMA weights")
    kept = {
        key: value
        for key, value in normalize_state_keys(state).items()
        if key.startswith((ENCODER_PREFIX, SHARED_POOLER_PREFIX))
    }
    if not any(key.startswith(ENCODER_PREFIX) for key in kept):
        raise MTDNNInputError(f"no encoder weights ({ENCODER_PREFIX}*) in the checkpoint", path)
    config = encoder_config_from_checkpoint(checkpoint).to_dict()
    if config.get("model_type") == "bert":
        encoder_config = {key: config[key] for key in BERT_CONFIG_KEYS}
    else:
        logger.warning("a %s encoder: its full config is kept (the released format holds BERT only)", config.get("model_type"))
        encoder_config = {"encoder_config": config}
    dropped = len(state) - len(kept)
    logger.info("kept %d encoder tensors, dropped %d (task heads and buffers)", len(kept), dropped)
    return {"state": kept, "config": encoder_config}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write the stripped checkpoint; returns what was written."""
    args = build_parser().parse_args(argv)
    setup_logging()
    result = stripped(load_mtdnn_checkpoint(args.checkpoint), args.checkpoint)
    try:
        with atomic_write(args.fout, "wb") as handle:
            torch.save(result, handle)
    except (OSError, RuntimeError) as err:
        raise MTDNNInputError(f"cannot write: {err}", args.fout) from None
    logger.info("wrote %s", Path(args.fout))
    return result


if __name__ == "__main__":
    run_cli(main)

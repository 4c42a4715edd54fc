"""Export a trained MT-DNN checkpoint as a Hugging Face encoder folder plus its task heads.

    python scripts/export_hf.py --checkpoint checkpoint/model_2.pt --output_dir exported/rte_mtdnn

``--output_dir`` receives the encoder (``save_pretrained``: ``AutoModel.from_pretrained(DIR)``
loads it anywhere), the tokenizer, the heads (``mtdnn_heads.safetensors``), the checkpoint's task
definitions (``task_defs.yml``), ``mtdnn.json`` and a model card ``README.md`` listing the tasks,
their label sets and the dev metrics of the score files beside the checkpoint
(``<dataset>_dev_scores_epoch_<e>.json``). ``MTDNNPredictor.from_checkpoint(DIR)`` and
``predict.py --checkpoint DIR`` load the folder and predict exactly as from the ``.pt``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.log_utils import setup_logging
from mt_dnn.checkpoint import load_run_checkpoint
from mt_dnn.export import write_export
from mt_dnn.sources import load_tokenizer

logger = logging.getLogger("mt_dnn")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of export_hf.py."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model_*.pt written by train.py")
    p.add_argument("--output_dir", required=True, help="folder to create (must not exist, or be empty)")
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer id/folder to save beside the encoder (default: the one the checkpoint names)"
    )
    return p


def main(argv: list[str] | None = None) -> Path:
    """Write the export folder; returns its path."""
    args = build_parser().parse_args(argv)
    setup_logging()
    run = load_run_checkpoint(args.checkpoint, "cpu")
    source = args.tokenizer or run.tokenizer.get("name")
    if not source:
        raise MTDNNInputError("the checkpoint does not name its tokenizer: pass --tokenizer", args.checkpoint)
    tokenizer = load_tokenizer(str(source), None, "--tokenizer")
    out = write_export(run, tokenizer, args.checkpoint, args.output_dir)
    logger.info("exported %s (tasks %s) to %s", args.checkpoint, ", ".join(run.task_names), out)
    return out


if __name__ == "__main__":
    run_cli(main)

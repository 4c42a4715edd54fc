"""Canonical TSV → tokenized JSON lines, one output folder per tokenizer (SPEC §3.3).

    python prepro_std.py --model bert-base-uncased --root_dir data/canonical_data \\
        --task_def experiments/glue/glue_task_def.yml
    python prepro_std.py --model /models/all-MiniLM-L6-v2 --root_dir data/canonical_data \\
        --task_def experiments/glue/glue_task_def.yml --tasks rte,stsb --workers 2

Every ``<task>_<split>.tsv`` in --root_dir (also ``scitail_001_train.tsv`` and
``mnli_matched_dev.tsv``: the task is the name's prefix; ``ax_*`` uses the mnli task unless
the YAML defines ``ax``) becomes ``<root_dir>/<model>/<same name>.json``, where ``<model>`` is
an HF id as given (``microsoft/deberta-base`` nests) or a local folder's last component.
A file whose task the YAML does not define is an error unless --tasks/--datasets picks the
files. One ``json.dumps`` object a line: ``uid, label, token_id, type_id, attention_mask``
(multi-hypothesis: ``uid, label, token_id, type_id, ruid, olabel, attention_mask`` with one
list per hypothesis; Seqence: ``uid, label, token_id, type_id``), then ``softlabel`` when the
canonical file has a soft-label column.

Pairs are tokenized as ``tokenizer(premise, hypothesis, truncation="longest_first",
max_length=--max_seq_len)`` would; ``type_id`` is all zeros for tokenizers without token
type ids (RoBERTa). Sequence labelling tokenizes each word alone: its first sub-token keeps the
word's tag, later ones get ``X``, the special tokens ``CLS``/``SEP``; a word with no sub-tokens
is dropped with its tag; truncation counts sub-tokens. With --do_padding every list is padded
to --max_seq_len (not for sequence labelling: tag lists have no pad id; the batcher pads them).
--workers N tokenizes chunks of 2000 rows in N processes (each runs the Rust tokenizer on one
thread) while this process reads and checks the next rows and writes the results in order; the
output is byte-identical to --workers 1. With --workers 1 everything runs here, and the Rust
tokenizer may spread each batch over its own threads (``TOKENIZERS_PARALLELISM``, on by default).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.features import (
    EncodeOptions,
    FeatureEncoder,
    FeatureWriter,
    find_datasets,
    output_dir,
    wants_own_lowercasing,
)
from data_utils.log_utils import setup_logging
from data_utils.task_def import load_task_defs
from mt_dnn.sources import check_model_source, check_vocabulary

logger = logging.getLogger("mt_dnn")


def load_tokenizer(model: str, cache_dir: str | None) -> Any:
    """``AutoTokenizer.from_pretrained`` with a one-line error when the tokenizer cannot be loaded."""
    from transformers import AutoTokenizer

    check_model_source(model, "--model", f"--model {model!r}: cannot load its tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, cache_dir=cache_dir)
    # transformers raises many types here (OSError, ValueError, HTTP errors); all mean "cannot load".
    except Exception as err:  # noqa: BLE001
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MTDNNInputError(f"--model {model!r}: cannot load its tokenizer: {first_line}") from None
    check_vocabulary(tokenizer, model, "--model")
    return tokenizer


# --- command line -------------------------------------------------------------------------


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of SPEC §3.3."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bert-base-uncased", help="HF model id or local folder of the tokenizer")
    parser.add_argument("--root_dir", default="data/canonical_data", help="folder of the canonical TSV files")
    parser.add_argument("--task_def", default="experiments/glue/glue_task_def.yml", help="YAML task definitions")
    parser.add_argument("--max_seq_len", type=int, default=512)
    parser.add_argument("--do_lower_case", action="store_true", help="lowercase texts (tokenizers without their own setting)")
    parser.add_argument("--do_lower", action="store_true", help="upstream's spelling of --do_lower_case")
    parser.add_argument("--do_padding", action="store_true", help="pad every list to --max_seq_len")
    parser.add_argument(
        "--workers", type=int, default=1, help="tokenizer processes (default 1: tokenize in this process)"
    )
    parser.add_argument("--transformer_cache", default=".cache", help="cache folder for downloaded tokenizers")
    picks = parser.add_mutually_exclusive_group()
    picks.add_argument("--tasks", type=_comma_list, help="only these tasks' files, e.g. rte,mnli")
    picks.add_argument("--datasets", type=_comma_list, help="only these files (stems), e.g. rte_dev,mnli_matched_dev")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Tokenize the canonical files of --root_dir into ``<root_dir>/<model>/*.json``."""
    args = parse_args(argv)
    setup_logging()
    task_defs = load_task_defs(args.task_def)
    root_dir = Path(args.root_dir)
    if not root_dir.is_dir():
        raise MTDNNInputError("--root_dir: folder not found", root_dir)
    datasets = find_datasets(root_dir, task_defs, args.task_def, args.tasks, args.datasets)
    out_dir = output_dir(root_dir, args.model)
    tokenizer = load_tokenizer(args.model, args.transformer_cache)
    options = EncodeOptions(
        max_seq_len=args.max_seq_len,
        do_padding=args.do_padding,
        lowercase=wants_own_lowercasing(tokenizer, args.do_lower_case or args.do_lower),
    )
    encoder = FeatureEncoder(tokenizer, options)
    with FeatureWriter(encoder, args.workers) as writer:
        for dataset in datasets:
            started = time.perf_counter()
            out_path = out_dir / f"{dataset.name}.json"
            count = writer.write(dataset.path, out_path, dataset.task_def)
            elapsed = time.perf_counter() - started
            logger.info("%s: %d rows → %s (%.0f rows/s)", dataset.path, count, out_path, count / max(elapsed, 1e-9))


if __name__ == "__main__":
    run_cli(main)

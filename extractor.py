"""Extract token vectors of chosen encoder layers for every line of a text file.

    python extractor.py --finput in.txt --foutput out.json --bert_model bert-base-uncased \
        --checkpoint checkpoint/model_2.pt --layers 10,11 --max_seq_length 512 --batch_size 4

Each input line is one example: ``text``, or ``text_a|||text_b`` for a pair (decided line
by line). Each output line is one JSON object: ``"uid"`` (the line's 0-based index as a
string), ``"tokens"`` (the tokenizer's tokens, specials included) and, per requested
layer, a key such as ``"10"`` holding the list of that layer's token vectors, one per
token. Layers index the encoder's hidden states: 0 is the embedding output, 1..L the
transformer layers; negative numbers count from the top (``-1`` = the last layer).

``--bert_model`` (a hub id or a folder) gives the tokenizer and, without ``--checkpoint``,
the encoder; ``--checkpoint`` (an MT-DNN ``.pt``: a ``train.py`` checkpoint or a released
model) supplies the encoder's architecture and weights (its ``bert.*`` keys). Lines longer
than ``--max_seq_length`` tokens are truncated (longest part first), and counted in a warning.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from typing import Any

import torch

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import atomic_write, iter_lines
from data_utils.log_utils import setup_logging
from data_utils.task_def import EncoderModelType
from mt_dnn.checkpoint import is_mtdnn_checkpoint
from mt_dnn.encode import extract
from mt_dnn.encoder import load_encoder
from mt_dnn.options import ModelOptions
from mt_dnn.sources import check_vocabulary

logger = logging.getLogger("mt_dnn")

PAIR_SEPARATOR = "|||"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of extractor.py."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--finput", required=True, help="text file, one example a line (text or text_a|||text_b)")
    p.add_argument("--foutput", required=True, help="JSON-lines output, one object a line")
    p.add_argument("--bert_model", required=True, help="tokenizer (and encoder) hub id or folder")
    p.add_argument("--checkpoint", default=None, help="MT-DNN .pt whose encoder weights replace --bert_model's")
    p.add_argument("--layers", default="10,11", help="comma-separated hidden-state indices (0 = embeddings, -1 = last)")
    p.add_argument("--max_seq_length", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--do_lower_case", action="store_true", help="force lower-casing (default: the tokenizer's own setting)")
    p.add_argument("--transformer_cache", default=".cache")
    p.add_argument("--encoder_type", type=int, default=int(EncoderModelType.BERT),
                   help="accepted as upstream; the architecture comes from the model's config")
    p.add_argument(
        "--cuda",
        action=argparse.BooleanOptionalAction,
        default=torch.cuda.is_available(),
        help="run on the GPU (on by default when torch sees one); --no-cuda runs on the CPU",
    )
    return p


def parse_layers(text: str) -> list[int]:
    """``10,11`` → ``[10, 11]``; a non-integer or repeated entry is an error."""
    layers = []
    for part in text.split(","):
        try:
            layer = int(part)
        except ValueError:
            raise MTDNNInputError(f"--layers: {part.strip()!r} is not an integer layer index") from None
        if layer in layers:
            raise MTDNNInputError(f"--layers: layer {layer} is requested twice")
        layers.append(layer)
    return layers


def check_layers(layers: Sequence[int], n_hidden_layers: int) -> None:
    """Every index must address one of the encoder's ``n_hidden_layers + 1`` hidden states."""
    n_states = n_hidden_layers + 1
    for layer in layers:
        if not -n_states <= layer < n_states:
            raise MTDNNInputError(
                f"--layers: layer {layer} is out of range: the encoder has {n_states} hidden states "
                f"(0 = embeddings .. {n_hidden_layers}, or -1 .. -{n_states})"
            )


def read_examples(path: str) -> list[tuple[str, str | None]]:
    """``(text_a, text_b or None)`` per line; a blank line, an empty part or a second ``|||`` is an error."""
    examples: list[tuple[str, str | None]] = []
    for line_no, line in iter_lines(path):
        parts = [part.strip() for part in line.split(PAIR_SEPARATOR)]
        if len(parts) > 2:
            raise MTDNNInputError(f"{len(parts) - 1} '{PAIR_SEPARATOR}' separators; a line is text or text_a|||text_b", path, line_no)
        if not all(parts):
            what = "empty line" if len(parts) == 1 else f"empty {'text_a' if not parts[0] else 'text_b'}"
            raise MTDNNInputError(f"{what}: a line is text or text_a|||text_b", path, line_no)
        examples.append((parts[0], parts[1] if len(parts) == 2 else None))
    if not examples:
        raise MTDNNInputError("no examples: the file is empty", path)
    return examples


def load_tokenizer(args: argparse.Namespace) -> Any:
    """The tokenizer of ``--bert_model``, lower-casing when ``--do_lower_case`` asks for it."""
    from transformers import AutoTokenizer

    kwargs = {"do_lower_case": True} if args.do_lower_case else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.bert_model, cache_dir=args.transformer_cache, **kwargs)
    except OSError as err:
        raise MTDNNInputError(f"cannot load the tokenizer of {args.bert_model!r}: {str(err).splitlines()[0]}") from None
    check_vocabulary(tokenizer, args.bert_model, "--bert_model")
    # Vectors are cut to the real length from the left, so padding must go on the right.
    tokenizer.padding_side = "right"
    return tokenizer


def load_extraction_encoder(args: argparse.Namespace) -> torch.nn.Module:
    """``--checkpoint``'s encoder when given (architecture and weights), else ``--bert_model``'s."""
    source = args.bert_model
    if args.checkpoint is not None:
        if not is_mtdnn_checkpoint(args.checkpoint):
            raise MTDNNInputError("--checkpoint must be an existing MT-DNN .pt file", args.checkpoint)
        source = args.checkpoint
    return load_encoder(ModelOptions(init_checkpoint=source, transformer_cache=args.transformer_cache))


def tokenize(tokenizer: Any, examples: Sequence[tuple[str, str | None]], max_len: int) -> list[dict[str, list[int]]]:
    """Tokenizer features of every example; over-long ones truncated longest part first (and counted)."""
    features, truncated = [], []
    for index, (text_a, text_b) in enumerate(examples):
        encoded = tokenizer(text_a, text_b, verbose=False)
        if len(encoded["input_ids"]) > max_len:
            encoded = tokenizer(text_a, text_b, truncation="longest_first", max_length=max_len)
            truncated.append(index)
        features.append(dict(encoded))
    if truncated:
        logger.warning(
            "%d lines are longer than --max_seq_length %d tokens and were truncated (first: line %d)",
            len(truncated), max_len, truncated[0] + 1,
        )
    return features


def main(argv: list[str] | None = None) -> None:
    """Write one JSON line of token vectors per input line to ``--foutput`` (atomically)."""
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.batch_size < 1:
        raise MTDNNInputError("--batch_size must be at least 1")
    try:
        EncoderModelType(args.encoder_type)
    except ValueError:
        raise MTDNNInputError(f"--encoder_type {args.encoder_type} is not one of {[int(t) for t in EncoderModelType]}") from None
    layers = parse_layers(args.layers)
    examples = read_examples(args.finput)
    if args.cuda and not torch.cuda.is_available():
        logger.warning("--cuda: no GPU is available, running on CPU")
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")

    tokenizer = load_tokenizer(args)
    encoder = load_extraction_encoder(args).to(device)
    config = encoder.config
    check_layers(layers, config.num_hidden_layers)
    if len(tokenizer) > config.vocab_size:
        raise MTDNNInputError(
            f"the tokenizer of {args.bert_model!r} has {len(tokenizer)} tokens but the encoder's vocabulary "
            f"only {config.vocab_size}: they do not belong together"
        )
    shortest = tokenizer.num_special_tokens_to_add(pair=True) + 2
    max_positions = getattr(config, "max_position_embeddings", args.max_seq_length)
    if not shortest <= args.max_seq_length <= max_positions:
        raise MTDNNInputError(f"--max_seq_length must be between {shortest} and the encoder's {max_positions} positions")

    features = tokenize(tokenizer, examples, args.max_seq_length)
    with atomic_write(args.foutput) as handle:
        for output in extract(encoder, tokenizer, features, layers, args.batch_size, device):
            handle.write(json.dumps(output, ensure_ascii=False) + "\n")
    logger.info("wrote %d examples × layers %s to %s", len(features), ",".join(map(str, layers)), args.foutput)


if __name__ == "__main__":
    run_cli(main)

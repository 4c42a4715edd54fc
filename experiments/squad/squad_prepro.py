"""SQuAD v1.1 / v2.0 JSON → span features (JSON lines) for the `squad` and `squad-v2` tasks (SPEC §3.4).

Run:
    python experiments/squad/squad_prepro.py --model bert-base-uncased --root_dir data
    python experiments/squad/squad_prepro.py --model bert-base-uncased --root_dir data --version_2_with_negative
    python experiments/squad/squad_prepro.py --model /path/to/local/model --root_dir data --max_seq_length 384 --doc_stride 128

Inputs: <root>/squad/{train,dev}.json (v1.1) or, with --version_2_with_negative,
<root>/squad_v2/{train,dev}.json (v2.0); the official names train-v1.1.json / dev-v2.0.json
in those folders are accepted too. An optional test.json (e.g. a held-out part of the official
dev set) is written like dev; its questions may come without answers.
Outputs: <root>/<model>/{squad|squad-v2}_{train,dev[,test]}.json, where <model> is the Hugging Face
id as given or the last path component of a local model folder.

Each question is tokenized as `[CLS] question [SEP] context [SEP]` by the model's fast tokenizer,
the context cut (`only_second`) into windows of --max_seq_length tokens, consecutive windows
sharing --doc_stride context tokens (the tokenizer's `stride`). One JSON object per window:
    train: uid, token_id, mask, type_id, label
    dev:   the same, then offset_mapping, null_ans_index, context, answer
label = [start, end, is_impossible]: the answer's first and last token in the window, or the
[CLS] index twice when the question has no answer or its answer is not wholly inside the window;
is_impossible is the question's own flag (v2.0). Only a question's first answer makes the label;
dev rows list every gold answer text in `answer` ([] for an unanswerable v2.0 question) and give
offset_mapping as [start, end] character offsets into `context` for context tokens, null elsewhere.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.features import model_dir_name
from data_utils.file_io import atomic_write, read_text
from data_utils.log_utils import setup_logging

logger = logging.getLogger("mt_dnn")

SPLITS = ("train", "dev")
# Written like dev when its file exists.
OPTIONAL_SPLITS = ("test",)
# Questions tokenized per call of the fast tokenizer's batch API.
CHUNK = 256


@dataclass
class Question:
    """One SQuAD question with its paragraph and gold answers ``(text, answer_start)``."""

    uid: str
    question: str
    context: str
    answers: list[tuple[str, int]]
    is_impossible: bool


@dataclass
class Stats:
    """Counts reported in the log after a split is written."""

    questions: int = 0
    windows: int = 0
    answer_outside: int = 0
    questions_cut: int = 0


def _get(obj: Any, key: str, kind: type, path: Path, where: str) -> Any:
    """``obj[key]`` checked to be of type ``kind``, else a located error."""
    if not isinstance(obj, dict) or not isinstance(obj.get(key), kind) or isinstance(obj.get(key), bool):
        raise MTDNNInputError(f"{where}: field {key!r} missing or not a {kind.__name__}", path)
    return obj[key]


def load_squad(path: Path, version_2: bool, answers_required: bool = True) -> list[Question]:
    """Read a SQuAD JSON file into questions, checking every field the features need.

    Without ``answers_required`` (a test split) an answerable question may have no answers.
    """
    if not path.is_file():
        raise MTDNNInputError("file not found", path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise MTDNNInputError(f"invalid JSON: {err.msg}", path, err.lineno) from None
    questions: list[Question] = []
    mismatched: list[str] = []
    for a, article in enumerate(_get(data, "data", list, path, "top level")):
        for p, paragraph in enumerate(_get(article, "paragraphs", list, path, f"data[{a}]")):
            context = _get(paragraph, "context", str, path, f"data[{a}].paragraphs[{p}]")
            for q, qa in enumerate(_get(paragraph, "qas", list, path, f"data[{a}].paragraphs[{p}]")):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                uid = str(_get(qa, "id", str, path, where))
                where = f"question {uid}"
                text = _get(qa, "question", str, path, where)
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, bool):
                    raise MTDNNInputError(f"{where}: 'is_impossible' must be true or false", path)
                if impossible and not version_2:
                    raise MTDNNInputError(f"{where}: unanswerable question in SQuAD v1.1 data (use --version_2_with_negative)", path)
                answers = []
                for n, answer in enumerate(qa.get("answers", []) if not impossible else []):
                    answer_text = _get(answer, "text", str, path, f"{where}, answer {n}")
                    start = _get(answer, "answer_start", int, path, f"{where}, answer {n}")
                    if not 0 <= start <= start + len(answer_text) <= len(context):
                        raise MTDNNInputError(f"{where}, answer {n}: answer_start {start} is outside the context", path)
                    if context[start : start + len(answer_text)] != answer_text:
                        mismatched.append(uid)
                    answers.append((answer_text, start))
                if not impossible and not answers and answers_required:
                    raise MTDNNInputError(f"{where}: answerable question without answers", path)
                questions.append(Question(uid, text.strip(), context, answers, impossible))
    if mismatched:
        # Spans still come from answer_start, as the official evaluation uses the text.
        logger.warning("%s: %d answers whose text differs from the context at answer_start (first: question %s)",
                       path, len(mismatched), mismatched[0])
    if not questions:
        raise MTDNNInputError("no questions in the file", path)
    return questions


def answer_char_span(context: str, text: str, start: int) -> tuple[int, int]:
    """Character span ``[start, end)`` of an answer, without whitespace at its ends."""
    end = start + len(text)
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def answer_token_span(offsets: Sequence[Sequence[int]], sequence_ids: Sequence[int | None],
                      start_char: int, end_char: int) -> tuple[int, int] | None:
    """First and last context token covering ``[start_char, end_char)``; ``None`` if not inside the window."""
    context_tokens = [i for i, sid in enumerate(sequence_ids) if sid == 1]
    if not context_tokens or end_char <= start_char:
        return None
    if offsets[context_tokens[0]][0] > start_char or offsets[context_tokens[-1]][1] < end_char:
        return None
    start = next(i for i in context_tokens if offsets[i][1] > start_char)
    end = next(i for i in reversed(context_tokens) if offsets[i][0] < end_char)
    return (start, end) if start <= end else None


def _cut_questions(tokenizer: Any, questions: list[Question], max_query_length: int) -> int:
    """Cut questions longer than ``max_query_length`` tokens at a token boundary; return how many."""
    encoded = tokenizer([q.question for q in questions], add_special_tokens=False, return_offsets_mapping=True)
    cut = 0
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        if len(offsets) > max_query_length:
            question.question = question.question[: offsets[max_query_length - 1][1]]
            cut += 1
    return cut


def build_features(tokenizer: Any, questions: list[Question], max_seq_length: int, doc_stride: int,
                   max_query_length: int, is_train: bool, stats: Stats) -> Iterator[dict]:
    """Yield one feature dict per (question, window), in question order."""
    for first in range(0, len(questions), CHUNK):
        chunk = questions[first : first + CHUNK]
        stats.questions_cut += _cut_questions(tokenizer, chunk, max_query_length)
        encoded = tokenizer(
            [q.question for q in chunk],
            [q.context for q in chunk],
            truncation="only_second",
            max_length=max_seq_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        for window, sample_index in enumerate(encoded["overflow_to_sample_mapping"]):
            question = chunk[sample_index]
            token_ids = encoded["input_ids"][window]
            sequence_ids = encoded.sequence_ids(window)
            offsets = encoded["offset_mapping"][window]
            cls_index = token_ids.index(tokenizer.cls_token_id)
            span = None
            if question.answers:
                text, start = question.answers[0]
                span = answer_token_span(offsets, sequence_ids, *answer_char_span(question.context, text, start))
                stats.answer_outside += span is None
            start_token, end_token = span if span is not None else (cls_index, cls_index)
            feature = {
                "uid": question.uid,
                "token_id": token_ids,
                "mask": encoded["attention_mask"][window],
                "type_id": encoded["token_type_ids"][window] if "token_type_ids" in encoded else [0] * len(token_ids),
                "label": [start_token, end_token, int(question.is_impossible)],
            }
            if not is_train:
                feature["offset_mapping"] = [list(offsets[i]) if sid == 1 else None for i, sid in enumerate(sequence_ids)]
                feature["null_ans_index"] = cls_index
                feature["context"] = question.context
                feature["answer"] = [text for text, _ in question.answers]
            stats.windows += 1
            yield feature
        stats.questions += len(chunk)


def load_fast_tokenizer(model: str, cache_dir: str | None) -> Any:
    """The model's fast tokenizer (offset mapping needs one); a clear error otherwise."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model, cache_dir=cache_dir, use_fast=True)
    except (OSError, ValueError) as err:
        raise MTDNNInputError(f"cannot load the tokenizer of --model {model!r}: {str(err).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise MTDNNInputError(f"--model {model!r} has no fast tokenizer; span features need its offset mapping")
    if tokenizer.cls_token_id is None:
        raise MTDNNInputError(f"--model {model!r}: the tokenizer has no [CLS] token to mark unanswerable questions")
    return tokenizer


def source_path(root: Path, version_2: bool, split: str, required: bool = True) -> Path | None:
    """The input file of a split: ``<split>.json`` or the official file name, whichever exists."""
    folder, version = ("squad_v2", "v2.0") if version_2 else ("squad", "v1.1")
    candidates = [root / folder / f"{split}.json", root / folder / f"{split}-{version}.json"]
    for path in candidates:
        if path.is_file():
            return path
    if not required:
        return None
    raise MTDNNInputError(f"no SQuAD {version} {split} file: looked for {' and '.join(map(str, candidates))}")


def main(argv: list[str] | None = None) -> None:
    """Turn SQuAD train/dev JSON into span features for one tokenizer."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bert-base-uncased",
                        help="Hugging Face id or local folder of the tokenizer (default: %(default)s)")
    parser.add_argument("--root_dir", default="data", help="folder holding squad/ or squad_v2/ (default: %(default)s)")
    parser.add_argument("--max_seq_length", type=int, default=384, help="tokens per window (default: %(default)s)")
    parser.add_argument("--doc_stride", type=int, default=128,
                        help="context tokens shared by consecutive windows (default: %(default)s)")
    parser.add_argument("--max_query_length", type=int, default=64,
                        help="questions are cut to this many tokens (default: %(default)s)")
    parser.add_argument("--version_2_with_negative", action="store_true",
                        help="SQuAD v2.0 (squad-v2) instead of v1.1 (default: off)")
    parser.add_argument("--transformer_cache", "--cache_dir", dest="cache_dir", default=".cache",
                        help="Hugging Face download cache (default: %(default)s)")
    parser.add_argument("--log_file", default=None, help="also log to this file (default: the console only)")
    args = parser.parse_args(argv)
    setup_logging(args.log_file)

    root = Path(args.root_dir)
    sources = {split: source_path(root, args.version_2_with_negative, split) for split in SPLITS}
    for split in OPTIONAL_SPLITS:
        path = source_path(root, args.version_2_with_negative, split, required=False)
        if path is not None:
            sources[split] = path
    out_dir = root / model_dir_name(args.model)
    tokenizer = load_fast_tokenizer(args.model, args.cache_dir)
    room = args.max_seq_length - args.max_query_length - tokenizer.num_special_tokens_to_add(pair=True)
    if args.max_query_length < 1 or not 0 <= args.doc_stride < room:
        raise MTDNNInputError(
            f"--doc_stride {args.doc_stride} must be in [0, {room}): the context room left by --max_seq_length "
            f"{args.max_seq_length} after --max_query_length {args.max_query_length} and the special tokens"
        )

    # Read both splits before writing, so a bad file leaves no partial set of outputs behind.
    data = {split: load_squad(path, args.version_2_with_negative, answers_required=split in SPLITS)
            for split, path in sources.items()}
    task = "squad-v2" if args.version_2_with_negative else "squad"
    for split, questions in data.items():
        stats = Stats()
        target = out_dir / f"{task}_{split}.json"
        with atomic_write(target) as handle:
            for feature in build_features(tokenizer, questions, args.max_seq_length, args.doc_stride,
                                          args.max_query_length, split == "train", stats):
                handle.write(json.dumps(feature) + "\n")
        logger.info(
            "%s: %d questions → %d windows (%d with the answer outside, labelled [CLS]; %d questions cut to %d tokens) → %s",
            sources[split], stats.questions, stats.windows, stats.answer_outside, stats.questions_cut,
            args.max_query_length, target,
        )


if __name__ == "__main__":
    run_cli(main)

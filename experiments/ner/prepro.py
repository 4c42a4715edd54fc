"""CoNLL-2003 → canonical sequence-labelling TSV for the `ner`, `pos` and `chunk` tasks (SPEC §3.4).

Run:
    python experiments/ner/prepro.py --data_dir data/ner --output_dir data/canonical_data

Reads <data_dir>/{train,valid,test}.txt (valid becomes dev). Each token line is split on single
spaces: word (col 0), POS (col 1), chunk (col 2), NER tag (last col). Blank lines and
`-DOCSTART-` lines end a sentence; the last sentence of a file counts even without a blank line
after it. Every tag must be a label of its task in ner_task_def.yml. A token line has exactly
four columns: more (a space inside a word, a doubled space) would shift the tags, so it is an error.

Writes <output_dir>/{ner,pos,chunk}_{train,dev,test}.tsv, rows `uid \\t labels \\t words` with
labels and words as JSON lists and uid a running count per file.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from data_utils.canonical_writer import write_canonical
from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import iter_lines
from data_utils.log_utils import setup_logging
from data_utils.task_def import TaskDef, load_task_defs

logger = logging.getLogger("mt_dnn")

DEFAULT_TASK_DEF = Path(__file__).resolve().parent / "ner_task_def.yml"
# Source file → split name of the outputs.
SPLIT_FILES = (("train.txt", "train"), ("valid.txt", "dev"), ("test.txt", "test"))
# Task → column of its tag in a token line (NER is the last column).
TAG_COLUMNS = (("pos", 1), ("chunk", 2), ("ner", -1))
COLUMNS = 4  # word POS chunk NER


@dataclass
class Sentence:
    """One sentence: its words and, per task, one tag per word."""

    words: list[str] = field(default_factory=list)
    tags: dict[str, list[str]] = field(default_factory=lambda: {task: [] for task, _ in TAG_COLUMNS})


def read_conll(path: Path, task_defs: dict[str, TaskDef]) -> list[Sentence]:
    """Read a CoNLL-2003 file into sentences, checking every tag against its task's labels."""
    known = {task: set(task_defs[task].labels or ()) for task, _ in TAG_COLUMNS}
    sentences: list[Sentence] = []
    current = Sentence()
    for line_no, line in iter_lines(path):
        if not line or line.startswith("-DOCSTART"):
            if current.words:
                sentences.append(current)
                current = Sentence()
            continue
        cells = line.split(" ")
        if len(cells) != COLUMNS:
            expected = f"at least {COLUMNS}" if len(cells) < COLUMNS else f"{COLUMNS}"
            hint = " (a space inside a word, or a doubled space?)" if len(cells) > COLUMNS else ""
            raise MTDNNInputError(
                f"expected {expected} space-separated columns (word POS chunk NER), got {len(cells)}{hint}", path, line_no
            )
        current.words.append(cells[0])
        for task, column in TAG_COLUMNS:
            tag = cells[column]
            if tag not in known[task]:
                raise MTDNNInputError(f"{task} tag {tag!r} of word {cells[0]!r} is not one of the {task} labels in the task definition", path, line_no)
            current.tags[task].append(tag)
    # Upstream lost a file's final sentence when no blank line followed it.
    if current.words:
        sentences.append(current)
    return sentences


def canonical_rows(sentences: list[Sentence], task: str) -> list[list[str]]:
    """Rows ``[uid, json(labels), json(words)]`` of one task, uid counting from 0."""
    return [[str(uid), json.dumps(sentence.tags[task]), json.dumps(sentence.words)] for uid, sentence in enumerate(sentences)]


def main(argv: list[str] | None = None) -> None:
    """Convert CoNLL-2003 train/valid/test to canonical TSV for ner, pos and chunk."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="data/ner", help="folder holding train.txt, valid.txt, test.txt")
    parser.add_argument("--output_dir", default="data/canonical_data")
    parser.add_argument("--seed", type=int, default=13, help="accepted for upstream's command line; the conversion uses no randomness")
    parser.add_argument("--task_def", default=str(DEFAULT_TASK_DEF), help="task definitions holding the tag lists")
    parser.add_argument("--log_file", default=None)
    args = parser.parse_args(argv)
    setup_logging(args.log_file)

    task_defs = load_task_defs(args.task_def)
    for task, _ in TAG_COLUMNS:
        if task not in task_defs or task_defs[task].labels is None:
            raise MTDNNInputError(f"task {task!r} with a labels list is required", args.task_def)

    data_dir = Path(args.data_dir)
    # Read every file before writing, so a bad line leaves no partial set of outputs behind.
    splits = {split: read_conll(data_dir / name, task_defs) for name, split in SPLIT_FILES}

    out_dir = Path(args.output_dir)
    for split, sentences in splits.items():
        for task, _ in TAG_COLUMNS:
            write_canonical(out_dir / f"{task}_{split}.tsv", canonical_rows(sentences, task))
        tokens = sum(len(sentence.words) for sentence in sentences)
        logger.info("%s: %d sentences, %d tokens → %s/{ner,pos,chunk}_%s.tsv", split, len(sentences), tokens, out_dir, split)


if __name__ == "__main__":
    run_cli(main)

"""SciTail and SNLI → canonical TSV, plus the domain-adaptation training subsets (SPEC §3.4).

Run:
    python experiments/domain_adaptation/domain_prepro.py --root_dir data
    python experiments/domain_adaptation/domain_prepro.py --root_dir data --seed 13 --tasks scitail,snli

Inputs, per split (train, dev, test):
    SciTail  <root>/SciTail/tsv_format/scitail_1.0_<split>.tsv   premise, hypothesis, label (no header)
    SNLI     the first of these that exists:
             1. <root>/SNLI/<split>.tsv                  GLUE layout (header; uid col 0, premise col 7,
                                                         hypothesis col 8, label the last col)
             2. <root>/snli_1.0/snli_1.0_<split>.txt     original layout (header; gold_label col 0,
                                                         sentence1 col 5, sentence2 col 6)
             3. <root>/snli_1.0/snli_1.0_<split>.jsonl   original JSON lines (gold_label, sentence1,
                                                         sentence2, pairID)
Outputs, in <root>/canonical_data/ (rows: uid, label, premise, hypothesis):
    {scitail,snli}_{train,dev,test}.tsv and the training subsets {scitail,snli}_{001,01,1}_train.tsv
    (0.1 %, 1 %, 10 % of the train rows; sampled without replacement with random.Random(seed),
    size max(1, round(fraction * n)) with Python's round, rows kept in their source order).

Rows without a gold label (SNLI `-`, SciTail premise `-`) are dropped and counted in the log.
A row with more columns than its layout allows, or whose annotator-label columns (SNLI) hold
something else than labels, is an error: a tab inside a sentence shifted its columns.
A task whose sources are all missing is skipped with a warning, unless named in --tasks (then it
is an error); a task with some splits present and others missing, or no task found at all, is
an error.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from data_utils.canonical_writer import write_canonical
from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import iter_lines
from data_utils.log_utils import setup_logging
from data_utils.task_def import TaskDef, load_task_defs

logger = logging.getLogger("mt_dnn")

TASKS = ("scitail", "snli")
SPLITS = ("train", "dev", "test")
# File-name suffix → fraction of the training rows (upstream's scitail_001 = 0.1 %, …).
SUBSETS = (("001", 0.001), ("01", 0.01), ("1", 0.1))
DEFAULT_TASK_DEF = Path(__file__).resolve().parent / "domain_adaptation_def.yml"
NO_LABEL = "-"

T = TypeVar("T")


@dataclass
class SplitData:
    """Canonical rows read from one source file, and how many rows lacked a gold label."""

    source: Path
    rows: list[list[str]]
    dropped: int


Reader = Callable[[Path, TaskDef], SplitData]


def _checked_label(task_def: TaskDef, raw: str, path: Path, line_no: int) -> str:
    """Return ``raw`` unchanged if it is one of the task's labels, else raise a located error."""
    try:
        task_def.encode_label(raw)
    except ValueError as err:
        raise MTDNNInputError(str(err), path, line_no) from None
    return raw


def _tsv_cells(path: Path, skip_header: bool, cols: tuple[int, int], what: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_no, cells)`` of a tab-separated file, read as upstream (strip, split on tabs).

    ``cols`` is the (fewest, most) columns a row of the layout has; any other count is an error.
    """
    fewest, most = cols
    for line_no, line in iter_lines(path):
        if skip_header and line_no == 1:
            continue
        if not line:
            continue  # a blank line holds no example
        cells = line.split("\t")
        if len(cells) > most:
            expected = f"{most}" if fewest == most else f"at most {most}"
            raise MTDNNInputError(
                f"expected {expected} tab-separated columns ({what}), got {len(cells)} (a tab inside a sentence?)", path, line_no
            )
        if len(cells) < fewest:
            expected = f"{fewest}" if fewest == most else f"at least {fewest}"
            raise MTDNNInputError(f"expected {expected} tab-separated columns ({what}), got {len(cells)}", path, line_no)
        yield line_no, cells


def _check_annotator_labels(cells: list[str], first: int, task_def: TaskDef, path: Path, line_no: int) -> None:
    """The annotator-label columns from ``first`` on hold labels (or nothing): else a tab inside a sentence shifted them."""
    for column, cell in enumerate(cells[first:], start=first + 1):
        if cell not in ("", NO_LABEL) and cell not in task_def.label_index:
            raise MTDNNInputError(
                f"column {column} should be an annotator label, got {cell[:40]!r} (a tab inside a sentence?)", path, line_no
            )


def read_scitail(path: Path, task_def: TaskDef) -> SplitData:
    """Read a SciTail ``tsv_format`` file (premise, hypothesis, label); uid = running count."""
    rows: list[list[str]] = []
    dropped = 0
    for line_no, cells in _tsv_cells(path, skip_header=False, cols=(3, 3), what="premise, hypothesis, label"):
        premise, hypothesis, label = cells
        if premise == NO_LABEL:
            dropped += 1
            continue
        rows.append([str(len(rows)), _checked_label(task_def, label, path, line_no), premise, hypothesis])
    return SplitData(path, rows, dropped)


def read_snli_glue(path: Path, task_def: TaskDef) -> SplitData:
    """Read a GLUE-layout SNLI file (header; uid col 0, premise col 7, hypothesis col 8, label last)."""
    rows: list[list[str]] = []
    dropped = 0
    # The GLUE files end with label1 (… label5) and gold_label after sentence2 (col 8).
    for line_no, cells in _tsv_cells(path, skip_header=True, cols=(11, 15), what="GLUE SNLI layout"):
        _check_annotator_labels(cells[:-1], 9, task_def, path, line_no)
        if cells[-1] == NO_LABEL:
            dropped += 1
            continue
        rows.append([cells[0], _checked_label(task_def, cells[-1], path, line_no), cells[7], cells[8]])
    return SplitData(path, rows, dropped)


def read_snli_txt(path: Path, task_def: TaskDef) -> SplitData:
    """Read an original ``snli_1.0_<split>.txt`` (header; gold_label col 0, sentences cols 5, 6)."""
    rows: list[list[str]] = []
    dropped = 0
    # captionID and pairID (cols 7, 8) and label1 … label5 follow sentence2 (col 6).
    for line_no, cells in _tsv_cells(path, skip_header=True, cols=(7, 14), what="snli_1.0 .txt layout"):
        _check_annotator_labels(cells, 9, task_def, path, line_no)
        if cells[0] == NO_LABEL:
            dropped += 1
            continue
        rows.append([str(len(rows)), _checked_label(task_def, cells[0], path, line_no), cells[5], cells[6]])
    return SplitData(path, rows, dropped)


def read_snli_jsonl(path: Path, task_def: TaskDef) -> SplitData:
    """Read an original ``snli_1.0_<split>.jsonl``; uid = pairID."""
    rows: list[list[str]] = []
    dropped = 0
    for line_no, line in iter_lines(path):
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise MTDNNInputError(f"invalid JSON: {err.msg}", path, line_no) from None
        if not isinstance(record, dict):
            raise MTDNNInputError("expected a JSON object", path, line_no)
        fields = []
        for key in ("gold_label", "sentence1", "sentence2", "pairID"):
            value = record.get(key)
            if not isinstance(value, str):
                raise MTDNNInputError(f"field {key!r} missing or not a string", path, line_no)
            fields.append(value)
        label, premise, hypothesis, pair_id = fields
        if label == NO_LABEL:
            dropped += 1
            continue
        rows.append([pair_id, _checked_label(task_def, label, path, line_no), premise, hypothesis])
    return SplitData(path, rows, dropped)


def source_candidates(root: Path, task: str, split: str) -> list[tuple[Path, Reader]]:
    """The source files a task's split may come from, in order of preference."""
    if task == "scitail":
        return [(root / "SciTail" / "tsv_format" / f"scitail_1.0_{split}.tsv", read_scitail)]
    return [
        (root / "SNLI" / f"{split}.tsv", read_snli_glue),
        (root / "snli_1.0" / f"snli_1.0_{split}.txt", read_snli_txt),
        (root / "snli_1.0" / f"snli_1.0_{split}.jsonl", read_snli_jsonl),
    ]


def subset_size(n: int, fraction: float) -> int:
    """Rows in a training subset: ``max(1, round(fraction * n))``."""
    return max(1, round(fraction * n))


def sample_subset(rows: Sequence[T], fraction: float, seed: int) -> list[T]:
    """Sample ``subset_size`` rows without replacement (own RNG seeded by ``seed``), in source order."""
    size = subset_size(len(rows), fraction)
    if size > len(rows):
        raise ValueError(f"cannot sample {size} rows from {len(rows)}")
    picked = sorted(random.Random(seed).sample(range(len(rows)), size))
    return [rows[index] for index in picked]


def _parse_tasks(raw: str | None) -> tuple[list[str], bool]:
    """The tasks to build and whether the user named them (then a missing source is an error)."""
    if raw is None:
        return list(TASKS), False
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        raise MTDNNInputError(f"--tasks: unknown task(s) {unknown or [raw]}; expected a comma-separated subset of {list(TASKS)}")
    return list(dict.fromkeys(names)), True


def _read_task(root: Path, task: str, task_def: TaskDef, required: bool) -> dict[str, SplitData] | None:
    """Read every split of a task; ``None`` (after one warning) when none of its sources exist."""
    found: dict[str, SplitData] = {}
    missing: list[str] = []
    for split in SPLITS:
        candidates = source_candidates(root, task, split)
        hit = next(((path, reader) for path, reader in candidates if path.is_file()), None)
        if hit is None:
            missing.append(f"{split} ({' or '.join(str(path) for path, _ in candidates)})")
            continue
        path, reader = hit
        found[split] = reader(path, task_def)
    if missing and (required or found):
        raise MTDNNInputError(f"task {task}: no source file for split(s) {'; '.join(missing)}")
    if missing:
        logger.warning("task %s: no source files found (%s); skipped", task, "; ".join(missing))
        return None
    return found


def main(argv: list[str] | None = None) -> None:
    """Convert SciTail and SNLI to canonical TSV and write the training subsets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", default="data", help="folder holding SciTail/, SNLI/ or snli_1.0/")
    parser.add_argument("--seed", type=int, default=13, help="seed of the subset sampler")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks to build (default: all found of scitail,snli)")
    parser.add_argument("--task_def", default=str(DEFAULT_TASK_DEF), help="task definitions holding the label lists")
    parser.add_argument("--log_file", default=None)
    args = parser.parse_args(argv)
    setup_logging(args.log_file)

    root = Path(args.root_dir)
    tasks, named = _parse_tasks(args.tasks)
    task_defs = load_task_defs(args.task_def)
    for task in tasks:
        if task not in task_defs:
            raise MTDNNInputError(f"task {task!r} is not defined", args.task_def)

    # Read and validate everything first, so a bad row leaves no partial set of outputs behind.
    data = {task: _read_task(root, task, task_defs[task], named) for task in tasks}
    if all(splits is None for splits in data.values()):
        raise MTDNNInputError(f"no source files of {', '.join(tasks)} found under {root} (see the warnings above)")
    for task, splits in data.items():
        if splits is not None and not splits["train"].rows:
            raise MTDNNInputError(f"task {task}: no labelled training rows, cannot build subsets", splits["train"].source)

    out_dir = root / "canonical_data"
    summary: list[str] = []
    for task, splits in data.items():
        if splits is None:
            summary.append(f"{task}: skipped (no source files)")
            continue
        for split, split_data in splits.items():
            count = write_canonical(out_dir / f"{task}_{split}.tsv", split_data.rows)
            summary.append(f"{task}_{split}: {count} rows from {split_data.source}, {split_data.dropped} unlabelled ('-') rows dropped")
        train_rows = splits["train"].rows
        for suffix, fraction in SUBSETS:
            count = write_canonical(out_dir / f"{task}_{suffix}_train.tsv", sample_subset(train_rows, fraction, args.seed))
            summary.append(f"{task}_{suffix}_train: {count} of {len(train_rows)} rows ({fraction:.1%}, seed {args.seed})")
    logger.info("domain adaptation data in %s:\n  %s", out_dir, "\n  ".join(summary))


if __name__ == "__main__":
    run_cli(main)

"""Soft labels for knowledge distillation (SPEC §6, §8): the teachers' probabilities averaged per uid.

A teacher is a score file as ``train.py`` and ``predict.py`` write it (``{"metrics",
"predictions", "uids", "scores"}``; for classification ``scores`` is the flat list of the
n_class softmax probabilities of each uid). The soft label of a uid is the mean of its
teachers' probability rows. ``add_soft_labels`` adds it to a dataset:

- tokenized JSON lines (``prepro_std.py`` output): a ``softlabel`` key on every line (replacing
  one already there), which ``train.py --mkd_opt 1`` reads; the other keys and the line order
  stay as they were;
- a canonical TSV (``.tsv``, upstream's ``--std_input``): with ``add_column`` a JSON-list
  column right after the label, which ``prepro_std.py`` turns into ``softlabel``; without it
  the label of a binary task becomes the class-1 probability, as upstream wrote it.

Everything is read and checked before the output is written (atomically), so bad input
leaves an existing output file as it was.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data_utils.canonical import canonical_fields, read_canonical
from data_utils.errors import MTDNNInputError
from data_utils.file_io import atomic_write, iter_json_lines
from data_utils.formats import get_data_format
from data_utils.score_files import read_score_file, scores_by_uid
from data_utils.task_def import TASK_TYPE_SPECS, TaskDef

# float32 softmax rows written as JSON sum to 1 within ~1e-6; a row further off is not a distribution.
SUM_TOLERANCE = 1e-3

SoftLabels = dict[str, list[float]]


def check_distillable(task_def: TaskDef) -> None:
    """``MTDNNInputError`` unless the task's type takes one soft probability per class."""
    if not task_def.spec.soft_label_per_class:
        per_class = ", ".join(t.name for t, spec in TASK_TYPE_SPECS.items() if spec.soft_label_per_class)
        raise MTDNNInputError(
            f"task {task_def.name}: soft labels of {task_def.task_type.name} tasks are not one probability per "
            f"class; distillation data can be built for {per_class} tasks"
        )


def teacher_probabilities(path: Path, n_class: int) -> SoftLabels:
    """One teacher's class probabilities per uid; a row that is not a probability distribution is an error."""
    per_uid = scores_by_uid(read_score_file(path), n_class, path)
    for uid, row in per_uid.items():
        total = sum(row)
        if min(row) < 0 or max(row) > 1 or abs(total - 1) > SUM_TOLERANCE:
            raise MTDNNInputError(
                f"uid {uid!r}: scores {row} (sum {total:.6g}) are not probabilities; a teacher's scores must be "
                "its softmax class probabilities, as train.py and predict.py write them for classification",
                path,
            )
    return per_uid


def check_same_uids(teacher: SoftLabels, lines: dict[str, int], input_path: Path, teacher_path: Path) -> None:
    """The teacher scores exactly the input's uids; the first uid missing on either side is named."""
    missing = [uid for uid in lines if uid not in teacher]
    if missing:
        first = missing[0]
        raise MTDNNInputError(
            f"{len(missing)} uid(s) of {input_path} have no scores here, first {first!r} (line {lines[first]}); "
            "score the file the soft labels are for",
            teacher_path,
        )
    extra = [uid for uid in teacher if uid not in lines]
    if extra:
        raise MTDNNInputError(
            f"{len(extra)} scored uid(s) are not in {input_path}, first {extra[0]!r}; "
            "was this teacher run on another file?",
            teacher_path,
        )


def average_teachers(
    score_paths: Sequence[Path], task_def: TaskDef, lines: dict[str, int], input_path: Path
) -> SoftLabels:
    """uid → the mean of the teachers' probability rows, for every uid of the input."""
    teachers = []
    for path in score_paths:
        teacher = teacher_probabilities(path, task_def.n_class)
        check_same_uids(teacher, lines, input_path, path)
        teachers.append(teacher)
    return {uid: [sum(column) / len(teachers) for column in zip(*(t[uid] for t in teachers))] for uid in lines}


def unique_uids(uid_lines: Iterable[tuple[str, int]], path: Path) -> dict[str, int]:
    """uid → its line number; a uid given twice is an error at its second line."""
    lines: dict[str, int] = {}
    for uid, line in uid_lines:
        if uid in lines:
            raise MTDNNInputError(
                f"uid {uid!r} appears again (first on line {lines[uid]}); soft labels are matched by uid", path, line
            )
        lines[uid] = line
    if not lines:
        raise MTDNNInputError("no rows: the file is empty", path)
    return lines


def read_features(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSON-lines file with their line numbers (blank lines skipped, as training does)."""
    samples = []
    for line_no, sample in iter_json_lines(path):
        if not isinstance(sample, dict) or "uid" not in sample:
            raise MTDNNInputError("a line must hold one JSON object with a 'uid'", path, line_no)
        samples.append((line_no, sample))
    return samples


def features_with_soft_labels(input_path: Path, score_paths: Sequence[Path], task_def: TaskDef) -> list[str]:
    """The input's JSON lines, each with its ``softlabel``; uids compare as strings, as training reads them."""
    samples = read_features(input_path)
    lines = unique_uids(((str(sample["uid"]), line) for line, sample in samples), input_path)
    soft = average_teachers(score_paths, task_def, lines, input_path)
    return [json.dumps({**sample, "softlabel": soft[str(sample["uid"])]}) + "\n" for _, sample in samples]


def canonical_with_soft_labels(
    input_path: Path, score_paths: Sequence[Path], task_def: TaskDef, add_column: bool
) -> list[str]:
    """The canonical TSV's lines with a soft-label column after the label, or the class-1 probability as label."""
    if not add_column and task_def.n_class != 2:
        raise MTDNNInputError(
            f"task {task_def.name} has {task_def.n_class} classes: replacing the label by the class-1 probability "
            "(upstream's mode) needs a binary task; pass --add_soft_label",
            input_path,
        )
    rows = read_canonical(input_path, task_def)  # every row checked against the task before anything is written
    lines = unique_uids(((row.uid, row.line) for row in rows), input_path)
    soft = average_teachers(score_paths, task_def, lines, input_path)
    label = get_data_format(task_def.data_format).label_column
    out = []
    for row, (_, cells) in zip(rows, canonical_fields(input_path), strict=True):
        if not add_column:
            cells[label] = str(soft[row.uid][1])
        elif row.softlabel is not None:
            raise MTDNNInputError("the row already has a soft-label column", input_path, row.line)
        else:
            cells.insert(label + 1, json.dumps(soft[row.uid]))
        out.append("\t".join(cells) + "\n")
    return out


def add_soft_labels(
    input_path: Path, score_paths: Sequence[Path], output_path: Path, task_def: TaskDef, add_column: bool = True
) -> int:
    """Write ``input_path`` with the teachers' averaged probabilities to ``output_path`` atomically; returns the rows.

    A ``.tsv`` input is a canonical TSV (``add_column`` as in the module docstring), anything else JSON lines.
    """
    check_distillable(task_def)
    is_tsv = input_path.suffix == ".tsv"
    if (output_path.suffix == ".tsv") != is_tsv:
        kind = "a canonical TSV (.tsv)" if is_tsv else "JSON lines (not .tsv)"
        raise MTDNNInputError(f"the output keeps the input's format, {kind}", output_path)
    if is_tsv:
        out = canonical_with_soft_labels(input_path, score_paths, task_def, add_column)
    else:
        out = features_with_soft_labels(input_path, score_paths, task_def)
    with atomic_write(output_path) as handle:
        handle.writelines(out)
    return len(out)

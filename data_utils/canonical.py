"""Reader of canonical TSV files (SPEC §3.1): one typed row a line, every malformed row an error.

Layouts by ``data_format`` (no header, tab-separated):

    PremiseOnly                uid  label  premise
    PremiseAndOneHypothesis    uid  label  premise  hypothesis
    PremiseAndMultiHypothesis  uid  ruid1,ruid2,…  label1,label2,…  premise  hyp1  hyp2 …
    Seqence                    uid  ["label", …]  ["word", …]

``prepare_distillation_data.py --add_soft_label`` inserts one more column right after the
label: a JSON list of probabilities, read here as ``CanonicalRow.softlabel``.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from data_utils.errors import MTDNNInputError
from data_utils.file_io import iter_lines
from data_utils.task_def import DataFormat, TaskDef, TaskType, parse_soft_label

# Upstream stripped whole lines; tabs are kept here so that an empty last cell stays a cell.
_LINE_EDGE = " \r\n\f\v"
_SEQUENCE_EVAL_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


@dataclass(slots=True)
class CanonicalRow:
    """One canonical TSV row as written: raw label(s), the texts, and where it came from."""

    uid: str
    # Raw label: a string; comma-joined for multi-hypothesis rows; a list of tags for Seqence.
    label: str | list[str]
    # premise[, hypothesis, …]; the words of the sentence for Seqence.
    texts: list[str]
    ruid: list[str] | None
    softlabel: list[float] | None
    line: int


def encode_row_label(row: CanonicalRow, task_def: TaskDef, file: str | Path | None = None) -> int | float | list[int]:
    """The training label of a row: an index or float, or a list of ids (multi-hypothesis, Seqence).

    Raises ``MTDNNInputError`` naming ``file`` and the row's line when a label is not the task's.
    """
    try:
        if task_def.data_format == DataFormat.PremiseAndMultiHypothesis:
            return [int(task_def.encode_label(raw)) for raw in row.label.split(",")]
        if task_def.data_format == DataFormat.Seqence:
            return [int(task_def.encode_label(raw)) for raw in row.label]
        return task_def.encode_label(row.label)
    except ValueError as err:
        raise MTDNNInputError(f"label column: {err}", file, row.line) from None


def read_canonical(path: str | Path, task_def: TaskDef) -> list[CanonicalRow]:
    """Read a whole canonical TSV of ``task_def``'s format; labels are checked against the task."""
    path = Path(path)
    parse = _PARSERS.get(task_def.data_format)
    if parse is None:
        raise MTDNNInputError(
            f"task {task_def.name}: data format {task_def.data_format.name} has no canonical TSV reader", path
        )
    rows = []
    for line_no, line in iter_lines(path, strip=False):
        line = line.strip(_LINE_EDGE)
        if not line:
            raise MTDNNInputError("empty line (canonical files have one row a line)", path, line_no)
        row = parse(line.split("\t"), line_no, task_def, path)
        encode_row_label(row, task_def, path)
        rows.append(row)
    if not rows:
        raise MTDNNInputError("no rows: the file is empty", path)
    return rows


def _soft_label(cell: str, task_def: TaskDef, path: Path, line: int) -> list[float]:
    """Parse the soft-label column; a classification task needs one probability per class."""
    try:
        values = parse_soft_label(cell)
    except ValueError as err:
        raise MTDNNInputError(f"soft-label column: {err}", path, line) from None
    if task_def.task_type == TaskType.Classification and len(values) != task_def.n_class:
        raise MTDNNInputError(
            f"soft-label column: {len(values)} probabilities for task {task_def.name} with {task_def.n_class} classes",
            path,
            line,
        )
    return values


def _fixed_columns(
    fields: list[str], names: tuple[str, ...], task_def: TaskDef, path: Path, line: int
) -> tuple[list[str], list[float] | None]:
    """Split off an optional soft-label column at index 2; the rest must match ``names``."""
    if len(fields) == len(names):
        return fields, None
    if len(fields) == len(names) + 1:
        return fields[:2] + fields[3:], _soft_label(fields[2], task_def, path, line)
    raise MTDNNInputError(
        f"expected {len(names)} columns ({', '.join(names)}) for {task_def.data_format.name} task "
        f"{task_def.name}, or {len(names) + 1} with a soft-label column after the label; got {len(fields)}",
        path,
        line,
    )


def _parse_premise_only(fields: list[str], line: int, task_def: TaskDef, path: Path) -> CanonicalRow:
    cells, soft = _fixed_columns(fields, ("uid", "label", "premise"), task_def, path, line)
    return CanonicalRow(cells[0], cells[1], [cells[2]], None, soft, line)


def _parse_one_hypothesis(fields: list[str], line: int, task_def: TaskDef, path: Path) -> CanonicalRow:
    cells, soft = _fixed_columns(fields, ("uid", "label", "premise", "hypothesis"), task_def, path, line)
    return CanonicalRow(cells[0], cells[1], [cells[2], cells[3]], None, soft, line)


def _parse_multi_hypothesis(fields: list[str], line: int, task_def: TaskDef, path: Path) -> CanonicalRow:
    if len(fields) < 5:
        raise MTDNNInputError(
            f"expected at least 5 columns (uid, ruid, label, premise, hyp1, …) for {task_def.data_format.name} "
            f"task {task_def.name}; got {len(fields)}",
            path,
            line,
        )
    ruid = fields[1].split(",")
    labels = fields[2].split(",")
    count = len(ruid)
    if len(labels) != count:
        raise MTDNNInputError(f"{count} ruids but {len(labels)} labels (comma-joined, one per hypothesis)", path, line)
    soft = None
    if len(fields) == 5 + count:
        soft = _soft_label(fields[3], task_def, path, line)
        fields = fields[:3] + fields[4:]
    elif len(fields) != 4 + count:
        raise MTDNNInputError(
            f"{count} ruids need {4 + count} columns (uid, ruid, label, premise and {count} hypotheses), "
            f"or {5 + count} with a soft-label column; got {len(fields)}",
            path,
            line,
        )
    return CanonicalRow(fields[0], fields[2], fields[3:], ruid, soft, line)


def _string_list(cell: str, what: str, path: Path, line: int) -> list[str]:
    """A JSON list of strings, or an upstream Python-repr list (``ast.literal_eval``, never ``eval``)."""
    try:
        value = json.loads(cell)
    except ValueError:
        try:
            value = ast.literal_eval(cell)
        except _SEQUENCE_EVAL_ERRORS:
            raise MTDNNInputError(f"{what} column is neither a JSON list nor a Python list literal", path, line) from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MTDNNInputError(f"{what} column must be a list of strings", path, line)
    return value


def _parse_sequence(fields: list[str], line: int, task_def: TaskDef, path: Path) -> CanonicalRow:
    cells, soft = _fixed_columns(fields, ("uid", "labels", "words"), task_def, path, line)
    labels = _string_list(cells[1], "labels", path, line)
    words = _string_list(cells[2], "words", path, line)
    if len(labels) != len(words):
        raise MTDNNInputError(f"{len(labels)} labels for {len(words)} words", path, line)
    return CanonicalRow(cells[0], labels, words, None, soft, line)


_PARSERS = {
    DataFormat.PremiseOnly: _parse_premise_only,
    DataFormat.PremiseAndOneHypothesis: _parse_one_hypothesis,
    DataFormat.PremiseAndMultiHypothesis: _parse_multi_hypothesis,
    DataFormat.Seqence: _parse_sequence,
}

"""Reader of canonical TSV files (SPEC §3.1): one typed row a line, every malformed row an error.

Layouts by ``data_format`` (no header, tab-separated; each is parsed by its format in
``data_utils/formats/``):

    PremiseOnly                uid  label  premise
    PremiseAndOneHypothesis    uid  label  premise  hypothesis
    PremiseAndMultiHypothesis  uid  ruid1,ruid2,…  label1,label2,…  premise  hyp1  hyp2 …
    Seqence                    uid  ["label", …]  ["word", …]

``prepare_distillation_data.py --add_soft_label`` inserts one more column right after the
label: a JSON list of probabilities, read here as ``CanonicalRow.softlabel``.

A row whose premise or hypothesis is empty (or blank) is kept, with one warning per file that
counts such rows and names the first: the reader returns what the file holds, and the raw
converters already refuse empty texts.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from data_utils.errors import MTDNNInputError
from data_utils.file_io import iter_lines
from data_utils.formats import CanonicalRow, get_data_format
from data_utils.task_def import TaskDef

__all__ = ["CanonicalRow", "canonical_fields", "encode_row_label", "iter_canonical", "read_canonical"]

logger = logging.getLogger(__name__)

# Upstream stripped whole lines; tabs are kept here so that an empty last cell stays a cell.
_LINE_EDGE = " \r\n\f\v"


def encode_row_label(row: CanonicalRow, task_def: TaskDef, file: str | Path | None = None) -> int | float | list[int]:
    """The training label of a row: an index or float, or a list of ids (multi-hypothesis, Seqence).

    Raises ``MTDNNInputError`` naming ``file`` and the row's line when a label is not the task's.
    """
    try:
        return get_data_format(task_def.data_format).row_label(row, task_def)
    except ValueError as err:
        raise MTDNNInputError(f"label column: {err}", file, row.line) from None


def canonical_fields(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of each line of a canonical TSV, split at tabs; an empty line is an error."""
    for line_no, line in iter_lines(path, strip=False):
        line = line.strip(_LINE_EDGE)
        if not line:
            raise MTDNNInputError("empty line (canonical files have one row a line)", path, line_no)
        yield line_no, line.split("\t")


def iter_canonical(path: str | Path, task_def: TaskDef) -> Iterator[CanonicalRow]:
    """The rows of a canonical TSV of ``task_def``'s format as they are read, each checked (see ``read_canonical``).

    The file-level checks (no rows at all; the warning about empty texts) run once the last row is read.
    """
    path = Path(path)
    data_format = get_data_format(task_def.data_format)
    if not data_format.reads_canonical:
        raise MTDNNInputError(
            f"task {task_def.name}: data format {task_def.data_format.name} has no canonical TSV reader", path
        )
    count = 0
    blanks: list[tuple[int, str]] = []
    for line_no, fields in canonical_fields(path):
        row = data_format.parse_row(fields, line_no, task_def, path)
        encode_row_label(row, task_def, path)
        blank = data_format.blank_text(row)
        if blank is not None:
            blanks.append((line_no, blank))
        count += 1
        yield row
    if not count:
        raise MTDNNInputError("no rows: the file is empty", path)
    if blanks:
        line_no, blank = blanks[0]
        logger.warning("%s:%d: %s is empty; %d row(s) of this file have an empty text, kept as they are",
                       path, line_no, blank, len(blanks))


def read_canonical(path: str | Path, task_def: TaskDef) -> list[CanonicalRow]:
    """Read a whole canonical TSV of ``task_def``'s format; labels are checked against the task."""
    return list(iter_canonical(path, task_def))

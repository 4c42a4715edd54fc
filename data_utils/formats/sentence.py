"""Formats with one label per text or text pair: ``PremiseOnly`` and ``PremiseAndOneHypothesis``.

    PremiseOnly                uid  label  premise
    PremiseAndOneHypothesis    uid  label  premise  hypothesis
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_utils.formats.base import (
    CanonicalRow,
    FeatureEncoder,
    SingleSequenceFormat,
    check_hypotheses,
    first_blank,
    fixed_columns,
    is_int,
    is_number,
    placeholder_label,
    with_softlabel,
)
from data_utils.formats.registry import register_data_format
from data_utils.task_def import DataFormat, TaskDef


class _SentenceFormat(SingleSequenceFormat):
    """Shared by the one- and two-text formats: a class id (or a score) per row."""

    columns: tuple[str, ...]

    def parse_row(self, fields: list[str], line: int, task_def: TaskDef, path: Path) -> CanonicalRow:
        """uid, label and the texts of ``columns`` (plus an optional soft-label column after the label)."""
        cells, soft = fixed_columns(fields, self.columns, task_def, path, line)
        return CanonicalRow(cells[0], cells[1], cells[2:], None, soft, line)

    def blank_text(self, row: CanonicalRow) -> str | None:
        """The first empty premise or hypothesis (columns 3, 4; one more with a soft-label column)."""
        return first_blank(row, list(self.columns[2:]), first_column=3)

    def unlabelled_row(self, uid: str, premise: str, hypotheses: list[str], task_def: TaskDef) -> CanonicalRow:
        """The premise alone (``PremiseOnly``: no hypothesis) or with its one hypothesis."""
        wanted = len(self.columns) - 3
        check_hypotheses(hypotheses, "no hypothesis" if wanted == 0 else "one hypothesis", len(hypotheses) == wanted, task_def)
        return CanonicalRow(uid, placeholder_label(task_def), [premise, *hypotheses], None, None, 0)

    def features(self, encoder: FeatureEncoder, rows: list[CanonicalRow], task_def: TaskDef) -> Iterator[dict[str, Any]]:
        """One token sequence per row: the premise, or the premise and hypothesis as a pair."""
        seconds = [row.texts[1] for row in rows] if len(self.columns) == 4 else None
        ids, types, masks = encoder.encode_texts([row.texts[0] for row in rows], seconds)
        labels: dict[str, Any] = {}  # a label depends on its text alone, and a chunk repeats a few
        for row, token_id, type_id, mask in zip(rows, ids, types, masks):
            label = labels.get(row.label)
            if label is None:
                label = labels[row.label] = self.row_label(row, task_def)
            feature = {
                "uid": row.uid,
                "label": label,
                "token_id": token_id,
                "type_id": type_id,
                "attention_mask": mask,
            }
            yield with_softlabel(feature, row)

    def check_label(self, label: Any, n_tokens: int, task_def: TaskDef) -> None:
        """A class id below ``n_class``; a finite number when the head has one output (a score)."""
        n_class = task_def.n_class
        # A single output on a one-label-per-example format is a score (regression, SPEC §2).
        if n_class == 1:
            if not is_number(label):
                raise ValueError(f"label {label!r} is not a finite number")
        elif not is_int(label) or not 0 <= label < n_class:
            raise ValueError(f"label {label!r} is not a class id in [0, {n_class})")


@register_data_format
class PremiseOnlyFormat(_SentenceFormat):
    """One text per row (CoLA, SST-2)."""

    data_format = DataFormat.PremiseOnly
    columns = ("uid", "label", "premise")


@register_data_format
class PremiseAndOneHypothesisFormat(_SentenceFormat):
    """A text pair per row (RTE, MRPC, STS-B, MNLI, …)."""

    data_format = DataFormat.PremiseAndOneHypothesis
    columns = ("uid", "label", "premise", "hypothesis")

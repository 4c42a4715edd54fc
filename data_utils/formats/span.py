"""``CLUE_SPAN``: an answer span inside a tokenized question/context window (SQuAD-style MRC).

No canonical TSV: ``experiments/squad`` writes the tokenized JSON directly, one sample per
window, with ``label = [start, end, is_impossible]`` in token positions.
"""
from __future__ import annotations

from typing import Any

from data_utils.errors import MTDNNInputError
from data_utils.formats.base import CanonicalRow, SingleSequenceFormat, is_int
from data_utils.formats.registry import register_data_format
from data_utils.task_def import DataFormat, TaskDef


@register_data_format
class SpanFormat(SingleSequenceFormat):
    """One token window with the answer's token span."""

    data_format = DataFormat.CLUE_SPAN
    reads_canonical = False

    def unlabelled_row(self, uid: str, premise: str, hypotheses: list[str], task_def: TaskDef) -> CanonicalRow:
        """Refused: span answers need the question's context windows and offsets (experiments/squad)."""
        raise MTDNNInputError(
            f"task {task_def.name}: span extraction is not predicted from raw text here (answers need context "
            "windows and offsets); tokenize with experiments/squad/squad_prepro.py and score with predict.py"
        )

    def missing_mask(self, sample: dict, n_tokens: int) -> list[int]:
        """The window's ``mask`` stands in for a missing ``attention_mask``."""
        return sample["mask"]

    def check_label(self, label: Any, n_tokens: int, task_def: TaskDef) -> None:
        """``[start, end, is_impossible]`` with the span inside the tokens."""
        if not isinstance(label, list) or len(label) != 3 or not all(is_int(v) for v in label):
            raise ValueError(f"label must be [start, end, is_impossible], got {label!r}")
        start, end, _ = label
        if not 0 <= start <= end < n_tokens:
            raise ValueError(f"answer span {start}..{end} is not inside the {n_tokens} tokens")

    def truncate_label(self, sample: dict, max_len: int) -> None:
        """An answer that fell off the window points at [CLS], as for any window without it."""
        start, end, impossible = sample["label"]
        if end >= max_len - 1:
            sample["label"] = [0, 0, impossible]

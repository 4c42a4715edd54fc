"""What every data format provides, and the cell and sample checks the formats share.

A data format (``data_format`` in a task's YAML) decides three things of a row, one per stage:
its canonical TSV columns (``parse_row``), how ``prepro_std.py`` tokenizes it (``features``),
and the shape of its tokenized JSON sample that training checks, cuts and pads
(``check_sample``, ``truncate``, ``token_rows``). One ``DataFormatSpec`` subclass holds all
three for one ``DataFormat``.
"""
from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from data_utils.errors import MTDNNInputError
from data_utils.task_def import DataFormat, TaskDef, parse_soft_label


class FeatureEncoder(Protocol):
    """What a format needs of the tokenizer side (``data_utils.features.FeatureEncoder`` is one)."""

    tokenizer: Any  # a Hugging Face tokenizer: cls_token_id, sep_token_id
    options: Any  # max_seq_len, do_padding

    def encode_texts(self, firsts: list[str], seconds: list[str] | None) -> tuple[list[list[int]], ...]:
        """``(token ids, type ids, attention masks)`` of single texts or of (first, second) pairs."""

    def word_pieces(self, words: list[str]) -> list[list[int]]:
        """Sub-token ids of each word tokenized alone, without special tokens."""

_SEQUENCE_EVAL_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)

# Per-token keys cut together when a training example is truncated.
PER_TOKEN_KEYS = ("token_id", "type_id", "attention_mask", "mask", "offset_mapping")

TokenRow = tuple[list[int], list[int], list[int]]


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

    def __reduce__(self) -> tuple[type, tuple]:
        """Pickle as a constructor call: a few times cheaper than the slots default (chunks sent to workers)."""
        return CanonicalRow, (self.uid, self.label, self.texts, self.ruid, self.softlabel, self.line)


class DataFormatSpec:
    """One data format at every stage; subclass per format and register with ``@register_data_format``."""

    data_format: ClassVar[DataFormat]
    # False for formats that come as tokenized JSON only (no canonical TSV layout).
    reads_canonical: ClassVar[bool] = True
    # Index of the label cell in a canonical TSV row; an optional soft-label column follows it.
    label_column: ClassVar[int] = 1

    # --- canonical TSV ----------------------------------------------------------------
    def parse_row(self, fields: list[str], line: int, task_def: TaskDef, path: Path) -> CanonicalRow:
        """The typed row of one TSV line split at tabs; ``MTDNNInputError`` naming ``path:line`` when malformed."""
        raise MTDNNInputError(f"task {task_def.name}: data format {self.data_format.name} has no canonical TSV reader", path)

    def row_label(self, row: CanonicalRow, task_def: TaskDef) -> int | float | list[int]:
        """The training label of a row (``ValueError`` naming the label when it is not the task's)."""
        return task_def.encode_label(row.label)

    def blank_text(self, row: CanonicalRow) -> str | None:
        """The first empty or whitespace-only text of ``row`` as ``"hypothesis (column 4)"``; ``None`` if all have words."""
        return None

    def unlabelled_row(self, uid: str, premise: str, hypotheses: list[str], task_def: TaskDef) -> CanonicalRow:
        """The row of raw text to predict (Python API), with a placeholder label the task accepts."""
        raise MTDNNInputError(f"task {task_def.name}: data format {self.data_format.name} cannot be predicted from raw text")

    # --- tokenization (prepro_std.py) -------------------------------------------------
    def check_encodable(self, encoder: FeatureEncoder, task_def: TaskDef) -> None:
        """Fail before reading any row when ``encoder`` cannot produce this format's features."""

    def features(self, encoder: FeatureEncoder, rows: list[CanonicalRow], task_def: TaskDef) -> Iterator[dict[str, Any]]:
        """The tokenized JSON sample of each row, in order."""
        raise MTDNNInputError(f"task {task_def.name}: data format {self.data_format.name} cannot be tokenized here")

    # --- tokenized JSON samples (training) --------------------------------------------
    def check_sample(self, sample: dict, task_def: TaskDef) -> tuple[int, int | None]:
        """Validate one sample in place (mask built); returns (token length, hypotheses or None)."""
        raise NotImplementedError

    def truncate(self, sample: dict, max_len: int) -> int:
        """Cut an over-long training sample to ``max_len`` tokens in place; returns its new length."""
        raise NotImplementedError

    def token_rows(self, sample: dict) -> list[TokenRow]:
        """The (token ids, type ids, mask) sequences the encoder sees for one sample."""
        return [(sample["token_id"], sample["type_id"], sample["attention_mask"])]


class SingleSequenceFormat(DataFormatSpec):
    """A format whose sample is one token sequence; subclasses say what its label is."""

    def check_sample(self, sample: dict, task_def: TaskDef) -> tuple[int, int | None]:
        """Validate one sample in place (mask built); returns (token length, None)."""
        label = sample["label"]
        tokens = int_list(sample["token_id"], "token_id")
        types = int_list(sample["type_id"], "type_id")
        if len(types) != len(tokens):
            raise ValueError(f"token_id has {len(tokens)} entries but type_id has {len(types)}")
        if "attention_mask" not in sample:
            sample["attention_mask"] = self.missing_mask(sample, len(tokens))
        mask = sample["attention_mask"]
        if len(int_list(mask, "attention_mask")) != len(tokens):
            raise ValueError(f"token_id has {len(tokens)} entries but attention_mask has {len(mask)}")
        self.check_label(label, len(tokens), task_def)
        return len(tokens), None

    def missing_mask(self, sample: dict, n_tokens: int) -> list[int]:
        """The attention mask of a sample that has none: every token is real."""
        return [1] * n_tokens

    def check_label(self, label: Any, n_tokens: int, task_def: TaskDef) -> None:
        """``ValueError`` when ``label`` is not a label of this format and task."""
        raise NotImplementedError

    def truncate(self, sample: dict, max_len: int) -> int:
        """Cut every per-token list (and the label, where it is per token) to ``max_len``."""
        n_tokens = len(sample["token_id"])
        for key in PER_TOKEN_KEYS:
            if isinstance(sample.get(key), list) and len(sample[key]) == n_tokens:
                sample[key] = cut(sample[key], max_len)
        self.truncate_label(sample, max_len)
        return max_len

    def truncate_label(self, sample: dict, max_len: int) -> None:
        """Adjust the label of a sample whose tokens were cut to ``max_len`` (default: unchanged)."""


# --- shared helpers ---------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_list(value: Any, field: str) -> list[int]:
    """``value`` when it is a non-empty list of ints, else ``ValueError`` naming ``field``."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"field {field!r} must be a non-empty list of token ids")
    # type() rather than isinstance: rejects bools, and runs at C speed over millions of ids.
    if not set(map(type, value)) <= {int}:
        raise ValueError(f"field {field!r} must hold integers only")
    return value


def placeholder_label(task_def: TaskDef) -> str:
    """A raw label ``task_def`` accepts, for rows predicted without one: its first label name, else ``"0"``."""
    return task_def.labels[0] if task_def.labels else "0"


def check_hypotheses(hypotheses: list[str], expected: str, fits: bool, task_def: TaskDef) -> None:
    """``MTDNNInputError`` when a raw example's hypotheses do not fit the task's data format."""
    if not fits:
        raise MTDNNInputError(
            f"task {task_def.name} ({task_def.data_format.name}) takes {expected} per premise, got {len(hypotheses)}"
        )


def cut(values: list, max_len: int) -> list:
    """Keep the first ``max_len - 1`` entries and the original last one (the final [SEP])."""
    return values[: max_len - 1] + values[-1:]


def soft_label_cell(cell: str, task_def: TaskDef, path: Path, line: int) -> list[float]:
    """Parse the soft-label column; a task whose type has per-class soft labels needs one probability per class."""
    try:
        values = parse_soft_label(cell)
    except ValueError as err:
        raise MTDNNInputError(f"soft-label column: {err}", path, line) from None
    if task_def.spec.soft_label_per_class and len(values) != task_def.n_class:
        raise MTDNNInputError(
            f"soft-label column: {len(values)} probabilities for task {task_def.name} with {task_def.n_class} classes",
            path,
            line,
        )
    return values


def fixed_columns(
    fields: list[str], names: tuple[str, ...], task_def: TaskDef, path: Path, line: int
) -> tuple[list[str], list[float] | None]:
    """Split off an optional soft-label column at index 2; the rest must match ``names``."""
    if len(fields) == len(names):
        return fields, None
    if len(fields) == len(names) + 1:
        return fields[:2] + fields[3:], soft_label_cell(fields[2], task_def, path, line)
    raise MTDNNInputError(
        f"expected {len(names)} columns ({', '.join(names)}) for {task_def.data_format.name} task "
        f"{task_def.name}, or {len(names) + 1} with a soft-label column after the label; got {len(fields)}",
        path,
        line,
    )


def string_list(cell: str, what: str, path: Path, line: int) -> list[str]:
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


def first_blank(row: CanonicalRow, names: list[str], first_column: int) -> str | None:
    """``"<name> (column N)"`` of the first empty or whitespace-only text of ``row``, texts starting at ``first_column``.

    A soft-label column (after the label) shifts the texts one column to the right.
    """
    start = first_column + (row.softlabel is not None)
    for column, (name, text) in enumerate(zip(names, row.texts), start=start):
        if not text.strip():
            return f"{name} (column {column})"
    return None


def with_softlabel(feature: dict[str, Any], row: CanonicalRow) -> dict[str, Any]:
    """``feature`` with the row's soft label added when it has one."""
    if row.softlabel is not None:
        feature["softlabel"] = row.softlabel
    return feature

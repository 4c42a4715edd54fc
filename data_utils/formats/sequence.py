"""``Seqence``: one tag per word (NER, POS, chunking; the original's spelling of the name).

    uid  ["tag", …]  ["word", …]

Words are split into sub-tokens; a word's tag goes on its first sub-token and the tag ``X``
on the rest, with ``CLS``/``SEP`` on the special tokens, so the label has one id per token.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_utils.errors import MTDNNInputError
from data_utils.formats.base import (
    CanonicalRow,
    FeatureEncoder,
    SingleSequenceFormat,
    check_hypotheses,
    cut,
    fixed_columns,
    is_int,
    string_list,
    with_softlabel,
)
from data_utils.formats.registry import register_data_format
from data_utils.task_def import DataFormat, TaskDef


@register_data_format
class SequenceFormat(SingleSequenceFormat):
    """Tagged words, one tag id per token after tokenization."""

    data_format = DataFormat.Seqence

    def parse_row(self, fields: list[str], line: int, task_def: TaskDef, path: Path) -> CanonicalRow:
        """uid, the tags and the words, as JSON (or upstream Python-repr) lists of equal length."""
        cells, soft = fixed_columns(fields, ("uid", "labels", "words"), task_def, path, line)
        labels = string_list(cells[1], "labels", path, line)
        words = string_list(cells[2], "words", path, line)
        if len(labels) != len(words):
            raise MTDNNInputError(f"{len(labels)} labels for {len(words)} words", path, line)
        return CanonicalRow(cells[0], labels, words, None, soft, line)

    def row_label(self, row: CanonicalRow, task_def: TaskDef) -> list[int]:
        """One tag id per word."""
        return [int(task_def.encode_label(raw)) for raw in row.label]

    def unlabelled_row(self, uid: str, premise: str, hypotheses: list[str], task_def: TaskDef) -> CanonicalRow:
        """The premise split at whitespace into words, each with a placeholder tag (not X, CLS or SEP)."""
        check_hypotheses(hypotheses, "no hypothesis (a sentence to tag)", not hypotheses, task_def)
        words = premise.split()
        if not words:
            raise MTDNNInputError(f"task {task_def.name}: a sentence to tag has no words: {premise!r}")
        tag = next((label for label in task_def.labels or () if label not in ("X", "CLS", "SEP")), "0")
        return CanonicalRow(uid, [tag] * len(words), words, None, None, 0)

    def check_encodable(self, encoder: FeatureEncoder, task_def: TaskDef) -> None:
        """Sequence labelling needs the X/CLS/SEP tags, a tokenizer with CLS and SEP, and no --do_padding."""
        if encoder.options.do_padding:
            raise MTDNNInputError(
                f"task {task_def.name}: --do_padding does not apply to sequence labelling (tags have no pad id; "
                "the batcher pads them); run without it"
            )
        missing = [tag for tag in ("X", "CLS", "SEP") if tag not in task_def.label_index]
        if missing:
            raise MTDNNInputError(f"task {task_def.name}: sequence labelling needs the labels {missing} in its YAML")
        if encoder.tokenizer.cls_token_id is None or encoder.tokenizer.sep_token_id is None:
            raise MTDNNInputError(f"task {task_def.name}: sequence labelling needs a tokenizer with CLS and SEP tokens")

    def features(self, encoder: FeatureEncoder, rows: list[CanonicalRow], task_def: TaskDef) -> Iterator[dict[str, Any]]:
        """[CLS] sub-tokens [SEP] cut to ``max_seq_len``, with a tag id per token."""
        tok = encoder.tokenizer
        x_tag, cls_tag, sep_tag = (task_def.label_index[tag] for tag in ("X", "CLS", "SEP"))
        budget = encoder.options.max_seq_len - 2
        pieces = encoder.word_pieces([word for row in rows for word in row.texts])
        start = 0
        for row in rows:
            word_pieces = pieces[start : start + len(row.texts)]
            start += len(row.texts)
            token_id: list[int] = []
            label: list[int] = []
            for word_ids, tag in zip(word_pieces, self.row_label(row, task_def)):
                # A word with no sub-tokens (e.g. a lone control character) goes with its tag.
                if word_ids:
                    token_id.extend(word_ids)
                    label.append(tag)
                    label.extend([x_tag] * (len(word_ids) - 1))
            token_id = [tok.cls_token_id] + token_id[:budget] + [tok.sep_token_id]
            label = [cls_tag] + label[:budget] + [sep_tag]
            feature = {"uid": row.uid, "label": label, "token_id": token_id, "type_id": [0] * len(token_id)}
            yield with_softlabel(feature, row)

    def check_label(self, label: Any, n_tokens: int, task_def: TaskDef) -> None:
        """One tag id below ``n_class`` per token."""
        n_class = task_def.n_class
        if not isinstance(label, list) or len(label) != n_tokens:
            raise ValueError(f"label must list one tag id per token ({n_tokens}), got {label!r}")
        for tag in label:
            if not is_int(tag) or not 0 <= tag < n_class:
                raise ValueError(f"tag id {tag!r} is not in [0, {n_class})")

    def truncate_label(self, sample: dict, max_len: int) -> None:
        """The tags are cut with the tokens (keeping the final SEP tag)."""
        sample["label"] = cut(sample["label"], max_len)

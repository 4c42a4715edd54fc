"""``PremiseAndMultiHypothesis``: a premise and k candidates, one relevance label each (ranking).

    uid  ruid1,ruid2,…  label1,label2,…  premise  hyp1  hyp2 …

The tokenized sample holds one token sequence per (premise, candidate) pair; its ``label`` is
the index of the best candidate and ``olabel`` the original per-candidate labels.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_utils.errors import MTDNNInputError
from data_utils.formats.base import (
    CanonicalRow,
    DataFormatSpec,
    FeatureEncoder,
    TokenRow,
    check_hypotheses,
    cut,
    first_blank,
    int_list,
    is_int,
    placeholder_label,
    soft_label_cell,
    with_softlabel,
)
from data_utils.formats.registry import register_data_format
from data_utils.task_def import DataFormat, TaskDef


@register_data_format
class PremiseAndMultiHypothesisFormat(DataFormatSpec):
    """A premise with k candidate hypotheses per row (QNLI as ranking, WikiQA, …)."""

    data_format = DataFormat.PremiseAndMultiHypothesis
    label_column = 2  # after uid and the comma-joined ruids

    def parse_row(self, fields: list[str], line: int, task_def: TaskDef, path: Path) -> CanonicalRow:
        """uid, comma-joined ruids and labels (one per hypothesis), the premise and the hypotheses."""
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
            soft = soft_label_cell(fields[3], task_def, path, line)
            fields = fields[:3] + fields[4:]
        elif len(fields) != 4 + count:
            raise MTDNNInputError(
                f"{count} ruids need {4 + count} columns (uid, ruid, label, premise and {count} hypotheses), "
                f"or {5 + count} with a soft-label column; got {len(fields)}",
                path,
                line,
            )
        return CanonicalRow(fields[0], fields[2], fields[3:], ruid, soft, line)

    def blank_text(self, row: CanonicalRow) -> str | None:
        """The first empty premise (column 4; 5 with a soft-label column) or hypothesis after it."""
        names = ["premise"] + [f"hypothesis {k}" for k in range(1, len(row.texts))]
        return first_blank(row, names, first_column=4)

    def row_label(self, row: CanonicalRow, task_def: TaskDef) -> list[int]:
        """One label id per hypothesis."""
        return [int(task_def.encode_label(raw)) for raw in row.label.split(",")]

    def unlabelled_row(self, uid: str, premise: str, hypotheses: list[str], task_def: TaskDef) -> CanonicalRow:
        """The premise with its candidate hypotheses (ruids ``<uid>-<k>``)."""
        check_hypotheses(hypotheses, "one or more hypotheses", bool(hypotheses), task_def)
        ruid = [f"{uid}-{k}" for k in range(len(hypotheses))]
        return CanonicalRow(uid, ",".join([placeholder_label(task_def)] * len(hypotheses)), [premise, *hypotheses], ruid, None, 0)

    def features(self, encoder: FeatureEncoder, rows: list[CanonicalRow], task_def: TaskDef) -> Iterator[dict[str, Any]]:
        """One (premise, hypothesis) token sequence per candidate; ``label`` is the best candidate's index."""
        firsts = [row.texts[0] for row in rows for _ in row.texts[1:]]
        seconds = [hypothesis for row in rows for hypothesis in row.texts[1:]]
        ids, types, masks = encoder.encode_texts(firsts, seconds)
        start = 0
        for row in rows:
            end = start + len(row.texts) - 1
            olabel = self.row_label(row, task_def)
            feature = {
                "uid": row.uid,
                "label": olabel.index(max(olabel)),
                "token_id": ids[start:end],
                "type_id": types[start:end],
                "ruid": row.ruid,
                "olabel": olabel,
                "attention_mask": masks[start:end],
            }
            start = end
            yield with_softlabel(feature, row)

    def check_sample(self, sample: dict, task_def: TaskDef) -> tuple[int, int | None]:
        """Equal-length token, type and mask rows per hypothesis; ``label`` a hypothesis index."""
        label = sample["label"]
        token_rows, type_rows = sample["token_id"], sample["type_id"]
        if not isinstance(token_rows, list) or not token_rows or not isinstance(type_rows, list):
            raise ValueError("token_id and type_id must be lists with one token list per hypothesis")
        k = len(token_rows)
        lengths = [len(int_list(tokens, f"token_id[{h}]")) for h, tokens in enumerate(token_rows)]
        mask_rows = sample.setdefault("attention_mask", [[1] * n for n in lengths])
        if len(type_rows) != k or not isinstance(mask_rows, list) or len(mask_rows) != k:
            raise ValueError(f"token_id has {k} hypotheses but type_id or attention_mask has another number")
        for h, (n, types, mask) in enumerate(zip(lengths, type_rows, mask_rows)):
            if len(int_list(types, f"type_id[{h}]")) != n or len(int_list(mask, f"attention_mask[{h}]")) != n:
                raise ValueError(f"hypothesis {h}: token_id, type_id and attention_mask differ in length")
        for key in ("ruid", "olabel"):
            if key in sample and (not isinstance(sample[key], list) or len(sample[key]) != k):
                raise ValueError(f"{key!r} must list one entry per hypothesis ({k})")
        if not is_int(label) or not 0 <= label < k:
            raise ValueError(f"label {label!r} is not the index of one of the {k} hypotheses")
        return max(lengths), k

    def truncate(self, sample: dict, max_len: int) -> int:
        """Cut each over-long hypothesis row; returns the longest row's new length."""
        for key in ("token_id", "type_id", "attention_mask"):
            sample[key] = [cut(row, max_len) if len(row) > max_len else row for row in sample[key]]
        return max(len(row) for row in sample["token_id"])

    def token_rows(self, sample: dict) -> list[TokenRow]:
        """One (token ids, type ids, mask) sequence per hypothesis."""
        return list(zip(sample["token_id"], sample["type_id"], sample["attention_mask"]))

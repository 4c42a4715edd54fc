"""Token-level tagging (NER, POS, chunking): a linear layer on every token.

The pseudo labels ``X`` (later sub-tokens), ``CLS`` and ``SEP`` and padding are ignored by
the loss and the metric (SPEC §4).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from data_utils.task_def import TaskDef, TaskType
from module.dropout_wrapper import DropoutWrapper
from mt_dnn.tasks.base import Decoded, DecodeOptions, EncoderFeatures, HeadContext, Prediction, TaskHandler
from mt_dnn.tasks.registry import register_task_handler

if TYPE_CHECKING:
    from mt_dnn.batch import Batch
    from mt_dnn.loss import Criterion

IGNORED_TAGS = ("X", "CLS", "SEP")
IGNORE_INDEX = -1


class TokenClassifierHead(nn.Module):
    """Dropout → ``Linear(H, n_class)`` on every token."""

    def __init__(self, hidden_size: int, n_class: int, dropout_p: float, vb_dropout: bool):
        super().__init__()
        self.dropout = DropoutWrapper(dropout_p, enable_vbp=vb_dropout)
        self.proj = nn.Linear(hidden_size, n_class)

    def forward(self, features: EncoderFeatures) -> torch.Tensor:
        return self.proj(self.dropout(features.sequence_output))


def ignored_label_ids(task_def: TaskDef) -> list[int]:
    """Ids of the pseudo labels X, CLS and SEP in a tagging task's label list."""
    labels = task_def.labels or ()
    return [labels.index(tag) for tag in IGNORED_TAGS if tag in labels]


@register_task_handler
class SequenceLabelingHandler(TaskHandler):
    """One label per word (its first sub-token), scored entity-wise by seqeval."""

    task_type = TaskType.SeqenceLabeling

    def build_head(self, task_def: TaskDef, ctx: HeadContext) -> nn.Module:
        return TokenClassifierHead(ctx.hidden_size, task_def.n_class, ctx.dropout_p, ctx.vb_dropout)

    def prepare_labels(self, samples: list[dict], seq_len: int) -> torch.Tensor:
        labels = torch.full((len(samples), seq_len), IGNORE_INDEX, dtype=torch.long)
        for row, sample in enumerate(samples):
            tags = sample["label"][:seq_len]
            labels[row, : len(tags)] = torch.tensor(tags, dtype=torch.long)
        return labels

    def _scored_labels(self, batch: Batch) -> torch.Tensor:
        labels = batch.labels.clone()
        for label_id in ignored_label_ids(batch.task_def):
            labels[labels == label_id] = IGNORE_INDEX
        return labels

    def compute_loss(self, criterion: Criterion, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return criterion(logits, self._scored_labels(batch), ignore_index=IGNORE_INDEX)

    def distill_targets_view(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return logits[batch.attention_mask.bool()]

    def decode(self, logits: torch.Tensor, batch: Batch, options: DecodeOptions = DecodeOptions()) -> Decoded:
        names = batch.task_def.labels or ()
        gold_ids = self._scored_labels(batch).tolist()
        pred_ids = logits.argmax(dim=-1).tolist()
        predictions, golds = [], []
        for gold_row, pred_row in zip(gold_ids, pred_ids):
            kept = [i for i, gold in enumerate(gold_row) if gold != IGNORE_INDEX]
            golds.append([names[gold_row[i]] for i in kept])
            # A pseudo label predicted at a real word carries no entity: score it as "O".
            predictions.append([names[pred_row[i]] if names[pred_row[i]] not in IGNORED_TAGS else "O" for i in kept])
        return Decoded(uids=list(batch.uids), predictions=predictions, scores=[None] * len(golds), golds=golds)

    def present(self, prediction: Any, score: Any, task_def: TaskDef) -> Prediction:
        """One tag per word (its first sub-token's), no score."""
        return Prediction(list(prediction))

"""Pairwise ranking (old QNLI): the k hypotheses of a sample are scored and soft-maxed together."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from data_utils.task_def import TaskDef, TaskType
from mt_dnn.tasks.base import Decoded, DecodeOptions, HeadContext, Prediction, TaskHandler
from mt_dnn.tasks.registry import register_task_handler
from mt_dnn.tasks.sentence_head import build_sentence_head

if TYPE_CHECKING:
    from mt_dnn.batch import Batch
    from mt_dnn.loss import Criterion


@register_task_handler
class RankingHandler(TaskHandler):
    """Pairwise ranking (old QNLI): each sample's k hypotheses are scored and soft-maxed together."""

    task_type = TaskType.Ranking

    def build_head(self, task_def: TaskDef, ctx: HeadContext) -> nn.Module:
        return build_sentence_head(task_def, ctx, 1, san_allowed=True)

    def prepare_labels(self, samples: list[dict], seq_len: int) -> torch.Tensor:
        return torch.tensor([int(sample["label"]) for sample in samples], dtype=torch.long)

    def compute_loss(self, criterion: Criterion, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return criterion(logits, batch.labels, pairwise_size=batch.pairwise_size)

    def distill_targets_view(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return logits.reshape(-1, batch.pairwise_size)

    def decode(self, logits: torch.Tensor, batch: Batch, options: DecodeOptions = DecodeOptions()) -> Decoded:
        probs = torch.softmax(logits.float().reshape(-1, batch.pairwise_size), dim=-1)
        return Decoded(
            uids=list(batch.uids),
            predictions=probs.argmax(dim=-1).tolist(),
            scores=probs.tolist(),
            golds=batch.labels.tolist(),
        )

    def present(self, prediction: Any, score: Any, task_def: TaskDef) -> Prediction:
        """The index of the best hypothesis, its probability, and one probability per hypothesis (softmax over them)."""
        return Prediction(prediction, score[prediction], list(score))

"""Regression: one real-valued score per example (STS-B)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from data_utils.task_def import TaskDef, TaskType
from mt_dnn.tasks.base import Decoded, DecodeOptions, HeadContext, Prediction, TaskHandler
from mt_dnn.tasks.registry import register_task_handler
from mt_dnn.tasks.sentence_head import build_sentence_head

if TYPE_CHECKING:
    from mt_dnn.batch import Batch
    from mt_dnn.loss import Criterion


@register_task_handler
class RegressionHandler(TaskHandler):
    """A real-valued score per example (STS-B); the score is also the prediction."""

    task_type = TaskType.Regression
    glue_submission = True

    def build_head(self, task_def: TaskDef, ctx: HeadContext) -> nn.Module:
        return build_sentence_head(task_def, ctx, 1, san_allowed=False)

    def prepare_labels(self, samples: list[dict], seq_len: int) -> torch.Tensor:
        return torch.tensor([float(sample["label"]) for sample in samples], dtype=torch.float)

    def compute_loss(self, criterion: Criterion, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return criterion(logits.view(-1), batch.labels)

    def adversarial_ascent_loss(self, adv_view: torch.Tensor, clean_view: torch.Tensor) -> torch.Tensor:
        # As upstream for regression: squared error, summed over the batch.
        return F.mse_loss(adv_view.reshape(-1).float(), clean_view.reshape(-1).float(), reduction="sum")

    def adversarial_pair(self, clean_view: torch.Tensor, adv_view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return clean_view.reshape(-1), adv_view.reshape(-1)

    def decode(self, logits: torch.Tensor, batch: Batch, options: DecodeOptions = DecodeOptions()) -> Decoded:
        scores = logits.float().view(-1).tolist()
        return Decoded(uids=list(batch.uids), predictions=scores, scores=scores, golds=batch.labels.tolist())

    def present(self, prediction: Any, score: Any, task_def: TaskDef) -> Prediction:
        """The predicted score, as label and score."""
        return Prediction(float(prediction), float(prediction))

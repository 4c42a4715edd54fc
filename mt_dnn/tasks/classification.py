"""Single-label classification over ``n_class`` labels (CoLA, MNLI, RTE, …)."""
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


@register_task_handler
class ClassificationHandler(TaskHandler):
    """Single-label classification over ``n_class`` labels (CoLA, MNLI, RTE, …)."""

    task_type = TaskType.Classification
    glue_submission = True

    def build_head(self, task_def: TaskDef, ctx: HeadContext) -> nn.Module:
        return build_sentence_head(task_def, ctx, task_def.n_class, san_allowed=True)

    def prepare_labels(self, samples: list[dict], seq_len: int) -> torch.Tensor:
        return torch.tensor([int(sample["label"]) for sample in samples], dtype=torch.long)

    def decode(self, logits: torch.Tensor, batch: Batch, options: DecodeOptions = DecodeOptions()) -> Decoded:
        probs = torch.softmax(logits.float(), dim=-1)
        return Decoded(
            uids=list(batch.uids),
            predictions=probs.argmax(dim=-1).tolist(),
            scores=probs.tolist(),
            golds=[int(label) for label in batch.labels.tolist()],
        )

    def present(self, prediction: Any, score: Any, task_def: TaskDef) -> Prediction:
        """The label name, its probability, and the probability of every label by name."""
        names = [task_def.decode_label(index) for index in range(len(score))]
        return Prediction(names[prediction], score[prediction], dict(zip(names, score)))

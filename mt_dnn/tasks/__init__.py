"""Registry of task types: one handler per ``TaskType`` owns that type's head, labels,
loss, decoding and metric inputs. Nothing outside this package branches on a task type."""
from __future__ import annotations

from data_utils.errors import MTDNNInputError
from data_utils.task_def import TaskType
from mt_dnn.tasks.base import Decoded, EncoderFeatures, HeadContext, SANOptions, TaskHandler
from mt_dnn.tasks.classification import ClassificationHandler, RankingHandler, RegressionHandler
from mt_dnn.tasks.sequence_labeling import SequenceLabelingHandler
from mt_dnn.tasks.span import SpanHandler, SpanYNHandler

TASK_HANDLERS: dict[TaskType, TaskHandler] = {
    handler.task_type: handler
    for handler in (
        ClassificationHandler(),
        RegressionHandler(),
        RankingHandler(),
        SequenceLabelingHandler(),
        SpanHandler(),
        SpanYNHandler(),
    )
}


def get_task_handler(task_type: TaskType) -> TaskHandler:
    """The handler of a task type; a clear error for types this project does not support."""
    try:
        return TASK_HANDLERS[TaskType(task_type)]
    except (KeyError, ValueError):
        raise MTDNNInputError(f"task type {task_type!r} is not supported here") from None


__all__ = [
    "Decoded",
    "EncoderFeatures",
    "HeadContext",
    "SANOptions",
    "TaskHandler",
    "TASK_HANDLERS",
    "get_task_handler",
]

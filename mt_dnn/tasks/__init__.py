"""Task types: one file per ``TaskType`` whose handler owns that type's head, labels, loss,
decoding and metric inputs, registered with ``@register_task_handler``. Nothing outside this
package branches on a task type."""
from __future__ import annotations

# Importing the built-in task types registers them.
from mt_dnn.tasks import classification, ranking, regression, sequence_labeling, span  # noqa: F401
from mt_dnn.tasks.base import Decoded, DecodeOptions, EncoderFeatures, HeadContext, Prediction, SANOptions, TaskHandler
from mt_dnn.tasks.registry import TASK_HANDLERS, get_task_handler, register_task_handler

__all__ = [
    "Decoded",
    "DecodeOptions",
    "EncoderFeatures",
    "HeadContext",
    "Prediction",
    "SANOptions",
    "TaskHandler",
    "TASK_HANDLERS",
    "get_task_handler",
    "register_task_handler",
]

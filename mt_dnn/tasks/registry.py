"""The task-type registry: ``@register_task_handler`` on a ``TaskHandler`` subclass makes it the
behaviour of its ``task_type``; ``get_task_handler`` finds it. Adding a task type is one file."""
from __future__ import annotations

from data_utils.errors import MTDNNInputError
from data_utils.task_def import TaskType, mark_task_type_supported
from mt_dnn.tasks.base import TaskHandler

TASK_HANDLERS: dict[TaskType, TaskHandler] = {}


def register_task_handler(cls: type[TaskHandler]) -> type[TaskHandler]:
    """Class decorator: one instance of ``cls`` serves every task of ``cls.task_type``."""
    task_type = TaskType(cls.task_type)
    if task_type in TASK_HANDLERS and type(TASK_HANDLERS[task_type]) is not cls:
        raise ValueError(f"task type {task_type.name} already has the handler {type(TASK_HANDLERS[task_type]).__name__}")
    TASK_HANDLERS[task_type] = cls()
    # The YAML loader accepts a task type once something can train it.
    mark_task_type_supported(task_type, cls.default_loss)
    return cls


def get_task_handler(task_type: TaskType) -> TaskHandler:
    """The handler of a task type; a clear error for types this project does not support."""
    try:
        return TASK_HANDLERS[TaskType(task_type)]
    except (KeyError, ValueError):
        raise MTDNNInputError(f"task type {task_type!r} is not supported here") from None

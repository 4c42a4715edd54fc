"""The task-type registry: ``@register_task_handler`` on a ``TaskHandler`` subclass makes it the
behaviour of its ``task_type``; ``get_task_handler`` finds it. Adding a task type is one file."""
from __future__ import annotations

from data_utils.errors import MTDNNInputError
from data_utils.task_def import TASK_TYPE_SPECS, TaskType, register_task_type
from mt_dnn.tasks.base import TaskHandler

TASK_HANDLERS: dict[TaskType, TaskHandler] = {}


def register_task_handler(cls: type[TaskHandler]) -> type[TaskHandler]:
    """Class decorator: one instance of ``cls`` serves every task of ``cls.task_type``."""
    task_type = TaskType(cls.task_type)
    if task_type in TASK_HANDLERS and type(TASK_HANDLERS[task_type]) is not cls:
        raise ValueError(f"task type {task_type.name} already has the handler {type(TASK_HANDLERS[task_type]).__name__}")
    if cls.spec is not None:
        # The YAML loader accepts a task type once something can train it.
        register_task_type(task_type, cls.spec)
    elif task_type not in TASK_TYPE_SPECS:
        raise ValueError(f"{cls.__name__}: task type {task_type.name} needs a TaskTypeSpec (set the class's 'spec')")
    TASK_HANDLERS[task_type] = cls()
    return cls


def get_task_handler(task_type: TaskType) -> TaskHandler:
    """The handler of a task type; a clear error for types this project does not support."""
    try:
        return TASK_HANDLERS[TaskType(task_type)]
    except (KeyError, ValueError):
        raise MTDNNInputError(f"task type {task_type!r} is not supported here") from None

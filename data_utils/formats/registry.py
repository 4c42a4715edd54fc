"""The data-format registry: ``@register_data_format`` on a ``DataFormatSpec`` subclass makes it the
behaviour of its ``data_format``; ``get_data_format`` finds it. Adding a format is one file."""
from __future__ import annotations

from data_utils.errors import MTDNNInputError
from data_utils.formats.base import DataFormatSpec
from data_utils.task_def import SUPPORTED_DATA_FORMATS, DataFormat

DATA_FORMATS: dict[DataFormat, DataFormatSpec] = {}


def register_data_format(cls: type[DataFormatSpec]) -> type[DataFormatSpec]:
    """Class decorator: one instance of ``cls`` serves every task of ``cls.data_format``."""
    data_format = DataFormat(cls.data_format)
    if data_format in DATA_FORMATS and type(DATA_FORMATS[data_format]) is not cls:
        raise ValueError(f"data format {data_format.name} already has {type(DATA_FORMATS[data_format]).__name__}")
    DATA_FORMATS[data_format] = cls()
    SUPPORTED_DATA_FORMATS.add(data_format)
    return cls


def get_data_format(data_format: DataFormat) -> DataFormatSpec:
    """The spec of a data format; a clear error for formats this project does not read."""
    try:
        return DATA_FORMATS[DataFormat(data_format)]
    except (KeyError, ValueError):
        raise MTDNNInputError(f"data format {data_format!r} is not supported here") from None

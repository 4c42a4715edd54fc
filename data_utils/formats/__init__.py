"""Data formats, one file each, found by ``DataFormat`` through ``get_data_format``.

Importing this package registers the built-in formats; a new format is one module with a
``@register_data_format`` class (see README, "Extending mt-dnn").
"""
from data_utils.formats import multi_hypothesis, sentence, sequence, span  # noqa: F401  (they register themselves)
from data_utils.formats.base import CanonicalRow, DataFormatSpec, SingleSequenceFormat
from data_utils.formats.registry import DATA_FORMATS, get_data_format, register_data_format

__all__ = ["CanonicalRow", "DATA_FORMATS", "DataFormatSpec", "SingleSequenceFormat", "get_data_format", "register_data_format"]

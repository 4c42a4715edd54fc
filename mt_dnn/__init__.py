"""MT-DNN: multi-task deep neural networks for natural language understanding.

``from mt_dnn import MTDNNPredictor`` gives the Python API (``mt_dnn/api.py``); it is imported on
first use, so importing any other module of the package stays light.
"""
from __future__ import annotations

from typing import Any

__all__ = ["MTDNNPredictor", "Prediction"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mt_dnn import api

        return getattr(api, name)
    raise AttributeError(f"module 'mt_dnn' has no attribute {name!r}")

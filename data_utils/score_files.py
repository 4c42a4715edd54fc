"""Score files and GLUE submission files (SPEC §7): names, atomic writers, a validating reader.

A score file is one JSON object ``{"metrics", "predictions", "uids", "scores"}``: uids as
strings; for classification ``scores`` is the flat list of the n_class probabilities of
each example in turn, for regression the predicted score per example.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_utils.errors import MTDNNInputError
from data_utils.file_io import atomic_write, read_text
from data_utils.task_def import TaskDef

logger = logging.getLogger(__name__)

SCORE_FILE_KEYS = ("metrics", "predictions", "uids", "scores")
EVAL_SPLITS = ("dev", "test")


@dataclass(frozen=True)
class ScoreFile:
    """The contents of a score file, uids as strings."""

    metrics: dict[str, Any]
    predictions: list[Any]
    uids: list[str]
    scores: list[Any]


def _to_json_value(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays (and tensors) become plain values via ``tolist``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"value of type {type(value).__name__} is not JSON serialisable")


def _nulls_for_non_finite(value: Any) -> tuple[Any, int]:
    """``value`` with every NaN or infinite float replaced by None (JSON null), and how many were."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays, tensors
        value = value.tolist()
    if isinstance(value, float):
        return (value, 0) if math.isfinite(value) else (None, 1)
    if isinstance(value, dict):
        pairs = [(key, _nulls_for_non_finite(item)) for key, item in value.items()]
        return {key: item for key, (item, _) in pairs}, sum(count for _, (_, count) in pairs)
    if isinstance(value, (list, tuple)):
        items = [_nulls_for_non_finite(item) for item in value]
        return [item for item, _ in items], sum(count for _, count in items)
    return value, 0


def _stem(dataset: str, split: str, epoch: int | None, updates: int | None) -> str:
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    if (epoch is None) == (updates is None):
        raise ValueError("give exactly one of epoch and updates")
    if epoch is not None:
        return f"{dataset}_{split}_scores_epoch_{epoch}"
    return f"{dataset}_{split}_scores_updates_{updates}"


def score_file_name(output_dir: str | Path, dataset: str, split: str, epoch: int | None = None,
                    updates: int | None = None) -> Path:
    """``<output_dir>/{dataset}_{split}_scores_epoch_{e}.json`` (or ``_scores_updates_{n}.json``)."""
    return Path(output_dir) / f"{_stem(dataset, split, epoch, updates)}.json"


def glue_submission_name(output_dir: str | Path, dataset: str, split: str, epoch: int | None = None,
                         updates: int | None = None) -> Path:
    """``<output_dir>/{dataset}_{split}_scores_epoch_{e}.tsv`` (or ``_scores_updates_{n}.tsv``)."""
    return Path(output_dir) / f"{_stem(dataset, split, epoch, updates)}.tsv"


def write_score_file(path: str | Path, metrics: dict[str, Any], predictions: Sequence[Any],
                     uids: Sequence[Any], scores: Sequence[Any]) -> None:
    """Write a score file atomically; non-finite numbers become JSON null with a warning.

    Raises ``ValueError`` on mismatched lengths.
    """
    if len(predictions) != len(uids):
        raise ValueError(f"{len(predictions)} predictions but {len(uids)} uids")
    payload = {
        "metrics": metrics,
        "predictions": list(predictions),
        "uids": [str(uid) for uid in uids],
        "scores": list(scores),
    }
    payload, non_finite = _nulls_for_non_finite(payload)
    if non_finite:
        # NaN is not JSON: a diverged run or a constant prediction (Pearson of a constant) must not lose the file.
        logger.warning("%s: %d value(s) were NaN or infinite; written as null", path, non_finite)
    # Serialise before opening the file so a bad value leaves nothing behind.
    text = json.dumps(payload, default=_to_json_value, allow_nan=False)
    with atomic_write(path) as handle:
        handle.write(text)


def _sort_key_function(uids: Sequence[str]):
    """Sort by ``int(uid)`` when every uid is an integer, otherwise by the string."""
    try:
        for uid in uids:
            int(uid)
    except ValueError:
        return str
    return int


def _format_prediction(prediction: Any, task_def: TaskDef) -> str:
    if hasattr(prediction, "item"):
        prediction = prediction.item()
    return str(task_def.decode_label(prediction))


def write_glue_submission(path: str | Path, uids: Sequence[Any], predictions: Sequence[Any], task_def: TaskDef) -> None:
    """Write a GLUE submission TSV (``index\\tprediction``, rows by uid, label names) atomically."""
    if len(predictions) != len(uids):
        raise ValueError(f"{len(predictions)} predictions but {len(uids)} uids")
    uid_strings = [str(uid) for uid in uids]
    if len(set(uid_strings)) != len(uid_strings):
        raise ValueError("GLUE submission: uids are not unique")
    key = _sort_key_function(uid_strings)
    rows = sorted(zip(uid_strings, predictions), key=lambda row: key(row[0]))
    lines = ["index\tprediction\n"] + [f"{uid}\t{_format_prediction(pred, task_def)}\n" for uid, pred in rows]
    with atomic_write(path) as handle:
        handle.writelines(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_score_file(path: str | Path) -> ScoreFile:
    """Read and validate a score file; problems raise ``MTDNNInputError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MTDNNInputError("score file not found", path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise MTDNNInputError(f"invalid JSON: {err.msg} (column {err.colno})", path, err.lineno) from None
    if not isinstance(data, dict):
        raise MTDNNInputError(f"expected a JSON object with keys {list(SCORE_FILE_KEYS)}", path)
    missing = [key for key in SCORE_FILE_KEYS if key not in data]
    if missing:
        raise MTDNNInputError(f"missing key(s) {missing}; a score file has {list(SCORE_FILE_KEYS)}", path)
    for key in ("predictions", "uids", "scores"):
        if not isinstance(data[key], list):
            raise MTDNNInputError(f"{key!r} must be a list", path)
    if not isinstance(data["metrics"], dict):
        raise MTDNNInputError("'metrics' must be an object", path)
    uids = data["uids"]
    for index, uid in enumerate(uids):
        if isinstance(uid, bool) or not isinstance(uid, (str, int)):
            raise MTDNNInputError(f"uids[{index}] must be a string or integer, got {uid!r}", path)
    if len(data["predictions"]) != len(uids):
        raise MTDNNInputError(f"{len(data['predictions'])} predictions but {len(uids)} uids", path)
    for index, score in enumerate(data["scores"]):
        values = score if isinstance(score, list) else [score]
        if not all(_is_number(value) for value in values):
            raise MTDNNInputError(f"scores[{index}] is not a finite number or list of numbers: {score!r}", path)
    return ScoreFile(metrics=data["metrics"], predictions=data["predictions"],
                     uids=[str(uid) for uid in uids], scores=data["scores"])


def scores_by_uid(score_file: ScoreFile, n_class: int, path: str | Path) -> dict[str, list[float]]:
    """Each uid's scores (exactly ``n_class`` of them), flat or nested layout; errors name the file."""
    n_uids = len(score_file.uids)
    scores = score_file.scores
    if scores and all(isinstance(score, list) for score in scores):
        rows = scores
    elif any(isinstance(score, list) for score in scores):
        raise MTDNNInputError("'scores' mixes numbers and lists", path)
    elif len(scores) == n_uids * n_class:
        rows = [scores[i * n_class:(i + 1) * n_class] for i in range(n_uids)]
    else:
        raise MTDNNInputError(
            f"{len(scores)} scores for {n_uids} uids: expected exactly n_class={n_class} per uid ({n_uids * n_class})",
            path,
        )
    if len(rows) != n_uids:
        raise MTDNNInputError(f"{len(rows)} score lists for {n_uids} uids", path)
    result: dict[str, list[float]] = {}
    for uid, row in zip(score_file.uids, rows):
        if len(row) != n_class:
            raise MTDNNInputError(f"uid {uid!r} has {len(row)} scores, expected n_class={n_class}", path)
        if uid in result:
            raise MTDNNInputError(f"uid {uid!r} appears more than once", path)
        result[uid] = [float(value) for value in row]
    return result

"""Evaluation metrics (SPEC §7): one small function per ``Metric`` in a registry.

``calc_metrics(metric_meta, golds, predictions, scores, label_names)`` returns a dict keyed
by metric name whose values are plain JSON (Python floats, ints, lists, dicts — never
numpy objects, never NaN), so score files hold real numbers.

Inputs per metric family:
- ACC, F1 (binary, positive label 1), MCC, F1MAC, F1MIC, CMAT: class ids in ``golds`` and
  ``predictions``.
- Pearson, Spearman: gold floats against ``scores`` (the regression outputs).
- AUC: gold class ids against the positive-class score; ``scores`` holds, per example,
  the n_class probabilities, either flat (upstream's score-file layout) or nested.
- SeqEval, SeqAcc: per-sentence label sequences (names, or ids mapped through ``label_names``);
  SeqEval scores entities (NER, chunking), SeqAcc words (POS).
- EmF1 / EmF12: ``predictions`` are answer strings, ``golds`` lists of gold answers per
  question (empty list = unanswerable); for EmF12 ``scores`` may hold one null-answer
  score per question, which adds the best-threshold numbers.

Undefined statistics are reported as 0.0 rather than NaN (which is not JSON): Pearson or
Spearman of a constant vector, AUC with a single gold class; MCC is 0.0 there by
sklearn's own convention.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import classification_report as seqeval_classification_report
from seqeval.metrics import f1_score as seqeval_f1_score
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    roc_auc_score,
)

from data_utils.squad_eval import find_best_threshold, squad_v1_scores, squad_v2_scores
from data_utils.task_def import Metric

logger = logging.getLogger(__name__)

# Labels the sequence-labeling preprocessing adds for sub-tokens and special tokens (SPEC §3.3).
SEQ_IGNORED_LABELS = frozenset({"X", "CLS", "SEP"})


@dataclass(frozen=True)
class MetricInputs:
    """Everything a metric function may look at, for one evaluated dataset."""

    golds: Sequence[Any]
    predictions: Sequence[Any]
    scores: Sequence[Any] | None
    label_names: Sequence[str] | None


def _finite_or_zero(value: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else 0.0


def _class_ids(values: Sequence[Any], what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a flat list of class ids, got shape {array.shape}")
    return array


def _golds_and_predictions(inputs: MetricInputs) -> tuple[np.ndarray, np.ndarray]:
    golds = _class_ids(inputs.golds, "golds")
    predictions = _class_ids(inputs.predictions, "predictions")
    if len(golds) != len(predictions):
        raise ValueError(f"{len(golds)} gold labels but {len(predictions)} predictions")
    return golds, predictions


def score_matrix(scores: Sequence[Any], n_examples: int) -> np.ndarray:
    """Scores as an ``(n_examples, k)`` float array, from a flat list of n×k numbers or a nested list."""
    if n_examples == 0:
        raise ValueError("no examples to score")
    array = np.asarray(scores, dtype=float)
    if array.ndim == 2 and array.shape[0] == n_examples:
        return array
    if array.ndim == 1 and array.size % n_examples == 0 and array.size > 0:
        return array.reshape(n_examples, -1)
    raise ValueError(f"{array.size} scores (shape {array.shape}) cannot be split evenly over {n_examples} examples")


def _regression_scores(inputs: MetricInputs) -> tuple[np.ndarray, np.ndarray]:
    golds = np.asarray(inputs.golds, dtype=float)
    source = inputs.scores if inputs.scores is not None else inputs.predictions
    matrix = score_matrix(source, len(golds))
    if matrix.shape[1] != 1:
        raise ValueError(f"regression metrics need one score per example, got {matrix.shape[1]}")
    return golds, matrix[:, 0]


def _acc(inputs: MetricInputs) -> float:
    golds, predictions = _golds_and_predictions(inputs)
    return 100.0 * float(accuracy_score(golds, predictions))


def _f1(inputs: MetricInputs) -> float:
    golds, predictions = _golds_and_predictions(inputs)
    return 100.0 * float(f1_score(golds, predictions, average="binary", pos_label=1, zero_division=0))


def _f1_macro(inputs: MetricInputs) -> float:
    golds, predictions = _golds_and_predictions(inputs)
    return 100.0 * float(f1_score(golds, predictions, average="macro", zero_division=0))


def _f1_micro(inputs: MetricInputs) -> float:
    golds, predictions = _golds_and_predictions(inputs)
    return 100.0 * float(f1_score(golds, predictions, average="micro", zero_division=0))


def _mcc(inputs: MetricInputs) -> float:
    golds, predictions = _golds_and_predictions(inputs)
    with warnings.catch_warnings():
        # sklearn warns and returns 0.0 when a side holds a single class; 0.0 is what we report.
        warnings.simplefilter("ignore")
        return 100.0 * _finite_or_zero(matthews_corrcoef(golds, predictions))


def _correlation(fn: Callable[[np.ndarray, np.ndarray], Any], name: str) -> Callable[[MetricInputs], float]:
    def metric(inputs: MetricInputs) -> float:
        golds, scores = _regression_scores(inputs)
        if len(golds) < 2 or np.ptp(golds) == 0 or np.ptp(scores) == 0:
            logger.warning("%s is undefined for constant or single-example input; reporting 0.0", name)
            return 0.0
        return 100.0 * _finite_or_zero(fn(scores, golds)[0])

    metric.__doc__ = f"{name} correlation ×100 between regression scores and gold values."
    return metric


def _auc(inputs: MetricInputs) -> float:
    golds = _class_ids(inputs.golds, "golds")
    if inputs.scores is None:
        raise ValueError("AUC needs the model's scores")
    matrix = score_matrix(inputs.scores, len(golds))
    if matrix.shape[1] > 2:
        raise ValueError(f"AUC is defined here for binary tasks only; got {matrix.shape[1]} scores per example")
    # One score per example is already the positive-class score.
    positive = matrix[:, -1]
    if len(np.unique(golds)) < 2:
        logger.warning("AUC is undefined when the gold labels hold a single class; reporting 0.0")
        return 0.0
    return 100.0 * float(roc_auc_score(golds, positive))


def _cmat(inputs: MetricInputs) -> list[list[int]]:
    golds, predictions = _golds_and_predictions(inputs)
    labels = list(range(len(inputs.label_names))) if inputs.label_names else None
    matrix = confusion_matrix(golds, predictions, labels=labels)
    return [[int(cell) for cell in row] for row in matrix]


def _label_name(value: Any, label_names: Sequence[str] | None) -> str | None:
    """A sequence label as a name; None for padding (an id outside the label list)."""
    if isinstance(value, str):
        return value
    if label_names is None:
        raise ValueError("SeqEval got label ids but no label_names to map them")
    index = int(value)
    return label_names[index] if 0 <= index < len(label_names) else None


def filter_sequences(golds: Sequence[Sequence[Any]], predictions: Sequence[Sequence[Any]],
                     label_names: Sequence[str] | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted label-name sequences keeping only word positions.

    A position is dropped when its gold label is ``X``, ``CLS``, ``SEP`` or padding (an id
    outside ``label_names``); predictions beyond the gold length are padding. A special
    label predicted at a word position counts as ``O``.
    """
    if len(golds) != len(predictions):
        raise ValueError(f"{len(golds)} gold sequences but {len(predictions)} predicted sequences")
    kept_golds: list[list[str]] = []
    kept_predictions: list[list[str]] = []
    for number, (gold_seq, pred_seq) in enumerate(zip(golds, predictions)):
        gold_row: list[str] = []
        pred_row: list[str] = []
        for position, gold_value in enumerate(gold_seq):
            gold = _label_name(gold_value, label_names)
            if gold is None or gold in SEQ_IGNORED_LABELS:
                continue
            if position >= len(pred_seq):
                raise ValueError(f"sequence {number}: prediction has {len(pred_seq)} labels, gold has a word at {position}")
            pred = _label_name(pred_seq[position], label_names)
            pred_row.append("O" if pred is None or pred in SEQ_IGNORED_LABELS else pred)
            gold_row.append(gold)
        kept_golds.append(gold_row)
        kept_predictions.append(pred_row)
    return kept_golds, kept_predictions


def seqeval_report(golds: Sequence[Sequence[Any]], predictions: Sequence[Sequence[Any]],
                   label_names: Sequence[str] | None = None) -> str:
    """seqeval's per-type classification report (for the log) on the filtered sequences."""
    kept_golds, kept_predictions = filter_sequences(golds, predictions, label_names)
    return seqeval_classification_report(kept_golds, kept_predictions, digits=4, zero_division=0)


def _seqeval(inputs: MetricInputs) -> float:
    kept_golds, kept_predictions = filter_sequences(inputs.golds, inputs.predictions, inputs.label_names)
    logger.info("SeqEval per-type report:\n%s",
                seqeval_classification_report(kept_golds, kept_predictions, digits=4, zero_division=0))
    return 100.0 * float(seqeval_f1_score(kept_golds, kept_predictions, zero_division=0))


def _seq_acc(inputs: MetricInputs) -> float:
    """Share of words tagged right ×100 (POS), over the word positions ``filter_sequences`` keeps."""
    kept_golds, kept_predictions = filter_sequences(inputs.golds, inputs.predictions, inputs.label_names)
    n_words = sum(len(row) for row in kept_golds)
    if n_words == 0:
        raise ValueError("SeqAcc: the gold sequences hold no word positions")
    correct = sum(gold == pred for gold_row, pred_row in zip(kept_golds, kept_predictions)
                  for gold, pred in zip(gold_row, pred_row))
    return 100.0 * correct / n_words


def _answer_lists(inputs: MetricInputs) -> tuple[list[str], list[list[str]]]:
    predictions = [str(pred) for pred in inputs.predictions]
    golds = [[gold] if isinstance(gold, str) else list(gold) for gold in inputs.golds]
    return predictions, golds


def _em_f1(inputs: MetricInputs) -> dict[str, float]:
    predictions, golds = _answer_lists(inputs)
    return squad_v1_scores(predictions, golds)


def _em_f1_v2(inputs: MetricInputs) -> dict[str, float | int]:
    predictions, golds = _answer_lists(inputs)
    result = dict(squad_v2_scores(predictions, golds))
    if inputs.scores is not None:
        na_probs = [float(score) for score in inputs.scores]
        result.update(find_best_threshold(predictions, na_probs, golds))
    return result


METRIC_FUNCTIONS: dict[Metric, Callable[[MetricInputs], Any]] = {
    Metric.ACC: _acc,
    Metric.F1: _f1,
    Metric.MCC: _mcc,
    Metric.Pearson: _correlation(pearsonr, "Pearson"),
    Metric.Spearman: _correlation(spearmanr, "Spearman"),
    Metric.AUC: _auc,
    Metric.SeqEval: _seqeval,
    Metric.EmF1: _em_f1,
    Metric.F1MAC: _f1_macro,
    Metric.F1MIC: _f1_micro,
    Metric.EmF12: _em_f1_v2,
    Metric.CMAT: _cmat,
    Metric.SeqAcc: _seq_acc,
}


def calc_metrics(metric_meta: Sequence[Metric], golds: Sequence[Any], predictions: Sequence[Any],
                 scores: Sequence[Any] | None, label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Compute every metric of ``metric_meta``; returns ``{metric name: JSON-safe value}``."""
    inputs = MetricInputs(golds=golds, predictions=predictions, scores=scores, label_names=label_names)
    results: dict[str, Any] = {}
    for metric in metric_meta:
        metric = Metric(metric)
        function = METRIC_FUNCTIONS.get(metric)
        if function is None:
            raise ValueError(f"metric {metric.name} is not supported; supported: {[m.name for m in METRIC_FUNCTIONS]}")
        if len(golds) == 0:
            raise ValueError(f"metric {metric.name}: no examples to evaluate")
        results[metric.name] = function(inputs)
    return results

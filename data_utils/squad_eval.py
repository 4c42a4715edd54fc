"""SQuAD exact-match and F1, written from the published definitions of the official
v1.1 and v2.0 evaluation scripts, plus the v2.0 null-answer threshold search.

Answers are compared after normalisation: lower case, punctuation removed, the articles
``a``/``an``/``the`` removed, whitespace collapsed. A prediction scores the best value over
the gold answers. In v2.0 an empty gold list marks an unanswerable question: only the
empty prediction matches it.

Scores here are fractions in [0, 1] per question; the aggregate functions return ×100.
"""
from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence
from typing import Any

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when prediction and gold are equal after normalisation, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 between normalised prediction and gold (both empty → 1.0, one empty → 0.0)."""
    pred_tokens = _tokens(prediction)
    gold_tokens = _tokens(gold)
    if not pred_tokens or not gold_tokens:
        # v2.0 convention: an empty answer matches only an empty answer.
        return float(pred_tokens == gold_tokens)
    overlap = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _best_over_golds(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) of one prediction: maximum over gold answers; no gold answers means no-answer."""
    if not golds:
        # v2.0 scores an unanswerable question against the single gold answer "".
        golds = [""]
    return (
        max(exact_match(prediction, gold) for gold in golds),
        max(token_f1(prediction, gold) for gold in golds),
    )


def _check_lengths(predictions: Sequence[str], golds: Sequence[Sequence[str]], *extra: Sequence[Any]) -> None:
    if any(len(seq) != len(golds) for seq in (predictions, *extra)):
        raise ValueError(
            f"SQuAD evaluation needs one prediction per question: got {len(predictions)} predictions "
            f"for {len(golds)} questions" + (f" and {len(extra[0])} null-answer scores" if extra else "")
        )
    if not golds:
        raise ValueError("SQuAD evaluation needs at least one question")


def squad_v1_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Official SQuAD v1.1 numbers: ``{"exact_match", "f1"}`` ×100, max over each question's golds."""
    _check_lengths(predictions, golds)
    if any(not gold for gold in golds):
        raise ValueError("SQuAD v1.1 evaluation: every question needs at least one gold answer (use EmF12 for v2.0)")
    pairs = [_best_over_golds(pred, gold) for pred, gold in zip(predictions, golds)]
    return {
        "exact_match": 100.0 * sum(em for em, _ in pairs) / len(pairs),
        "f1": 100.0 * sum(f1 for _, f1 in pairs) / len(pairs),
    }


def squad_v2_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float | int]:
    """Official SQuAD v2.0 numbers: overall, ``HasAns_*`` and ``NoAns_*`` exact/F1 ×100 and totals."""
    _check_lengths(predictions, golds)
    pairs = [_best_over_golds(pred, gold) for pred, gold in zip(predictions, golds)]
    result: dict[str, float | int] = {
        "exact": 100.0 * sum(em for em, _ in pairs) / len(pairs),
        "f1": 100.0 * sum(f1 for _, f1 in pairs) / len(pairs),
        "total": len(pairs),
    }
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        subset = [pair for pair, gold in zip(pairs, golds) if bool(gold) == wanted]
        if subset:
            result[f"{prefix}_exact"] = 100.0 * sum(em for em, _ in subset) / len(subset)
            result[f"{prefix}_f1"] = 100.0 * sum(f1 for _, f1 in subset) / len(subset)
            result[f"{prefix}_total"] = len(subset)
    return result


def apply_null_threshold(predictions: Sequence[str], na_probs: Sequence[float], threshold: float) -> list[str]:
    """Replace a prediction by the empty (no-answer) string where its null score exceeds ``threshold``."""
    if len(predictions) != len(na_probs):
        raise ValueError(f"{len(predictions)} predictions but {len(na_probs)} null-answer scores")
    return ["" if prob > threshold else pred for pred, prob in zip(predictions, na_probs)]


def _best_threshold_for(per_question: Sequence[float], predictions: Sequence[str], na_probs: Sequence[float],
                        golds: Sequence[Sequence[str]]) -> tuple[float, float]:
    """Sweep thresholds over the sorted null scores; return (best score ×100, its threshold)."""
    # Threshold below every null score: everything is predicted unanswerable.
    current = float(sum(1 for gold in golds if not gold))
    best, best_threshold = current, min(0.0, min(na_probs) - 1.0)
    for index in sorted(range(len(golds)), key=lambda i: na_probs[i]):
        # Raising the threshold to this question's null score lets its answer through.
        if golds[index]:
            current += per_question[index]
        elif predictions[index]:
            current -= 1.0
        if current > best:
            best, best_threshold = current, float(na_probs[index])
    return 100.0 * best / len(golds), best_threshold


def find_best_threshold(predictions: Sequence[str], na_probs: Sequence[float],
                        golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """The null-answer thresholds that maximise v2.0 EM and F1 on this (dev) set.

    ``predictions`` are the best non-null answers, ``na_probs`` the null-answer scores
    (higher = more likely unanswerable). A question is answered "" when its score is above
    the threshold (see ``apply_null_threshold``). Returns ``best_exact``,
    ``best_exact_thresh``, ``best_f1``, ``best_f1_thresh`` (scores ×100).
    """
    _check_lengths(predictions, golds, na_probs)
    pairs = [_best_over_golds(pred, gold) for pred, gold in zip(predictions, golds)]
    best_exact, exact_threshold = _best_threshold_for([em for em, _ in pairs], predictions, na_probs, golds)
    best_f1, f1_threshold = _best_threshold_for([f1 for _, f1 in pairs], predictions, na_probs, golds)
    return {
        "best_exact": best_exact,
        "best_exact_thresh": exact_threshold,
        "best_f1": best_f1,
        "best_f1_thresh": f1_threshold,
    }

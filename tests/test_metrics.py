"""Metrics against hand-computed numbers; SQuAD EM/F1 and the null-threshold search."""
from __future__ import annotations

import json
import math

import pytest

from data_utils.metrics import (
    METRIC_FUNCTIONS,
    calc_metrics,
    filter_sequences,
    score_matrix,
    seqeval_report,
)
from data_utils.squad_eval import (
    apply_null_threshold,
    find_best_threshold,
    normalize_answer,
    squad_v1_scores,
    squad_v2_scores,
    token_f1,
)
from data_utils.task_def import UNSUPPORTED_METRICS, Metric

# golds/preds: TP=2 (idx 1, 4), TN=2 (idx 0, 3), FN=1 (idx 2), FP=0.
GOLDS = [0, 1, 1, 0, 1]
PREDS = [0, 1, 0, 0, 1]


def test_classification_metrics_match_hand_computation():
    result = calc_metrics([Metric.ACC, Metric.F1, Metric.MCC, Metric.F1MAC, Metric.F1MIC], GOLDS, PREDS, None)
    assert result["ACC"] == pytest.approx(80.0)
    # precision 1, recall 2/3 → F1 0.8
    assert result["F1"] == pytest.approx(80.0)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 4 / sqrt(2*3*2*3) = 2/3
    assert result["MCC"] == pytest.approx(200.0 / 3)
    # class 0: P=2/3 R=1 → 0.8; class 1: P=1 R=2/3 → 0.8
    assert result["F1MAC"] == pytest.approx(80.0)
    assert result["F1MIC"] == pytest.approx(80.0)
    assert list(result) == ["ACC", "F1", "MCC", "F1MAC", "F1MIC"]


def test_f1_uses_positive_label_one():
    # Only class 0 is predicted right: F1 of class 1 is 0, ACC is not.
    result = calc_metrics([Metric.ACC, Metric.F1], [0, 0, 1], [0, 0, 0], None)
    assert result["ACC"] == pytest.approx(200.0 / 3)
    assert result["F1"] == 0.0


def test_macro_and_micro_differ_on_three_classes():
    golds = [0, 0, 0, 1, 2]
    preds = [0, 0, 1, 1, 1]
    result = calc_metrics([Metric.F1MAC, Metric.F1MIC], golds, preds, None)
    # per class F1: c0 P=1 R=2/3 → 0.8; c1 P=1/3 R=1 → 0.5; c2 → 0
    assert result["F1MAC"] == pytest.approx(100 * (0.8 + 0.5 + 0.0) / 3)
    assert result["F1MIC"] == pytest.approx(60.0)


def test_mcc_single_class_is_zero():
    assert calc_metrics([Metric.MCC], [1, 1, 1], [1, 1, 1], None) == {"MCC": 0.0}


def test_pearson_spearman_known_vectors():
    golds = [1.0, 2.0, 3.0, 4.0]
    scores = [1.0, 2.0, 3.0, 5.0]
    result = calc_metrics([Metric.Pearson, Metric.Spearman], golds, scores, scores)
    # x centred: -1.5 -.5 .5 1.5; y mean 2.75 centred: -1.75 -.75 .25 2.25
    cov = 1.5 * 1.75 + 0.5 * 0.75 + 0.5 * 0.25 + 1.5 * 2.25
    expected = cov / math.sqrt(5.0 * (1.75**2 + 0.75**2 + 0.25**2 + 2.25**2))
    assert result["Pearson"] == pytest.approx(100 * expected)
    assert result["Spearman"] == pytest.approx(100.0)


def test_spearman_with_ranks_reversed_pair():
    # ranks 1 2 3 vs 1 3 2: d² sum = 2, rho = 1 - 6*2/(3*8) = 0.5
    result = calc_metrics([Metric.Spearman], [1.0, 2.0, 3.0], [10.0, 30.0, 20.0], [10.0, 30.0, 20.0])
    assert result["Spearman"] == pytest.approx(50.0)


def test_regression_metrics_read_scores_not_predictions():
    result = calc_metrics([Metric.Pearson], [1.0, 2.0, 3.0], [0, 0, 0], [[1.0], [2.0], [3.0]])
    assert result["Pearson"] == pytest.approx(100.0)


def test_constant_regression_scores_give_zero_not_nan():
    result = calc_metrics([Metric.Pearson, Metric.Spearman], [1.0, 2.0, 3.0], [2.0] * 3, [2.0] * 3)
    assert result == {"Pearson": 0.0, "Spearman": 0.0}
    json.dumps(result, allow_nan=False)


def test_auc_flat_and_nested_scores():
    golds = [0, 0, 1, 1]
    # positive-class scores 0.1, 0.4, 0.35, 0.8: of 4 (pos, neg) pairs only (0.35, 0.4) is misordered
    flat = [0.9, 0.1, 0.6, 0.4, 0.65, 0.35, 0.2, 0.8]
    nested = [flat[i:i + 2] for i in range(0, 8, 2)]
    assert calc_metrics([Metric.AUC], golds, [0, 0, 0, 1], flat) == {"AUC": pytest.approx(75.0)}
    assert calc_metrics([Metric.AUC], golds, [0, 0, 0, 1], nested) == {"AUC": pytest.approx(75.0)}
    # One score per example is taken as the positive-class score.
    assert calc_metrics([Metric.AUC], golds, [0, 0, 0, 1], flat[1::2]) == {"AUC": pytest.approx(75.0)}


def test_auc_rejects_multiclass_scores():
    with pytest.raises(ValueError, match="binary"):
        calc_metrics([Metric.AUC], [0, 1], [0, 1], [0.2, 0.3, 0.5, 0.1, 0.8, 0.1])


def test_score_matrix_rejects_uneven_scores():
    with pytest.raises(ValueError, match="evenly"):
        score_matrix([0.1, 0.2, 0.3], 2)


def test_confusion_matrix_uses_all_labels():
    result = calc_metrics([Metric.CMAT], [0, 1, 1, 0], [0, 1, 0, 0], None, label_names=["a", "b", "c"])
    assert result == {"CMAT": [[2, 0, 0], [1, 1, 0], [0, 0, 0]]}
    assert all(type(cell) is int for row in result["CMAT"] for cell in row)


NER_LABELS = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "X", "CLS", "SEP"]


def test_seqeval_filters_special_positions_by_gold():
    gold = ["CLS", "B-PER", "I-PER", "X", "O", "B-LOC", "SEP"]
    # Position 3 (gold X) predicts B-LOC: must be ignored; trailing padding predictions too.
    pred = ["O", "B-PER", "I-PER", "B-LOC", "O", "B-ORG", "X", "O", "O"]
    kept_gold, kept_pred = filter_sequences([gold], [pred])
    assert kept_gold == [["B-PER", "I-PER", "O", "B-LOC"]]
    assert kept_pred == [["B-PER", "I-PER", "O", "B-ORG"]]
    # entities gold {PER, LOC}, predicted {PER, ORG}: P = R = 1/2
    assert calc_metrics([Metric.SeqEval], [gold], [pred], None) == {"SeqEval": pytest.approx(50.0)}


def test_seqeval_with_ids_padding_and_special_predictions():
    index = {name: i for i, name in enumerate(NER_LABELS)}
    gold = [index[n] for n in ["CLS", "B-ORG", "X", "I-ORG", "O", "SEP"]] + [-1, -1]
    # A special label predicted at a word position counts as O: the ORG entity is broken.
    pred_ok = [index[n] for n in ["CLS", "B-ORG", "O", "I-ORG", "O", "SEP", "O", "O"]]
    pred_bad = [index[n] for n in ["CLS", "B-ORG", "O", "SEP", "O", "SEP", "O", "O"]]
    result = calc_metrics([Metric.SeqEval], [gold, gold], [pred_ok, pred_bad], None, NER_LABELS)
    # gold: 2 ORG entities; predicted: full ORG (correct) + B-ORG alone (wrong span) → P = R = 1/2
    assert result == {"SeqEval": pytest.approx(50.0)}
    report = seqeval_report([gold, gold], [pred_ok, pred_bad], NER_LABELS)
    assert "ORG" in report and "PER" not in report


def test_seqeval_ids_without_label_names_fail():
    with pytest.raises(ValueError, match="label_names"):
        calc_metrics([Metric.SeqEval], [[1, 2]], [[1, 2]], None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Cat!", "cat"),
        ("an apple, a pear", "apple pear"),
        ("Theatre", "theatre"),  # 'the' inside a word stays
        ("  Hello\tWorld. ", "hello world"),
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_token_f1_partial_overlap():
    # pred tokens: [denver, broncos, win]; gold: [denver, broncos]: P=2/3, R=1 → F1=0.8
    assert token_f1("The Denver Broncos win", "Denver Broncos!") == pytest.approx(0.8)
    # repeated tokens count with multiplicity: pred [a1, a1], gold [a1]: P=1/2 R=1
    assert token_f1("a1 a1", "a1") == pytest.approx(2 / 3)


def test_squad_v1_max_over_golds():
    predictions = ["the Denver Broncos", "Santa Clara", "1999"]
    golds = [["Broncos", "Denver Broncos"], ["Levi's Stadium", "Santa Clara, California"], ["2016"]]
    result = calc_metrics([Metric.EmF1], golds, predictions, None)
    # EM: 1, 0, 0; F1: 1, (P=1, R=2/3 → 0.8), 0
    assert result["EmF1"]["exact_match"] == pytest.approx(100 / 3)
    assert result["EmF1"]["f1"] == pytest.approx(100 * 1.8 / 3)


def test_squad_v1_rejects_unanswerable():
    with pytest.raises(ValueError, match="v1.1"):
        squad_v1_scores(["x"], [[]])


def test_squad_v2_no_answer_handling():
    predictions = ["", "cat", "", "a dog"]
    golds = [[], [], ["the cat"], ["Dog", "dogs"]]
    result = squad_v2_scores(predictions, golds)
    # q0: no-ans, pred "" → 1; q1: no-ans, pred "cat" → 0; q2: has-ans, pred "" → 0; q3 → 1
    assert result["exact"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx(50.0)
    assert result["HasAns_exact"] == pytest.approx(50.0)
    assert result["NoAns_exact"] == pytest.approx(50.0)
    assert result["HasAns_total"] == 2 and result["NoAns_total"] == 2 and result["total"] == 4


def test_best_threshold_search_by_brute_force():
    predictions = ["cat", "dog house", "red", "blue sky", "x"]
    golds = [["cat"], [], ["the red car"], [], ["x"]]
    na_probs = [0.1, 0.8, 0.3, 0.2, 0.9]
    result = find_best_threshold(predictions, na_probs, golds)

    def scores_at(threshold: float) -> dict:
        return squad_v2_scores(apply_null_threshold(predictions, na_probs, threshold), golds)

    candidates = [-1.0] + sorted(na_probs)
    best_exact = max(scores_at(t)["exact"] for t in candidates)
    best_f1 = max(scores_at(t)["f1"] for t in candidates)
    assert result["best_exact"] == pytest.approx(best_exact)
    assert result["best_f1"] == pytest.approx(best_f1)
    # The returned thresholds reproduce the best scores when applied.
    assert scores_at(result["best_exact_thresh"])["exact"] == pytest.approx(best_exact)
    assert scores_at(result["best_f1_thresh"])["f1"] == pytest.approx(best_f1)
    # By hand: all null scores 2/5 (q1, q3); threshold 0.1 answers only q0 (right) → 3/5, the best;
    # 0.2 adds q3 (wrongly answered) → 2/5; 0.3 adds q2 (EM 0) → 2/5; 0.8 → 1/5; 0.9 → 2/5.
    assert result["best_exact"] == pytest.approx(60.0)
    assert result["best_exact_thresh"] == pytest.approx(0.1)


def test_emf12_adds_threshold_numbers_when_scores_given():
    result = calc_metrics([Metric.EmF12], [["cat"], []], ["cat", "dog"], [0.2, 0.7])
    assert result["EmF12"]["exact"] == pytest.approx(50.0)
    assert result["EmF12"]["best_exact"] == pytest.approx(100.0)
    assert result["EmF12"]["best_exact_thresh"] == pytest.approx(0.2)


def test_all_metrics_are_plain_json():
    meta = [Metric.ACC, Metric.F1, Metric.MCC, Metric.F1MAC, Metric.F1MIC, Metric.AUC, Metric.CMAT]
    result = calc_metrics(meta, GOLDS, PREDS, [0.7, 0.3, 0.2, 0.8, 0.6, 0.4, 0.9, 0.1, 0.1, 0.9], ["n", "y"])
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    for name in ("ACC", "F1", "MCC", "F1MAC", "F1MIC", "AUC"):
        assert type(result[name]) is float


def test_unsupported_metric_is_a_clear_error():
    assert set(METRIC_FUNCTIONS) | set(UNSUPPORTED_METRICS) == set(Metric)
    with pytest.raises(ValueError, match="SeqEvalList is not supported"):
        calc_metrics([Metric.SeqEvalList], [0], [0], None)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 gold labels but 3 predictions"):
        calc_metrics([Metric.ACC], [0, 1], [0, 1, 1], None)

"""calc_metrics.py on a real RTE / STS-B dev slice with hand-made score files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    # calc_metrics.py is a top-level script, not part of an installed package.
    sys.path.insert(0, str(ROOT))

import calc_metrics
from data_utils.errors import MTDNNInputError

DATA = ROOT / "tests" / "data" / "metrics"
GLUE_DEF = str(ROOT / "experiments" / "glue" / "glue_task_def.yml")
RTE_DEV = str(DATA / "rte_dev.tsv")
RTE_SCORES = str(DATA / "rte_dev_scores_epoch_0.json")

# The first 12 RTE dev rows (not_entailment=0, entailment=1) and the score file's argmax.
RTE_GOLDS = [0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0]
RTE_PREDS = [0, 1, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0]

RTE_ALL_METRICS_YAML = """\
rte:
  data_format: PremiseAndOneHypothesis
  enable_san: false
  labels: [not_entailment, entailment]
  metric_meta: [ACC, F1, MCC, AUC, CMAT]
  n_class: 2
  task_type: Classification
"""


def _args(task: str, std_input: str, score: str, task_def: str = GLUE_DEF) -> list[str]:
    return ["--task_def", task_def, "--task", task, "--std_input", std_input, "--score", score]


def test_fixture_golds_are_the_real_rte_labels():
    labels = [line.split("\t")[1] for line in Path(RTE_DEV).read_text().splitlines()]
    assert [int(label == "entailment") for label in labels] == RTE_GOLDS


def test_rte_accuracy(capsys):
    metrics = calc_metrics.main(_args("rte", RTE_DEV, RTE_SCORES))
    # 9 of 12 argmax predictions are right (uids in the score file are shuffled, some as ints).
    assert metrics == {"ACC": pytest.approx(75.0)}
    assert capsys.readouterr().out == "ACC: 75.0\n"


def test_rte_all_binary_metrics(tmp_path, capsys):
    task_def = tmp_path / "rte.yml"
    task_def.write_text(RTE_ALL_METRICS_YAML)
    metrics = calc_metrics.main(_args("rte", RTE_DEV, RTE_SCORES, str(task_def)))
    # TP=6 FN=2 FP=1 TN=3
    assert metrics["ACC"] == pytest.approx(75.0)
    assert metrics["F1"] == pytest.approx(100 * 12 / 15)
    assert metrics["MCC"] == pytest.approx(100 * (6 * 3 - 1 * 2) / np.sqrt(7 * 8 * 4 * 5))
    # 29 of the 32 (positive, negative) pairs are ordered by the entailment probability.
    assert metrics["AUC"] == pytest.approx(100 * 29 / 32)
    assert metrics["CMAT"] == [[3, 1], [2, 6]]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["ACC", "F1", "MCC", "AUC", "CMAT"]
    assert lines[-1] == "CMAT: [[3, 1], [2, 6]]"


def test_stsb_correlations_by_hand():
    metrics = calc_metrics.main(_args("stsb", str(DATA / "stsb_dev.tsv"), str(DATA / "stsb_dev_scores_epoch_0.json")))
    golds = np.array([5.0, 4.75, 5.0, 2.4, 2.75, 2.615])
    scores = np.array([4.0, 4.5, 4.8, 2.0, 3.0, 2.5])

    def pearson(x: np.ndarray, y: np.ndarray) -> float:
        x, y = x - x.mean(), y - y.mean()
        return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))

    gold_ranks = np.array([5.5, 4, 5.5, 1, 3, 2])  # the two 5.0s share ranks 5 and 6
    score_ranks = np.array([4, 5, 6, 1, 3, 2])
    assert metrics["Pearson"] == pytest.approx(100 * pearson(golds, scores))
    assert metrics["Spearman"] == pytest.approx(100 * pearson(gold_ranks, score_ranks))


def _score_file(tmp_path: Path, uids: list, scores: list) -> str:
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"metrics": {}, "predictions": [0] * len(uids), "uids": uids, "scores": scores}))
    return str(path)


def test_missing_uid_is_named(tmp_path):
    uids = [str(i) for i in range(11)]  # uid 11 has no scores
    score = _score_file(tmp_path, uids, [0.5, 0.5] * 11)
    with pytest.raises(MTDNNInputError, match="1 uid.* have no scores, first '11'") as info:
        calc_metrics.main(_args("rte", RTE_DEV, score))
    assert str(info.value).startswith(score)


def test_extra_uid_is_named(tmp_path):
    uids = [str(i) for i in range(12)] + ["99"]
    score = _score_file(tmp_path, uids, [0.5, 0.5] * 13)
    with pytest.raises(MTDNNInputError, match="not in .*rte_dev.tsv, first '99'"):
        calc_metrics.main(_args("rte", RTE_DEV, score))


def test_wrong_number_of_scores(tmp_path):
    score = _score_file(tmp_path, [str(i) for i in range(12)], [0.5] * 12)
    with pytest.raises(MTDNNInputError, match="12 scores for 12 uids: expected exactly n_class=2"):
        calc_metrics.main(_args("rte", RTE_DEV, score))


def test_bad_gold_label_names_file_and_line(tmp_path):
    std_input = tmp_path / "rte_dev.tsv"
    std_input.write_text("0\tentailment\ta\tb\n1\tmaybe\ta\tb\n")
    with pytest.raises(MTDNNInputError, match=r"rte_dev.tsv:2: label: label 'maybe'"):
        calc_metrics.main(_args("rte", str(std_input), RTE_SCORES))


def test_ranking_task_is_refused(tmp_path):
    with pytest.raises(MTDNNInputError, match="classification and regression"):
        calc_metrics.main(_args("qnnli", RTE_DEV, RTE_SCORES))


def test_cli_prints_error_and_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "calc_metrics.py"), *_args("rte", RTE_DEV, str(tmp_path / "none.json"))],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'none.json'}: score file not found"

"""Score-file and GLUE-submission writers, names, and the validating reader."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_utils.errors import MTDNNInputError
from data_utils.score_files import (
    glue_submission_name,
    read_score_file,
    score_file_name,
    scores_by_uid,
    write_glue_submission,
    write_score_file,
)
from data_utils.task_def import load_task_defs

ROOT = Path(__file__).resolve().parents[1]
GLUE_DEFS = load_task_defs(ROOT / "experiments" / "glue" / "glue_task_def.yml")


def test_names_follow_master_layout(tmp_path):
    assert score_file_name(tmp_path, "rte", "dev", epoch=0) == tmp_path / "rte_dev_scores_epoch_0.json"
    assert score_file_name(tmp_path, "mnli_matched", "test", updates=2000) == (
        tmp_path / "mnli_matched_test_scores_updates_2000.json"
    )
    assert glue_submission_name(tmp_path, "stsb", "test", epoch=3) == tmp_path / "stsb_test_scores_epoch_3.tsv"
    with pytest.raises(ValueError, match="exactly one"):
        score_file_name(tmp_path, "rte", "dev")
    with pytest.raises(ValueError, match="split"):
        score_file_name(tmp_path, "rte", "train", epoch=0)


def test_score_file_round_trip_with_numpy_values(tmp_path):
    path = tmp_path / "out" / "rte_dev_scores_epoch_0.json"
    probs = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    write_score_file(path, {"ACC": 50.0, "CMAT": [[1, 0], [1, 0]]}, [np.int64(1), np.int64(0)], [7, "8"],
                     probs.reshape(-1))
    raw = json.loads(path.read_text())
    assert list(raw) == ["metrics", "predictions", "uids", "scores"]
    assert raw == {
        "metrics": {"ACC": 50.0, "CMAT": [[1, 0], [1, 0]]},
        "predictions": [1, 0],
        "uids": ["7", "8"],
        "scores": [0.25, 0.75, 0.5, 0.5],
    }
    loaded = read_score_file(path)
    assert loaded.uids == ["7", "8"] and loaded.predictions == [1, 0]
    assert scores_by_uid(loaded, 2, path) == {"7": [0.25, 0.75], "8": [0.5, 0.5]}
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_score_file_writes_non_finite_values_as_null_with_a_warning(tmp_path, caplog):
    # Step 4: a NaN metric (Pearson of a constant prediction) or a diverged score must not cost the file.
    path = tmp_path / "nan.json"
    write_score_file(path, {"Pearson": float("nan"), "ACC": 50.0}, [1.0, 2.0], ["0", "1"], [np.float32("inf"), 2.0])
    data = json.loads(path.read_text(encoding="utf-8"))  # strict JSON: no NaN or Infinity tokens
    assert data["metrics"] == {"Pearson": None, "ACC": 50.0} and data["scores"] == [None, 2.0]
    assert "2 value(s) were NaN or infinite; written as null" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["nan.json"]


def test_score_file_length_mismatch(tmp_path):
    with pytest.raises(ValueError, match="2 predictions but 1 uids"):
        write_score_file(tmp_path / "x.json", {}, [0, 1], ["0"], [0.1, 0.9, 0.2, 0.8])


def test_glue_submission_sorted_by_int_uid_with_label_names(tmp_path):
    path = tmp_path / "rte_test_scores_epoch_1.tsv"
    write_glue_submission(path, ["10", "2", "1"], [1, 0, np.int64(1)], GLUE_DEFS["rte"])
    assert path.read_text() == "index\tprediction\n1\tentailment\n2\tnot_entailment\n10\tentailment\n"


def test_glue_submission_int_labels_and_regression(tmp_path):
    cola = tmp_path / "cola.tsv"
    write_glue_submission(cola, [1, 0], [0, 1], GLUE_DEFS["cola"])
    assert cola.read_text() == "index\tprediction\n0\t1\n1\t0\n"
    stsb = tmp_path / "stsb.tsv"
    write_glue_submission(stsb, ["1", "0"], [np.float32(3.5), 4.25], GLUE_DEFS["stsb"])
    assert stsb.read_text() == "index\tprediction\n0\t4.25\n1\t3.5\n"


def test_glue_submission_falls_back_to_string_sort(tmp_path):
    path = tmp_path / "s.tsv"
    write_glue_submission(path, ["b", "10", "a"], [0, 1, 0], GLUE_DEFS["qnli"])
    assert path.read_text().splitlines()[1:] == ["10\tentailment", "a\tnot_entailment", "b\tnot_entailment"]


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"metrics": {}, "predictions": [], "uids": []}, "missing key"),
        ({"metrics": {}, "predictions": [0], "uids": ["0", "1"], "scores": []}, "1 predictions but 2 uids"),
        ({"metrics": {}, "predictions": [0], "uids": [None], "scores": []}, r"uids\[0\]"),
        ({"metrics": {}, "predictions": [0], "uids": ["0"], "scores": ["x"]}, r"scores\[0\]"),
        ({"metrics": [], "predictions": [], "uids": [], "scores": []}, "'metrics' must be an object"),
    ],
)
def test_read_score_file_errors_name_the_file(tmp_path, content, message):
    path = _write(tmp_path / "scores.json", content)
    with pytest.raises(MTDNNInputError, match=message) as info:
        read_score_file(path)
    assert str(info.value).startswith(str(path))


def test_read_missing_score_file(tmp_path):
    with pytest.raises(MTDNNInputError, match="not found"):
        read_score_file(tmp_path / "nope.json")


def test_scores_by_uid_checks_counts_and_duplicates(tmp_path):
    path = _write(tmp_path / "s.json", {"metrics": {}, "predictions": [0, 1], "uids": [0, 1],
                                        "scores": [0.1, 0.9, 0.2]})
    with pytest.raises(MTDNNInputError, match="expected exactly n_class=2"):
        scores_by_uid(read_score_file(path), 2, path)
    nested = _write(tmp_path / "n.json", {"metrics": {}, "predictions": [0, 1], "uids": ["0", "1"],
                                          "scores": [[0.1, 0.9], [0.2]]})
    with pytest.raises(MTDNNInputError, match="uid '1' has 1 scores"):
        scores_by_uid(read_score_file(nested), 2, nested)
    dup = _write(tmp_path / "d.json", {"metrics": {}, "predictions": [0, 1], "uids": ["3", 3],
                                       "scores": [0.1, 0.9, 0.2, 0.8]})
    with pytest.raises(MTDNNInputError, match="uid '3' appears more than once"):
        scores_by_uid(read_score_file(dup), 2, dup)
    regression = _write(tmp_path / "r.json", {"metrics": {}, "predictions": [1.5, 2.0], "uids": ["0", "1"],
                                              "scores": [1.5, 2.0]})
    assert scores_by_uid(read_score_file(regression), 1, regression) == {"0": [1.5], "1": [2.0]}

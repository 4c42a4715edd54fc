"""The canonical-TSV reader: real GLUE slices, every format, and every malformed row."""
from __future__ import annotations

from pathlib import Path

import pytest

from data_utils.canonical import CanonicalRow, encode_row_label, read_canonical
from data_utils.errors import MTDNNInputError
from data_utils.task_def import load_task_defs

# CI clones the repository with the shared folder beside it.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "canonical"
GLUE = load_task_defs(ROOT / "experiments" / "glue" / "glue_task_def.yml")
NER = load_task_defs(ROOT / "experiments" / "ner" / "ner_task_def.yml")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, task: str, defs=GLUE) -> str:
    with pytest.raises(MTDNNInputError) as caught:
        read_canonical(path, defs[task])
    return str(caught.value)


def test_rte_slice_matches_the_glue_file():
    rows = read_canonical(DATA / "rte_dev.tsv", GLUE["rte"])
    glue = SHARED / "data" / "glue" / "RTE" / "dev.tsv"
    assert len(rows) == 200
    first = rows[0]
    assert first == CanonicalRow(
        uid="0",
        label="not_entailment",
        texts=[
            "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, "
            "according to the Christopher Reeve Foundation.",
            "Christopher Reeve had an accident.",
        ],
        ruid=None,
        softlabel=None,
        line=1,
    )
    if glue.is_file():
        raw = [line.strip().split("\t") for line in glue.read_text(encoding="utf-8").splitlines()[1:201]]
        assert [(r.uid, r.label, r.texts) for r in rows] == [(f[0], f[-1], [f[1], f[2]]) for f in raw]
    labels = [encode_row_label(row, GLUE["rte"]) for row in rows]
    assert labels[:2] == [0, 1]
    assert labels.count(1) == sum(row.label == "entailment" for row in rows)


def test_label_kinds_through_the_registry():
    stsb = read_canonical(DATA / "stsb_dev.tsv", GLUE["stsb"])
    assert stsb[0].label == "5.000" and encode_row_label(stsb[0], GLUE["stsb"]) == 5.0
    sst = read_canonical(DATA / "sst_dev.tsv", GLUE["sst"])
    # The GLUE sentence ends in a space; the line's edges are stripped as upstream did.
    assert sst[0].texts == ["it 's a charming and often affecting journey ."]
    assert {encode_row_label(row, GLUE["sst"]) for row in sst} == {0, 1}
    cola = read_canonical(DATA / "cola_dev.tsv", GLUE["cola"])
    assert len(cola) == 200 and cola[0].texts == ["The sailors rode the breeze clear of the rocks."]


def test_multi_hypothesis_rows():
    rows = read_canonical(DATA / "qnnli_dev.tsv", GLUE["qnnli"])
    assert len(rows) == 30
    row = rows[0]
    assert row.ruid == ["200", "201"] and row.label == "not_entailment,not_entailment" and len(row.texts) == 3
    assert encode_row_label(row, GLUE["qnnli"]) == [0, 0]
    assert {tuple(encode_row_label(r, GLUE["qnnli"])) for r in rows} >= {(0, 0), (1, 1)}


def test_sequence_json_and_python_repr_read_alike():
    json_rows = read_canonical(DATA / "ner_dev.tsv", NER["ner"])
    repr_rows = read_canonical(DATA / "ner_test.tsv", NER["ner"])
    assert [(r.uid, r.label, r.texts) for r in json_rows] == [(r.uid, r.label, r.texts) for r in repr_rows]
    assert json_rows[4].texts == ["He", "said", '"', "it's", "\\", "fine", "'"]
    assert encode_row_label(json_rows[1], NER["ner"]) == [3, 4]


def test_soft_label_column_after_the_label(tmp_path):
    path = write(tmp_path, "sst_train.tsv", "7\t1\t[0.25, 0.75]\ta fine film\n")
    (row,) = read_canonical(path, GLUE["sst"])
    assert (row.uid, row.label, row.texts, row.softlabel) == ("7", "1", ["a fine film"], [0.25, 0.75])
    path = write(tmp_path, "rte_train.tsv", "3\tentailment\t[0.1, 0.9]\tp\th\n")
    assert read_canonical(path, GLUE["rte"])[0].softlabel == [0.1, 0.9]
    path = write(tmp_path, "qnnli_train.tsv", "0\ta,b\tentailment,not_entailment\t[0.8, 0.2]\tq\th1\th2\n")
    row = read_canonical(path, GLUE["qnnli"])[0]
    assert row.softlabel == [0.8, 0.2] and row.texts == ["q", "h1", "h2"]


def test_empty_last_cell_is_kept(tmp_path):
    path = write(tmp_path, "rte_dev.tsv", "1\tentailment\tpremise\t\n")
    assert read_canonical(path, GLUE["rte"])[0].texts == ["premise", ""]


def test_byte_order_mark_and_missing_final_newline(tmp_path):
    path = tmp_path / "mrpc_dev.tsv"
    path.write_bytes("\ufeff0\t1\ta\tb\n1\t0\tc\td".encode())
    rows = read_canonical(path, GLUE["mrpc"])
    assert [(r.uid, r.texts) for r in rows] == [("0", ["a", "b"]), ("1", ["c", "d"])]


@pytest.mark.parametrize(
    ("task", "text", "line", "what"),
    [
        ("rte", "0\tentailment\tp\th\n1\tentailment\tp\n", 2, "expected 4 columns"),
        ("sst", "0\t1\ta\tb\n", 1, "soft-label column"),
        ("rte", "0\tentailment\tp\th\n1\tmaybe\tp\th\n", 2, "label 'maybe' is not one of task rte's labels"),
        ("stsb", "0\tfive\tp\th\n", 1, "regression score 'five'"),
        ("cola", "0\t2\tsentence\n", 1, "out of range"),
        ("mrpc", "0\t1\ta\tb\n\n1\t1\tc\td\n", 2, "empty line"),
        ("qnnli", "0\ta,b\tentailment\tq\th1\th2\n", 1, "2 ruids but 1 labels"),
        ("qnnli", "0\ta,b\tentailment,entailment\tq\th1\n", 1, "2 ruids need 6 columns"),
        ("qnnli", "0\ta,b\tentailment,entailment\tq\n", 1, "expected at least 5 columns"),
        ("qnnli", "0\ta,b\tentailment,maybe\tq\th1\th2\n", 1, "label 'maybe'"),
        ("sst", "0\t1\t[0.5]\ttext\n", 1, "1 probabilities for task sst with 2 classes"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, task, text, line, what):
    path = write(tmp_path, f"{task}_dev.tsv", text)
    message = error_of(path, task)
    assert message.startswith(f"{path}:{line}: ")
    assert what in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('0\t["O", "B-PER"]\t["Peter"]\n', "2 labels for 1 words"),
        ('0\t["O"]\tPeter\n', "words column is neither a JSON list nor a Python list literal"),
        ("0\t[\"O\"]\t__import__('os').system('echo pwned')\n", "neither a JSON list nor a Python list literal"),
        ('0\t["O"]\t[1]\n', "words column must be a list of strings"),
        ('0\t["Q"]\t["Peter"]\n', "label 'Q'"),
    ],
)
def test_malformed_sequence_rows(tmp_path, text, what):
    path = write(tmp_path, "ner_dev.tsv", text)
    message = error_of(path, "ner", NER)
    assert message.startswith(f"{path}:1: ") and what in message


def test_empty_and_missing_files(tmp_path):
    empty = write(tmp_path, "rte_test.tsv", "")
    assert error_of(empty, "rte") == f"{empty}: no rows: the file is empty"
    missing = tmp_path / "rte_train.tsv"
    assert error_of(missing, "rte") == f"{missing}: file not found"

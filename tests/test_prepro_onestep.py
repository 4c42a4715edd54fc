"""End-to-end test of prepro.py: raw GLUE slices → canonical TSV → tokenized JSON lines."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data_utils.errors import MTDNNInputError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # the shared folder sits beside the checkout
REAL_GLUE = SHARED / "data" / "glue"
MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
FIXTURES = Path(__file__).resolve().parent / "data" / "glue_raw"
MAX_LEN = 64


@pytest.fixture(scope="module")
def prepro():
    sys.path.insert(0, str(REPO))  # prepro.py imports prepro_std from the repository root
    try:
        spec = importlib.util.spec_from_file_location("prepro_onestep", REPO / "prepro.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(REPO))


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(MODEL))


def _head(src: Path, dst: Path, lines: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8") as handle:
        dst.write_text("".join(handle.readline() for _ in range(lines)), encoding="utf-8")


@pytest.fixture()
def small_root(tmp_path):
    """RTE and STS-B cut to 50 rows, CoLA dev only, and the MNLI/QQP fixtures."""
    root = tmp_path / "data"
    for folder, name in [("RTE", "train"), ("RTE", "dev"), ("RTE", "test"), ("STS-B", "train"), ("STS-B", "dev")]:
        _head(REAL_GLUE / folder / f"{name}.tsv", root / folder / f"{name}.tsv", 51)
    _head(REAL_GLUE / "CoLA" / "dev.tsv", root / "CoLA" / "dev.tsv", 50)
    for folder in ("MNLI", "QQP"):
        shutil.copytree(FIXTURES / folder, root / folder)
    # A canonical file from another run: prepro.py must tokenize only what glue_prepro wrote.
    (root / "canonical_data").mkdir()
    (root / "canonical_data" / "snli_dev.tsv").write_text("0\tentailment\tA man.\tA person.\n", encoding="utf-8")
    return root


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_one_step_writes_canonical_and_features(prepro, tokenizer, small_root):
    prepro.main(["--root_dir", str(small_root), "--model", str(MODEL), "--max_seq_len", str(MAX_LEN)])
    canonical = small_root / "canonical_data"
    features = canonical / MODEL.name
    expected_rows = {
        "rte_train": 50, "rte_dev": 50, "rte_test": 50, "stsb_train": 50, "stsb_dev": 50, "cola_dev": 50,
        "mnli_train": 5, "mnli_matched_dev": 4, "mnli_mismatched_dev": 4, "mnli_matched_test": 3,
        "mnli_mismatched_test": 3, "qqp_train": 3, "qqp_dev": 3, "qqp_test": 2,
    }
    assert sorted(p.name for p in features.iterdir()) == sorted(f"{name}.json" for name in expected_rows)
    for name, rows in expected_rows.items():
        assert len((canonical / f"{name}.tsv").read_text(encoding="utf-8").splitlines()) == rows
        records = _json_lines(features / f"{name}.json")
        assert len(records) == rows, name
        assert all(list(r) == ["uid", "label", "token_id", "type_id", "attention_mask"] for r in records)
        assert all(len(r["token_id"]) <= MAX_LEN for r in records)

    rte = _json_lines(features / "rte_train.json")
    assert max(len(r["token_id"]) for r in rte) == MAX_LEN  # long RTE premises are truncated
    first = (canonical / "rte_train.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert first[:2] == ["0", "not_entailment"]
    encoded = tokenizer(first[2], first[3], truncation="longest_first", max_length=MAX_LEN)
    assert rte[0] == {
        "uid": "0",
        "label": 0,
        "token_id": encoded["input_ids"],
        "type_id": encoded["token_type_ids"],
        "attention_mask": encoded["attention_mask"],
    }
    assert [r["label"] for r in _json_lines(features / "stsb_train.json")[:2]] == [5.0, 3.8]
    assert [r["uid"] for r in _json_lines(features / "mnli_matched_dev.json")] == ["0", "1", "3", "4"]
    assert [r["label"] for r in _json_lines(features / "mnli_matched_dev.json")] == [1, 0, 0, 0]


def test_one_step_old_glue_ranking(prepro, small_root):
    root = small_root.parent / "old"
    shutil.copytree(FIXTURES / "old_qnli", root)
    prepro.main(["--root_dir", str(root), "--old_glue", "--tasks", "qnnli", "--model", str(MODEL)])
    records = _json_lines(root / "canonical_data" / MODEL.name / "qnnli_train.json")
    assert [(r["uid"], r["ruid"], r["olabel"], r["label"]) for r in records] == [
        ("0", ["0", "1"], [0, 1], 1), ("1", ["2", "3"], [1, 0], 0), ("2", ["9", "8"], [0, 1], 1),
    ]
    assert sorted(p.name for p in (root / "canonical_data" / MODEL.name).iterdir()) == [
        "qnnli_dev.json", "qnnli_test.json", "qnnli_train.json",
    ]


def test_one_step_nothing_to_do_is_an_error(prepro, tmp_path):
    with pytest.raises(MTDNNInputError) as err:
        prepro.main(["--root_dir", str(tmp_path), "--model", str(MODEL)])
    assert str(err.value) == f"{tmp_path}: no GLUE task files found; nothing to tokenize"
    assert not (tmp_path / "canonical_data").exists()


def test_one_step_bad_input_exits_2(small_root):
    (small_root / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(REPO / "prepro.py"), "--root_dir", str(small_root), "--model", str(MODEL), "--tasks", "rte"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {small_root / 'RTE' / 'dev.tsv'}: file has no data rows"
    assert not (small_root / "canonical_data" / MODEL.name).exists()

"""CoNLL-2003 → canonical ner/pos/chunk TSV."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_utils.errors import MTDNNInputError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "ner" / "prepro.py"
FIXTURES = Path(__file__).resolve().parent / "data" / "conll"

_spec = importlib.util.spec_from_file_location("ner_prepro", SCRIPT)
ner_prepro = importlib.util.module_from_spec(_spec)
sys.modules["ner_prepro"] = ner_prepro  # dataclasses look their module up here
_spec.loader.exec_module(ner_prepro)


def _convert(data_dir: Path, out_dir: Path) -> None:
    ner_prepro.main(["--data_dir", str(data_dir), "--output_dir", str(out_dir)])


def _rows(path: Path) -> list[tuple[str, list[str], list[str]]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        uid, labels, words = line.split("\t")
        rows.append((uid, json.loads(labels), json.loads(words)))
    return rows


def _copy_fixtures(tmp_path: Path) -> Path:
    data_dir = tmp_path / "ner"
    shutil.copytree(FIXTURES, data_dir)
    return data_dir


def test_outputs_counts_and_exact_json(tmp_path):
    out = tmp_path / "canonical"
    _convert(FIXTURES, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{task}_{split}.tsv" for task in ("ner", "pos", "chunk") for split in ("train", "dev", "test")
    )
    counts = {split: len(_rows(out / f"ner_{split}.tsv")) for split in ("train", "dev", "test")}
    assert counts == {"train": 5, "dev": 2, "test": 3}

    first = (out / "ner_train.tsv").read_text(encoding="utf-8").splitlines()[0]
    assert first == (
        '0\t["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]\t'
        '["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]'
    )
    quoted = (out / "pos_train.tsv").read_text(encoding="utf-8").splitlines()[3]
    assert quoted.startswith('3\t["\\"", "PRP", "VBP", "RB"') and '["\\"", "We", "do", "n\'t"' in quoted

    chunk_dev = _rows(out / "chunk_dev.tsv")
    assert chunk_dev[0] == (
        "0",
        ["B-NP", "O", "B-NP", "I-NP", "B-PP", "B-NP", "I-NP", "I-NP", "I-NP", "I-NP", "O"],
        ["CRICKET", "-", "LEICESTERSHIRE", "TAKE", "OVER", "AT", "TOP", "AFTER", "INNINGS", "VICTORY", "."],
    )
    for split in ("train", "dev", "test"):
        ner, pos, chunk = (_rows(out / f"{task}_{split}.tsv") for task in ("ner", "pos", "chunk"))
        assert [r[0] for r in ner] == [str(i) for i in range(len(ner))]
        assert [r[2] for r in ner] == [r[2] for r in pos] == [r[2] for r in chunk]
        assert all(len(r[1]) == len(r[2]) for rows in (ner, pos, chunk) for r in rows)


def test_last_sentence_kept_without_blank_line(tmp_path):
    out = tmp_path / "canonical"
    _convert(FIXTURES, out)
    # train.txt ends with a newline but no blank line; test.txt has no final newline at all.
    assert _rows(out / "ner_train.tsv")[-1] == (
        "4",
        ["O"] * 12,
        ["Sheep", "prices", "(", "in", "pence", "per", "kg", ")", "fell", "to", "$", "1.20"],
    )
    assert _rows(out / "pos_train.tsv")[-1][1] == ["NNS", "NNS", "(", "IN", "NN", "IN", "NN", ")", "VBD", "TO", "$", "CD"]
    assert _rows(out / "ner_test.tsv")[-1] == (
        "2",
        ["B-LOC", "O", "B-LOC", "I-LOC", "I-LOC", "O"],
        ["AL-AIN", ",", "United", "Arab", "Emirates", "1996-12-06"],
    )


def test_crlf_and_docstart_without_blank_line(tmp_path):
    data_dir = _copy_fixtures(tmp_path)
    (data_dir / "valid.txt").write_bytes(
        b"-DOCSTART- -X- -X- O\r\nLONDON NNP B-NP B-LOC\r\n-DOCSTART- -X- -X- O\r\nPeter NNP B-NP B-PER\r\n"
    )
    out = tmp_path / "canonical"
    _convert(data_dir, out)
    assert _rows(out / "ner_dev.tsv") == [("0", ["B-LOC"], ["LONDON"]), ("1", ["B-PER"], ["Peter"])]


def test_unknown_tag_names_file_line_and_tag(tmp_path):
    data_dir = _copy_fixtures(tmp_path)
    path = data_dir / "valid.txt"
    path.write_text(path.read_text().replace("LONDON NNP B-NP B-LOC", "LONDON NNP B-NP B-CITY"))
    out = tmp_path / "canonical"
    with pytest.raises(MTDNNInputError) as err:
        _convert(data_dir, out)
    assert str(err.value).startswith(f"{path}:15: ner tag 'B-CITY' of word 'LONDON'")
    assert not out.exists()

    path.write_text(path.read_text().replace("LONDON NNP B-NP B-CITY", "LONDON XYZ B-NP B-LOC"))
    with pytest.raises(MTDNNInputError, match=rf"^{path}:15: pos tag 'XYZ'"):
        _convert(data_dir, out)


def test_short_line_and_missing_file(tmp_path):
    data_dir = _copy_fixtures(tmp_path)
    path = data_dir / "test.txt"
    path.write_text(path.read_text().replace("JAPAN NNP B-NP B-LOC", "JAPAN NNP B-LOC"))
    with pytest.raises(MTDNNInputError, match=rf"^{path}:5: expected at least 4 space-separated columns"):
        _convert(data_dir, tmp_path / "canonical")
    path.unlink()
    with pytest.raises(MTDNNInputError, match=rf"^{path}: file not found"):
        _convert(data_dir, tmp_path / "canonical")


def test_cli_runs_and_reports_errors(tmp_path):
    out = tmp_path / "canonical"
    ok = subprocess.run(
        [sys.executable, str(SCRIPT), "--data_dir", str(FIXTURES), "--output_dir", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(_rows(out / "chunk_test.tsv")) == 3
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--data_dir", str(tmp_path / "nowhere"), "--output_dir", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {tmp_path / 'nowhere' / 'train.txt'}: file not found"

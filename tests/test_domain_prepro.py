"""SciTail / SNLI → canonical TSV and the domain-adaptation training subsets."""
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
SCRIPT = REPO / "experiments" / "domain_adaptation" / "domain_prepro.py"
FIXTURES = Path(__file__).resolve().parent / "data" / "domain"

_spec = importlib.util.spec_from_file_location("domain_prepro", SCRIPT)
domain_prepro = importlib.util.module_from_spec(_spec)
sys.modules["domain_prepro"] = domain_prepro  # dataclasses look their module up here
_spec.loader.exec_module(domain_prepro)


def _root(tmp_path: Path, *layouts: str) -> Path:
    """A data root in tmp holding copies of the named fixture folders."""
    root = tmp_path / "data"
    root.mkdir(parents=True)
    for layout in layouts:
        shutil.copytree(FIXTURES / layout, root / layout)
    return root


def _append_line(path: Path, line: str) -> None:
    """Append one line (some real sample files lack a final newline)."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text + ("" if text.endswith("\n") else "\n") + line + "\n", encoding="utf-8")


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_scitail_and_glue_snli(tmp_path, capsys):
    root = _root(tmp_path, "SciTail", "SNLI")
    domain_prepro.main(["--root_dir", str(root)])
    out = root / "canonical_data"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{task}_{name}.tsv" for task in ("scitail", "snli") for name in ("train", "dev", "test", "001_train", "01_train", "1_train")
    )

    scitail_train = _rows(out / "scitail_train.tsv")
    assert len(scitail_train) == 30  # 31 source rows, one with premise '-'
    assert scitail_train[0] == [
        "0",
        "neutral",
        "Pluto rotates once on its axis every 6.39 Earth days.",
        "Earth rotates on its axis once times in one day.",
    ]
    # uid is a running count of the kept rows: the row after the dropped one gets uid 6.
    assert scitail_train[6][:3] == ["6", "entails", "A magnet will pick up iron nails and steel paper clips but not aluminum foil."]
    assert [r[0] for r in scitail_train] == [str(i) for i in range(30)]
    assert [len(_rows(out / f"scitail_{s}.tsv")) for s in ("dev", "test")] == [5, 5]

    snli_dev = _rows(out / "snli_dev.tsv")
    assert len(snli_dev) == 10
    assert snli_dev[0] == [
        "0",
        "neutral",
        "Two women are embracing while holding to go packages.",
        "The sisters are hugging goodbye while holding to go packages after just eating lunch.",
    ]
    # GLUE uids come from column 0: index 5 is the '-' row and is gone.
    assert [r[0] for r in snli_dev] == ["0", "1", "2", "3", "4", "6", "7", "8", "9", "10"]
    assert [len(_rows(out / f"snli_{s}.tsv")) for s in ("train", "test")] == [10, 10]
    assert all(len(row) == 4 for name in ("snli_train", "snli_test") for row in _rows(out / f"{name}.tsv"))

    summary = capsys.readouterr().err
    assert "scitail_train: 30 rows" in summary and "1 unlabelled ('-') rows dropped" in summary
    assert "snli_test: 10 rows" in summary and "0 unlabelled ('-') rows dropped" in summary


def test_subsets_sizes_order_and_determinism(tmp_path):
    first = _root(tmp_path / "a", "SciTail", "SNLI")
    second = _root(tmp_path / "b", "SciTail", "SNLI")
    other_seed = _root(tmp_path / "c", "SciTail", "SNLI")
    domain_prepro.main(["--root_dir", str(first), "--seed", "13"])
    domain_prepro.main(["--root_dir", str(second), "--seed", "13"])
    domain_prepro.main(["--root_dir", str(other_seed), "--seed", "7"])
    for task, n in (("scitail", 30), ("snli", 10)):
        train = _rows(first / "canonical_data" / f"{task}_train.tsv")
        for suffix, expected in (("001", 1), ("01", 1), ("1", max(1, round(0.1 * n)))):
            name = f"canonical_data/{task}_{suffix}_train.tsv"
            subset = _rows(first / name)
            assert len(subset) == expected
            positions = [train.index(row) for row in subset]
            assert positions == sorted(positions) and len(set(positions)) == len(positions)
            assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "canonical_data/scitail_1_train.tsv").read_bytes() != (
        other_seed / "canonical_data/scitail_1_train.tsv"
    ).read_bytes()


def test_sample_subset_unit():
    rows = list(range(1500))
    assert domain_prepro.subset_size(1500, 0.001) == 2
    assert domain_prepro.subset_size(1500, 0.01) == 15
    assert domain_prepro.subset_size(1500, 0.1) == 150
    assert domain_prepro.subset_size(7, 0.001) == 1
    picked = domain_prepro.sample_subset(rows, 0.1, seed=13)
    assert len(picked) == 150 and picked == sorted(set(picked))
    assert picked == domain_prepro.sample_subset(rows, 0.1, seed=13)
    assert picked != domain_prepro.sample_subset(rows, 0.1, seed=14)


def test_original_snli_layout_txt_before_jsonl(tmp_path):
    root = _root(tmp_path, "snli_1.0")
    # Only jsonl exists for train, only txt for test, both for dev (txt wins).
    domain_prepro.main(["--root_dir", str(root), "--tasks", "snli"])
    out = root / "canonical_data"
    assert not (out / "scitail_train.tsv").exists()

    train = _rows(out / "snli_train.tsv")
    records = [json.loads(line) for line in (root / "snli_1.0/snli_1.0_train.jsonl").read_text().splitlines()]
    assert train == [[r["pairID"], r["gold_label"], r["sentence1"], r["sentence2"]] for r in records]

    dev = _rows(out / "snli_dev.tsv")
    assert [r[0] for r in dev] == [str(i) for i in range(10)]  # txt: running count, not pairID
    dev_records = [json.loads(line) for line in (root / "snli_1.0/snli_1.0_dev.jsonl").read_text().splitlines()]
    assert [r[1:] for r in dev] == [[r["gold_label"], r["sentence1"], r["sentence2"]] for r in dev_records]

    test = _rows(out / "snli_test.tsv")
    assert test[0] == ["0", "neutral", "This church choir sings to the masses as they sing joyous songs from the book at a church.", "The church has cracks in the ceiling."]
    assert len(test) == 10


def test_original_layout_drops_unlabelled(tmp_path, capsys):
    root = _root(tmp_path, "snli_1.0")
    txt = root / "snli_1.0/snli_1.0_test.txt"
    header, first, *rest = txt.read_text().splitlines()
    unlabelled = "\t".join(["-"] + first.split("\t")[1:])
    txt.write_text("\n".join([header, first, unlabelled, *rest]) + "\n")
    jsonl = root / "snli_1.0/snli_1.0_train.jsonl"
    record = json.loads(jsonl.read_text().splitlines()[0])
    record["gold_label"] = "-"
    _append_line(jsonl, json.dumps(record))
    domain_prepro.main(["--root_dir", str(root)])
    log = capsys.readouterr().err
    test = _rows(root / "canonical_data/snli_test.tsv")
    assert len(test) == 10 and [r[0] for r in test] == [str(i) for i in range(10)]
    assert len(_rows(root / "canonical_data/snli_train.tsv")) == 10
    assert "snli_test: 10 rows" in log and "snli_train: 10 rows" in log
    assert log.count("1 unlabelled ('-') rows dropped") == 2
    assert "task scitail: no source files found" in log


def test_glue_layout_preferred_over_original(tmp_path):
    root = _root(tmp_path, "SNLI", "snli_1.0")
    domain_prepro.main(["--root_dir", str(root), "--tasks", "snli"])
    # GLUE train has 10 labelled rows with uids from column 0; the jsonl has 10 with pairIDs.
    assert [r[0] for r in _rows(root / "canonical_data/snli_train.tsv")] == ["0", "1", "2", "4", "5", "6", "7", "8", "9", "10"]


def test_unknown_label_names_file_and_line(tmp_path):
    root = _root(tmp_path, "SciTail")
    path = root / "SciTail/tsv_format/scitail_1.0_dev.tsv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit("\t", 1)[0] + "\tentailment"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MTDNNInputError) as err:
        domain_prepro.main(["--root_dir", str(root), "--tasks", "scitail"])
    assert str(err.value).startswith(f"{path}:2: label 'entailment'")
    assert not (root / "canonical_data").exists()


def test_short_rows_and_bad_json_are_errors(tmp_path):
    root = _root(tmp_path, "SciTail", "snli_1.0")
    path = root / "SciTail/tsv_format/scitail_1.0_test.tsv"
    _append_line(path, "only a premise\tand a hypothesis")
    with pytest.raises(MTDNNInputError, match=rf"^{path}:6: expected 3 tab-separated columns"):
        domain_prepro.main(["--root_dir", str(root), "--tasks", "scitail"])
    jsonl = root / "snli_1.0/snli_1.0_train.jsonl"
    _append_line(jsonl, '{"gold_label": "neutral", "sentence1": "x", "pairID": "1r1n"}')
    with pytest.raises(MTDNNInputError, match=rf"^{jsonl}:11: field 'sentence2' missing"):
        domain_prepro.main(["--root_dir", str(root), "--tasks", "snli"])


def test_missing_sources(tmp_path, capsys):
    root = _root(tmp_path, "SciTail")
    domain_prepro.main(["--root_dir", str(root)])
    log = capsys.readouterr().err
    assert log.count("task snli: no source files found") == 1
    assert "snli: skipped (no source files)" in log
    assert (root / "canonical_data/scitail_test.tsv").exists()
    assert not (root / "canonical_data/snli_train.tsv").exists()

    with pytest.raises(MTDNNInputError, match="task snli: no source file for split"):
        domain_prepro.main(["--root_dir", str(root), "--tasks", "snli"])
    (root / "SciTail/tsv_format/scitail_1.0_test.tsv").unlink()
    with pytest.raises(MTDNNInputError, match=r"task scitail: no source file for split\(s\) test"):
        domain_prepro.main(["--root_dir", str(root)])
    with pytest.raises(MTDNNInputError, match="no source files of scitail, snli found under"):
        domain_prepro.main(["--root_dir", str(tmp_path / "empty")])
    with pytest.raises(MTDNNInputError, match="unknown task"):
        domain_prepro.main(["--root_dir", str(root), "--tasks", "mnli"])


def test_cli_error_exit_code(tmp_path):
    root = _root(tmp_path, "SciTail")
    (root / "SciTail/tsv_format/scitail_1.0_train.tsv").write_text("a\tb\tmaybe\n")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--root_dir", str(root)], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "scitail_1.0_train.tsv:1: label 'maybe'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "canonical_data").exists()

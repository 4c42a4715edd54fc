"""Faults in raw input files and text inputs: each one a single ``file:line: what`` error, exit
code 2 from the command line, and no output file written or damaged.

1. a row with more columns than its layout (a tab inside a text shifts the columns);
2. a file that is not UTF-8 (the line and column of the first bad byte);
3. an empty or blank premise / hypothesis (an error in the raw converters; a warning in the
   canonical reader, which keeps the row).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

import extractor
import prepro_std
from data_utils.canonical import read_canonical
from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import iter_lines, read_text
from data_utils.task_def import load_task_defs

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
GLUE_SCRIPT = REPO / "experiments" / "glue" / "glue_prepro.py"
GLUE_YAML = REPO / "experiments" / "glue" / "glue_task_def.yml"
ROBERTA_TINY = DATA / "tokenizers" / "roberta_tiny"
RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
RTE_GOOD = "0\tA man sleeps.\tA man rests.\tentailment\n"
# MNLI dev: 16 columns, sentence1 and sentence2 at 8 and 9 (0-based), gold label last.
MNLI_DEV = "\t".join(f"h{i}" for i in range(16)) + "\n" + "\t".join(
    ["0", "1", "1n", "fiction", "(", "(", "(", "(", "A man sleeps.", "", *["neutral"] * 6]) + "\n"
PREVIOUS = "previous run\n"


def _load(name: str, relative: str) -> ModuleType:
    """Import a converter under ``experiments/`` by path (not an installed package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


glue_prepro = _load("faults_glue_prepro", "experiments/glue/glue_prepro.py")
domain_prepro = _load("faults_domain_prepro", "experiments/domain_adaptation/domain_prepro.py")
ner_prepro = _load("faults_ner_prepro", "experiments/ner/prepro.py")
squad_prepro = _load("faults_squad_prepro", "experiments/squad/squad_prepro.py")


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _cli(main: Callable[[], object], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run ``main`` as its script's ``run_cli`` does; returns (exit code, last stderr line)."""
    try:
        run_cli(main)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()[-1] if err.strip() else ""


def _glue_cli(root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(GLUE_SCRIPT), "--root_dir", str(root), *extra],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False,
    )


def _previous_output(path: Path) -> Path:
    """An output of an earlier run, which a failed run must leave as it was."""
    return _write(path, PREVIOUS)


def _assert_untouched(previous: Path) -> None:
    assert previous.read_text(encoding="utf-8") == PREVIOUS
    # atomic_write's temp files start with a dot: none may be left beside the output.
    assert [p.name for p in previous.parent.iterdir()] == [previous.name]


# ------------------------------------------------------------------ 1. more columns than the layout


def test_tab_inside_a_premise_is_an_error_from_the_command_line(tmp_path):
    source = _write(tmp_path / "RTE" / "train.tsv",
                    RTE_HEADER + RTE_GOOD + '1\t"He said\tno," she wrote.\tShe wrote.\tnot_entailment\n')
    previous = _previous_output(tmp_path / "canonical_data" / "rte_train.tsv")
    result = _glue_cli(tmp_path, "--tasks", "rte")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {source}:3: row has 5 columns, expected 4 (a tab inside a text? the columns cannot be told apart)"
    )
    assert "Traceback" not in result.stderr
    _assert_untouched(previous)


def _glue_layouts() -> list[tuple[str, str, str, int, bool]]:
    """(task, folder, source file, width, header) of every raw GLUE file this script reads."""
    cases = [(name, task.folder, split.source, split.layout.width, split.layout.header)
             for name, task in glue_prepro.GLUE_TASKS.items() for split in task.splits]
    cases += [("qnnli", "QNLI", split.source, glue_prepro._QNNLI_WIDTH[split.labelled], True)
              for split in glue_prepro.OLD_GLUE_TASKS["qnnli"].splits]
    return cases


@pytest.mark.parametrize(("task", "folder", "name", "width", "header"), _glue_layouts())
def test_every_glue_layout_refuses_a_wider_row(tmp_path, task, folder, name, width, header):
    wide = "\t".join(f"cell {i}" for i in range(width + 1)) + "\n"
    text = ("\t".join(f"head {i}" for i in range(width)) + "\n" if header else "") + wide + wide
    source = _write(tmp_path / folder / name, text)
    argv = ["--root_dir", str(tmp_path), "--tasks", task] + (["--old_glue"] if task == "qnnli" else [])
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(argv)
    line = 2 if header else 1
    assert str(err.value).startswith(f"{source}:{line}: row has {width + 1} columns, expected {width} ")
    assert not (tmp_path / "canonical_data").exists() or not any((tmp_path / "canonical_data").iterdir())


def test_real_glue_files_have_no_wider_rows():
    """The widths above are those of every row of the real GLUE files (so no warning path is needed)."""
    real = REPO.parent / "shared" / "data" / "glue"
    if not real.is_dir():
        pytest.skip(f"the real GLUE files are not at {real}")
    checked = 0
    for _, folder, name, width, header in _glue_layouts():
        path = real / folder / name
        if not path.is_file():
            continue
        widths = {len(line.split("\t")) for number, line in iter_lines(path) if number > int(header)}
        assert max(widths) <= width, path
        checked += 1
    assert checked >= 20


def test_domain_and_ner_converters_refuse_shifted_rows(tmp_path, capsys):
    scitail = tmp_path / "scitail"
    shutil.copytree(DATA / "domain" / "SciTail", scitail / "SciTail")
    dev = scitail / "SciTail" / "tsv_format" / "scitail_1.0_dev.tsv"
    dev.write_text(dev.read_text(encoding="utf-8").replace("Kinetic energy", "Kinetic\tenergy", 1), encoding="utf-8")
    previous = _previous_output(scitail / "canonical_data" / "scitail_train.tsv")
    code, err = _cli(lambda: domain_prepro.main(["--root_dir", str(scitail), "--tasks", "scitail"]), capsys)
    assert code == 2
    assert err == f"error: {dev}:1: expected 3 tab-separated columns (premise, hypothesis, label), got 4 (a tab inside a sentence?)"
    _assert_untouched(previous)

    # SNLI rows vary in width (1 or 5 annotator labels): a shifted row shows in the label columns.
    snli = tmp_path / "snli"
    shutil.copytree(DATA / "domain" / "SNLI", snli / "SNLI")
    train = snli / "SNLI" / "train.tsv"
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = lines[1].split("\t")
    cells[7] = cells[7].replace(" on ", "\ton ", 1)
    lines[1] = "\t".join(cells)
    train.write_text("".join(lines), encoding="utf-8")
    code, err = _cli(lambda: domain_prepro.main(["--root_dir", str(snli), "--tasks", "snli"]), capsys)
    assert code == 2
    assert err.startswith(f"error: {train}:2: column 10 should be an annotator label, got 'A person is training")

    conll = tmp_path / "conll"
    shutil.copytree(DATA / "conll", conll)
    test = conll / "test.txt"
    test.write_text(test.read_text(encoding="utf-8").replace("SOCCER NN", "SOCCER  NN", 1), encoding="utf-8")
    out = tmp_path / "ner_out"
    previous = _previous_output(out / "ner_train.tsv")
    code, err = _cli(lambda: ner_prepro.main(["--data_dir", str(conll), "--output_dir", str(out)]), capsys)
    assert code == 2
    assert err == (
        f"error: {test}:3: expected 4 space-separated columns (word POS chunk NER), got 5 (a space inside a word, or a doubled space?)"
    )
    _assert_untouched(previous)


# ------------------------------------------------------------------ 2. not UTF-8


def test_iter_lines_names_the_line_and_column_of_a_bad_byte(tmp_path):
    # Far past the first read buffer, so the line number cannot come from a chunk count.
    good = "".join(f"{i}\tcafé ok\n" for i in range(20000))
    path = _write(tmp_path / "big.tsv", "\ufeff".encode() + good.encode() + b"20000\tcaf\xe9\n" + b"last\n")
    lines = iter_lines(path)
    for _ in range(20000):
        next(lines)
    with pytest.raises(MTDNNInputError) as err:
        next(lines)
    assert str(err.value) == f"{path}:20001: not valid UTF-8 (byte 0xe9 at column 10)"
    with pytest.raises(MTDNNInputError, match=r":20001: not valid UTF-8 \(byte 0xe9 at column 10\)$"):
        read_text(path)


def test_iter_lines_keeps_its_line_splitting_and_byte_order_mark_handling(tmp_path):
    path = _write(tmp_path / "mixed.txt", "\ufeff  first \r\nsecond\rthird\n\n".encode())
    assert list(iter_lines(path)) == [(1, "first"), (2, "second"), (3, "third"), (4, "")]
    assert list(iter_lines(path, strip=False)) == [(1, "  first "), (2, "second"), (3, "third"), (4, "")]
    bad_first = _write(tmp_path / "bom_bad.txt", "\ufeff".encode() + b"ab\xff\n")
    with pytest.raises(MTDNNInputError, match=r"bom_bad.txt:1: not valid UTF-8 \(byte 0xff at column 3\)$"):
        list(iter_lines(bad_first))


def test_glue_prepro_latin1_file(tmp_path):
    source = _write(tmp_path / "RTE" / "dev.tsv", (RTE_HEADER + RTE_GOOD).encode()
                    + b"1\tThe caf\xe9 is open.\tIt is open.\tentailment\n")
    previous = _previous_output(tmp_path / "canonical_data" / "rte_dev.tsv")
    result = _glue_cli(tmp_path, "--tasks", "rte")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {source}:3: not valid UTF-8 (byte 0xe9 at column 10)"
    _assert_untouched(previous)


def test_prepro_std_latin1_canonical_file(tmp_path, capsys):
    root = tmp_path / "canonical_data"
    source = _write(root / "rte_dev.tsv", b"0\tentailment\tA man sleeps.\tA man rests.\n"
                                          b"1\tentailment\tThe caf\xe9 is open.\tIt is open.\n")
    previous = _previous_output(root / "roberta_tiny" / "rte_dev.json")
    argv = ["--model", str(ROBERTA_TINY), "--root_dir", str(root), "--task_def", str(GLUE_YAML)]
    code, err = _cli(lambda: prepro_std.main(argv), capsys)
    assert (code, err) == (2, f"error: {source}:2: not valid UTF-8 (byte 0xe9 at column 21)")
    _assert_untouched(previous)


def test_extractor_latin1_input(tmp_path, capsys):
    finput = _write(tmp_path / "in.txt", b"The cat sat.\nna\xefve|||text\n")
    previous = _previous_output(tmp_path / "out" / "vectors.json")
    argv = ["--finput", str(finput), "--foutput", str(previous), "--bert_model", str(ROBERTA_TINY),
            "--transformer_cache", str(tmp_path / ".cache")]
    code, err = _cli(lambda: extractor.main(argv), capsys)
    assert (code, err) == (2, f"error: {finput}:2: not valid UTF-8 (byte 0xef at column 3)")
    _assert_untouched(previous)


def test_whole_file_readers_name_the_line(tmp_path, capsys):
    yml = _write(tmp_path / "tasks.yml", GLUE_YAML.read_bytes().replace(b"rte:", b"rt\xe9:", 1))
    with pytest.raises(MTDNNInputError) as err:
        load_task_defs(yml)
    line = GLUE_YAML.read_text(encoding="utf-8").split("rte:")[0].count("\n") + 1
    assert str(err.value) == f"{yml}:{line}: not valid UTF-8 (byte 0xe9 at column 3)"

    squad = _write(tmp_path / "data" / "squad" / "train.json", b'{"data": [\n  {"title": "Caf\xe9"}]}\n')
    _write(tmp_path / "data" / "squad" / "dev.json", '{"data": []}\n')
    argv = ["--model", str(ROBERTA_TINY), "--root_dir", str(tmp_path / "data")]
    code, err = _cli(lambda: squad_prepro.main(argv), capsys)
    assert (code, err) == (2, f"error: {squad}:2: not valid UTF-8 (byte 0xe9 at column 17)")


# ------------------------------------------------------------------ 3. empty premise or hypothesis


@pytest.mark.parametrize(
    ("relative", "text", "line", "what"),
    [
        ("RTE/train.tsv", RTE_HEADER + RTE_GOOD + "1\t\tA man rests.\tentailment\n", 3, "premise (column 2)"),
        ("RTE/dev.tsv", RTE_HEADER + "0\tA man sleeps.\t \tentailment\n", 2, "hypothesis (column 3)"),
        ("MRPC/train.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\t  \tB.\n", 2, "premise (column 4)"),
        ("MNLI/dev_matched.tsv", MNLI_DEV, 2, "hypothesis (column 10)"),
    ],
)
def test_empty_text_in_a_raw_glue_file(tmp_path, capsys, relative, text, line, what):
    source = _write(tmp_path / relative, text)
    task = relative.split("/")[0].lower()
    previous = _previous_output(tmp_path / "canonical_data" / f"{task}_earlier.tsv")
    code, err = _cli(lambda: glue_prepro.main(["--root_dir", str(tmp_path), "--tasks", task]), capsys)
    assert (code, err) == (2, f"error: {source}:{line}: {what} is empty")
    _assert_untouched(previous)


def test_empty_question_in_old_qnli_pairs(tmp_path):
    source = _write(tmp_path / "QNLI" / "dev.tsv",
                    "index\tquestion\tsentence\tlabel\n0\tWho?\tHe did.\tentailment\n1\tWho?\t\tnot_entailment\n")
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(["--root_dir", str(tmp_path), "--old_glue", "--tasks", "qnnli"])
    assert str(err.value) == f"{source}:3: sentence (column 3) is empty"


def test_empty_text_from_the_command_line(tmp_path):
    source = _write(tmp_path / "RTE" / "dev.tsv", RTE_HEADER + RTE_GOOD + "1\tIt rains.\t\tentailment\n")
    previous = _previous_output(tmp_path / "canonical_data" / "rte_dev.tsv")
    result = _glue_cli(tmp_path, "--tasks", "rte")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {source}:3: hypothesis (column 3) is empty"
    _assert_untouched(previous)


@pytest.mark.parametrize(
    ("task", "text", "where"),
    [
        ("rte", "0\tentailment\tp\th\n1\tentailment\tp\t\n2\tentailment\t \th\n", "2: hypothesis (column 4)"),
        ("rte", "0\tentailment\t[0.1, 0.9]\t\th\n", "1: premise (column 4)"),
        ("sst", "0\t1\ta film\n1\t0\t  \n", "2: premise (column 3)"),
        ("qnnli", "0\ta,b\tentailment,not_entailment\tq\th1\t \n", "1: hypothesis 2 (column 6)"),
    ],
)
def test_canonical_reader_warns_about_empty_texts_and_keeps_the_rows(tmp_path, caplog, task, text, where):
    path = _write(tmp_path / f"{task}_dev.tsv", text)
    defs = load_task_defs(GLUE_YAML)
    with caplog.at_level(logging.WARNING):
        rows = read_canonical(path, defs[task])
    assert len(rows) == text.count("\n")
    blanks = sum(1 for row in rows if any(not t.strip() for t in row.texts))
    assert caplog.messages == [
        f"{path}:{where} is empty; {blanks} row(s) of this file have an empty text, kept as they are"
    ]


def test_real_canonical_fixtures_have_no_empty_texts(caplog):
    defs = load_task_defs(GLUE_YAML)
    with caplog.at_level(logging.WARNING):
        for name in ("rte_dev", "sst_dev", "stsb_dev", "cola_dev", "qnli_dev", "qnnli_dev"):
            read_canonical(DATA / "canonical" / f"{name}.tsv", defs[name.split("_")[0]])
    assert caplog.messages == []

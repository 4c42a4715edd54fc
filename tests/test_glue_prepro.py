"""Tests of experiments/glue/glue_prepro.py: real GLUE counts and rows, fixtures, every bad input."""
from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_utils.errors import MTDNNInputError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "glue" / "glue_prepro.py"
FIXTURES = Path(__file__).resolve().parent / "data" / "glue_raw"
REAL_GLUE = REPO.parent / "shared" / "data" / "glue"  # the shared folder sits beside the checkout


def _load_module():
    spec = importlib.util.spec_from_file_location("glue_prepro", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["glue_prepro"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


glue_prepro = _load_module()


@pytest.fixture(autouse=True)
def _keep_caplog(monkeypatch):
    # setup_logging replaces the root handlers (force=True), which would detach caplog's.
    monkeypatch.setattr(glue_prepro, "setup_logging", lambda *args, **kwargs: None)


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the shared copy is read-only
    return dst


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


# ---------------------------------------------------------------- real GLUE files


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = _copy_tree(REAL_GLUE, tmp_path_factory.mktemp("real") / "glue")
    return root, glue_prepro.main(["--root_dir", str(root)])


def test_real_glue_row_counts(real_run):
    _, summary = real_run
    expected = {
        "cola_train": 8551, "cola_dev": 1043, "cola_test": 1063,
        "sst_train": 67349, "sst_dev": 872, "sst_test": 1821,
        "mrpc_train": 3668, "mrpc_dev": 408, "mrpc_test": 1725,
        "stsb_train": 5749, "stsb_dev": 1500, "stsb_test": 1379,
        "rte_train": 2490, "rte_dev": 277, "rte_test": 3000,
        "wnli_train": 635, "wnli_dev": 71, "wnli_test": 146,
        "qnli_dev": 5463, "qnli_test": 5463,
        "ax_test": 1104,
    }
    assert summary.rows() == expected
    assert all(report.short_rows == 0 and report.dropped == 0 for report in summary.written)
    skipped = " | ".join(summary.skipped)
    assert len(summary.skipped) == 3
    for what in ("mnli:", "qqp:", "qnli_train:"):
        assert what in skipped


def test_real_glue_files_match_counts_and_layout(real_run):
    root, summary = real_run
    out = root / "canonical_data"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.tsv" for name in summary.rows())
    for report in summary.written:
        lines = _lines(report.output)
        assert len(lines) == report.rows
        width = 3 if report.output.stem.startswith(("cola", "sst")) else 4
        assert {len(line.split("\t")) for line in lines} == {width}, report.output


def test_real_glue_row_content(real_run):
    root, _ = real_run
    out = root / "canonical_data"
    mrpc = _lines(out / "mrpc_train.tsv")
    assert mrpc[0] == (
        "0\t1\tAmrozi accused his brother , whom he called \" the witness \" , of deliberately distorting his "
        "evidence .\tReferring to him as only \" the witness \" , Amrozi accused his brother of deliberately "
        "distorting his evidence ."
    )
    for name in ("mrpc_train", "mrpc_dev", "mrpc_test"):
        assert "\ufeff" not in (out / f"{name}.tsv").read_text(encoding="utf-8")
    assert _lines(out / "mrpc_test.tsv")[0].startswith("0\t0\tPCCW 's chief operating officer")
    assert _lines(out / "stsb_train.tsv")[0] == "0\t5.000\tA plane is taking off.\tAn air plane is taking off."
    assert _lines(out / "stsb_dev.tsv")[1] == "1\t4.750\tA young child is riding a horse.\tA child is riding a horse."
    assert _lines(out / "stsb_test.tsv")[0] == "0\t0.0\tA girl is styling her hair.\tA girl is brushing her hair."
    assert _lines(out / "cola_dev.tsv")[-1] == "1042\t1\tJohn talked to Bill about himself."
    assert _lines(out / "cola_train.tsv")[0] == (
        "0\t1\tOur friends won't buy this analysis, let alone the next one we propose."
    )
    assert _lines(out / "cola_test.tsv")[0] == "0\t0\tBill whistled past the house."
    assert _lines(out / "sst_dev.tsv")[0] == "0\t1\tit 's a charming and often affecting journey . "
    assert _lines(out / "sst_test.tsv")[-1].startswith("1820\t0\tdazzling and sugar-sweet")
    assert _lines(out / "rte_dev.tsv")[1].startswith("1\tentailment\tYet, we now are discovering")
    assert _lines(out / "rte_test.tsv")[0] == (
        "0\tnot_entailment\tMangla was summoned after Madhumita's sister Nidhi Shukla, who was the first witness "
        "in the case.\tShukla is related to Mangla."
    )
    assert _lines(out / "wnli_dev.tsv")[0] == (
        "0\t0\tThe drain is clogged with hair. It has to be cleaned.\tThe hair has to be cleaned."
    )
    assert _lines(out / "qnli_dev.tsv")[0] == (
        "0\tentailment\tWhat came into force after the new constitution was herald?\tAs of that day, the new "
        "constitution heralding the Second Republic came into force."
    )
    assert _lines(out / "qnli_test.tsv")[1].startswith("1\tnot_entailment\tIn what century was the Yarrow")
    assert _lines(out / "ax_test.tsv")[0] == "0\tcontradiction\tThe cat sat on the mat.\tThe cat did not sit on the mat."
    assert _lines(out / "ax_test.tsv")[-1].startswith("1103\tcontradiction\tThe new general artificial intelligence")


# ---------------------------------------------------------------- fixtures: MNLI, QQP, old QNLI


@pytest.fixture()
def fixture_root(tmp_path):
    return _copy_tree(FIXTURES, tmp_path / "glue")


def test_mnli_drops_unlabelled_rows_and_keeps_quotes(fixture_root):
    summary = glue_prepro.main(["--root_dir", str(fixture_root), "--tasks", "mnli"])
    assert summary.rows() == {
        "mnli_train": 5, "mnli_matched_dev": 4, "mnli_mismatched_dev": 4,
        "mnli_matched_test": 3, "mnli_mismatched_test": 3,
    }
    out = fixture_root / "canonical_data"
    dev = _lines(out / "mnli_matched_dev.tsv")
    assert [line.split("\t")[0] for line in dev] == ["0", "1", "3", "4"]
    assert [line.split("\t")[1] for line in dev] == ["neutral", "contradiction", "contradiction", "contradiction"]
    assert dev[2].split("\t")[2].startswith("yeah i i think my favorite restaurant is always been the one closest \"you")
    assert {r.output.stem: r.dropped for r in summary.written}["mnli_matched_dev"] == 1
    train = _lines(out / "mnli_train.tsv")
    assert train[3] == "3\tcontradiction\t\"Yes, he said, it is the last train.\tHe said it was not the last train."
    test = _lines(out / "mnli_mismatched_test.tsv")
    assert test[0] == (
        "0\tcontradiction\tHierbas, ans seco, ans dulce, and frigola are just a few names worth keeping a look-out "
        "for.\tHierbas is a name worth looking out for."
    )


def test_qqp_short_rows_are_skipped_with_warnings(fixture_root, caplog):
    with caplog.at_level(logging.WARNING):
        summary = glue_prepro.main(["--root_dir", str(fixture_root), "--tasks", "qqp"])
    source = fixture_root / "QQP" / "train.tsv"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{source}:4: row has 4 column(s), expected at least 6; row skipped",
        f"{source}:5: row has 2 column(s), expected at least 6; row skipped",
    ]
    reports = {r.output.stem: r for r in summary.written}
    assert (reports["qqp_train"].rows, reports["qqp_train"].short_rows) == (3, 2)
    assert summary.rows() == {"qqp_train": 3, "qqp_dev": 3, "qqp_test": 2}
    out = fixture_root / "canonical_data"
    assert _lines(out / "qqp_train.tsv")[2] == (
        "2\t0\tWhat causes stool color to change to yellow?\tWhat can cause stool to come out as little balls?"
    )
    assert _lines(out / "qqp_dev.tsv")[0] == "0\t1\tWhat is the best way to learn \"algebra?\tHow can I learn algebra fast?"
    assert _lines(out / "qqp_test.tsv")[1] == (
        "1\t0\tShould I have a hair transplant at age 24? How much would it cost?\t"
        "How much cost does hair transplant require?"
    )


def test_qqp_short_row_is_an_error_with_strict(fixture_root):
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(["--root_dir", str(fixture_root), "--tasks", "qqp", "--strict"])
    assert str(err.value) == f"{fixture_root / 'QQP' / 'train.tsv'}:4: row has 4 column(s), expected at least 6"
    assert not (fixture_root / "canonical_data" / "qqp_train.tsv").exists()


def test_strict_error_exits_2_with_one_line_from_the_command_line(fixture_root):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--root_dir", str(fixture_root), "--tasks", "qqp", "--strict"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 2
    expected = f"error: {fixture_root / 'QQP' / 'train.tsv'}:4: row has 4 column(s), expected at least 6"
    assert result.stderr.strip().splitlines()[-1] == expected
    assert "Traceback" not in result.stderr
    assert not (fixture_root / "canonical_data" / "qqp_train.tsv").exists()


QNNLI_TRAIN = [
    "0\t0,1\tnot_entailment,entailment\tWhen did the third Digimon series begin?\tUnlike the two seasons before it "
    "and most of the seasons that followed, Digimon Tamers takes a darker approach.\tThe third series, Digimon "
    "Tamers, began airing in 2001.",
    "1\t2,3\tentailment,not_entailment\tWhich missile batteries often have individual launchers several kilometres "
    "from one another?\tWhen MANPADS is operated by specialists, batteries may have several dozen teams deploying "
    "separately in small sections.\tSelf-propelled air defence guns may deploy in pairs.",
    "2\t9,8\tnot_entailment,entailment\tWho was the first Afghan ruler?\tThe empire fell apart in the nineteenth "
    "century.\tAhmad Shah Durrani founded the Durrani Empire in 1747.",
]
QNNLI_DEV = [
    "0\t1,0\tnot_entailment,entailment\tWhat came into force after the new constitution was herald?\tThe "
    "constitution was drafted in secret.\tAs of that day, the new constitution heralding the Second Republic "
    "came into force.",
    "1\t3,2\tentailment,not_entailment\tWhat is the first major city in the stream of the Rhine?\tBasel is the "
    "first major city on the Rhine.\tThe most important tributaries in this area are the Ill below of Strasbourg.",
]
QNNLI_TEST = [
    "0\t0,1\tentailment,entailment\tWhat organization is devoted to Jihad against Israel?\tHamas was founded in "
    "1987.\tThe Muslim Brotherhood took a quiescent stance.",
    "1\t2,3\tentailment,entailment\tIn what century was the Yarrow-Schlick-Tweedy balancing system used?\tIn the "
    "late 19th century, the system was used on marine engines.\tBalancing matters for engines.",
]


def test_old_glue_qnnli_pairs_each_split_from_its_own_source(fixture_root, caplog):
    root = fixture_root / "old_qnli"
    with caplog.at_level(logging.WARNING):
        summary = glue_prepro.main(["--root_dir", str(root), "--old_glue", "--tasks", "qnnli,qnli"])
    out = root / "canonical_data"
    # Expected rows are those of upstream's loader seeded with 13 (one RNG, train then dev).
    assert _lines(out / "qnnli_train.tsv") == QNNLI_TRAIN
    assert _lines(out / "qnnli_dev.tsv") == QNNLI_DEV
    assert _lines(out / "qnnli_test.tsv") == QNNLI_TEST
    reports = {r.output.stem: r for r in summary.written}
    # train: one pair with equal labels, one whose questions differ (2 lines each)
    assert (reports["qnnli_train"].rows, reports["qnnli_train"].dropped) == (3, 4)
    assert f"{root / 'QNLI' / 'train.tsv'}:8: the pair's two questions differ; pair skipped" in caplog.messages
    assert summary.rows()["qnli_train"] == 10


def test_qnnli_needs_old_glue_and_odd_rows_are_an_error(fixture_root):
    root = fixture_root / "old_qnli"
    with pytest.raises(MTDNNInputError, match="'qnnli' .* needs --old_glue"):
        glue_prepro.main(["--root_dir", str(root), "--tasks", "qnnli"])
    dev = root / "QNLI" / "dev.tsv"
    dev.write_text(dev.read_text(encoding="utf-8") + "4\tWho?\tNobody.\tentailment\n", encoding="utf-8")
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(["--root_dir", str(root), "--old_glue", "--tasks", "qnnli"])
    assert str(err.value) == f"{dev}: odd number of data rows (5): QNLI v1 rows come in pairs"
    assert not (root / "canonical_data" / "qnnli_dev.tsv").exists()


# ---------------------------------------------------------------- bad inputs


RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


def test_bad_label_names_file_and_line_and_keeps_old_output(tmp_path):
    source = _write(tmp_path / "RTE" / "train.tsv",
                    RTE_HEADER + "0\tA man sleeps.\tA man rests.\tentailment\n1\tIt rains.\tIt is dry.\tentailed\n")
    target = _write(tmp_path / "canonical_data" / "rte_train.tsv", "previous run\n")
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(["--root_dir", str(tmp_path), "--tasks", "rte"])
    assert str(err.value) == (
        f"{source}:3: label 'entailed' is not one of task rte's labels ['not_entailment', 'entailment']"
    )
    assert target.read_text(encoding="utf-8") == "previous run\n"
    assert [p.name for p in target.parent.iterdir()] == ["rte_train.tsv"]


def test_bad_integer_label(tmp_path):
    source = _write(tmp_path / "CoLA" / "train.tsv", "gj04\t1\t\tGood sentence.\ngj04\t2\t*\tBad label.\n")
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(["--root_dir", str(tmp_path), "--tasks", "cola"])
    assert str(err.value) == f"{source}:2: label '2' of task cola is out of range [0, 2)"
    assert not (tmp_path / "canonical_data" / "cola_train.tsv").exists()


def test_non_numeric_stsb_score(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tA plane takes off.\t"
    source = _write(tmp_path / "STS-B" / "dev.tsv", header + row + "5.000\n" + row.replace("0\t", "1\t", 1) + "n/a\n")
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(["--root_dir", str(tmp_path), "--tasks", "stsb"])
    assert str(err.value) == f"{source}:3: regression score 'n/a' of task stsb is not a number"
    assert not (tmp_path / "canonical_data" / "stsb_dev.tsv").exists()


@pytest.mark.parametrize(
    ("task", "relative", "text", "message"),
    [
        ("rte", "RTE/dev.tsv", "", "file is empty (expected a header line)"),
        ("rte", "RTE/dev.tsv", RTE_HEADER, "file has no data rows"),
        ("cola", "CoLA/train.tsv", "", "file has no data rows"),
        ("rte", "RTE/dev.tsv", RTE_HEADER + "0\tonly premise\n", "file has no data rows (1 row(s) left out)"),
    ],
)
def test_empty_and_header_only_files(tmp_path, task, relative, text, message):
    source = _write(tmp_path / relative, text)
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(["--root_dir", str(tmp_path), "--tasks", task])
    assert str(err.value) == f"{source}: {message}"
    assert not (tmp_path / "canonical_data").exists() or not any((tmp_path / "canonical_data").iterdir())


def test_named_task_with_absent_folder_is_an_error(tmp_path):
    _write(tmp_path / "RTE" / "dev.tsv", RTE_HEADER + "0\tA man sleeps.\tA man rests.\tentailment\n")
    with pytest.raises(MTDNNInputError) as err:
        glue_prepro.main(["--root_dir", str(tmp_path), "--tasks", "rte,wnli"])
    assert str(err.value) == f"{tmp_path / 'WNLI'}: task 'wnli': folder not found"


def test_named_task_with_absent_folder_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--root_dir", str(tmp_path), "--tasks", "mnli"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'MNLI'}: task 'mnli': folder not found"]
    assert not (tmp_path / "canonical_data").exists()


def test_unknown_task_name_is_an_error(tmp_path):
    with pytest.raises(MTDNNInputError, match="--tasks: unknown task 'sst2'"):
        glue_prepro.main(["--root_dir", str(tmp_path), "--tasks", "sst2"])


def test_absent_folders_and_files_are_skipped_with_one_warning_each(tmp_path, caplog):
    _write(tmp_path / "RTE" / "dev.tsv", RTE_HEADER + "0\tA man sleeps.\tA man rests.\tentailment\n")
    with caplog.at_level(logging.WARNING):
        summary = glue_prepro.main(["--root_dir", str(tmp_path)])
    assert summary.rows() == {"rte_dev": 1}
    assert len(caplog.messages) == 9 + 2  # nine absent task folders, RTE train and test
    assert f"{tmp_path / 'RTE' / 'train.tsv'}: file not found; rte_train skipped" in caplog.messages
    assert f"{tmp_path / 'diagnostic'}: folder not found; task ax skipped" in caplog.messages
    assert len(summary.skipped) == 11

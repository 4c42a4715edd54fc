"""Raw GLUE files → canonical TSV (SPEC §3.2).

Run from the repository root (after ``pip install -e .``):

    python experiments/glue/glue_prepro.py --root_dir data
    python experiments/glue/glue_prepro.py --root_dir data --tasks rte,mrpc --strict
    python experiments/glue/glue_prepro.py --root_dir data --old_glue      # adds QNLI v1 ranking (qnnli)

Reads ``<root>/{CoLA,SST-2,MRPC,STS-B,QQP,MNLI,QNLI,RTE,WNLI}/*.tsv`` and
``<root>/diagnostic/diagnostic.tsv`` and writes ``<root>/canonical_data/{task}_{split}.tsv``.
A missing task folder or split file is skipped with a warning (an error for a task named
in ``--tasks``); a malformed file is an error naming file and line; rows with too few
columns are skipped with a warning (``--strict``: an error). A row with more columns than
its file's layout (a tab inside a text shifts every column after it), an empty premise or
hypothesis, and a file that is not UTF-8 are errors. Labels are checked against
``--task_def`` so that training never meets a label it rejects.
"""
from __future__ import annotations

import argparse
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data_utils.canonical_writer import write_canonical
from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import iter_lines
from data_utils.log_utils import setup_logging
from data_utils.task_def import TaskDef, get_task_def, load_task_defs

logger = logging.getLogger("mt_dnn.glue_prepro")

DEFAULT_TASK_DEF = Path(__file__).with_name("glue_task_def.yml")
RUNNING = None  # a uid column of ``None`` means: number the rows 0, 1, 2, …


@dataclass(frozen=True)
class Layout:
    """Where one raw file keeps the canonical fields (column indices, negative = from the end)."""

    width: int  # columns of a row: fewer is a short row (skipped), more is an error
    uid: int | None
    premise: int
    hypothesis: int | None = None
    label: int | None = None  # ``None``: a test file, every row gets ``placeholder``
    placeholder: str = ""
    header: bool = True
    drop_label: str | None = None  # rows with this label are left out (MNLI's "-": no gold label)


@dataclass(frozen=True)
class Split:
    """One raw file of a task and the canonical file it becomes."""

    source: str  # file name inside the task folder
    output: str  # canonical file name without ``.tsv``
    layout: Layout | None = None  # ``None``: the QNLI v1 ranking pairs (``qnnli``)
    labelled: bool = True


@dataclass(frozen=True)
class GlueTask:
    """A task as this script knows it: its folder, its task definition and its splits."""

    folder: str
    task_def: str
    splits: tuple[Split, ...]


def _three(task: str, train: Layout, test: Layout) -> tuple[Split, ...]:
    return (
        Split("train.tsv", f"{task}_train", train),
        Split("dev.tsv", f"{task}_dev", train),
        Split("test.tsv", f"{task}_test", test, labelled=False),
    )


_MNLI_TRAIN = Layout(width=12, uid=0, premise=8, hypothesis=9, label=-1, drop_label="-")
_MNLI_DEV = Layout(width=16, uid=0, premise=8, hypothesis=9, label=-1, drop_label="-")
_MNLI_TEST = Layout(width=10, uid=0, premise=8, hypothesis=9, placeholder="contradiction")

# Column layouts of the files the GLUE download script ships. Every row must have exactly
# ``width`` columns (every row of the real CoLA … WNLI and AX files does), so that neither a short row nor a tab inside a
# text can make a negative or positive index pick the wrong column.
GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("CoLA", "cola", _three(
        "cola",
        Layout(width=4, uid=RUNNING, premise=-1, label=1, header=False),
        Layout(width=2, uid=RUNNING, premise=-1, placeholder="0"),
    )),
    "sst": GlueTask("SST-2", "sst", _three(
        "sst",
        Layout(width=2, uid=RUNNING, premise=0, label=-1),
        Layout(width=2, uid=0, premise=1, placeholder="0"),
    )),
    "mrpc": GlueTask("MRPC", "mrpc", _three(
        "mrpc",
        Layout(width=5, uid=RUNNING, premise=-2, hypothesis=-1, label=0),
        Layout(width=5, uid=RUNNING, premise=-2, hypothesis=-1, placeholder="0"),
    )),
    "stsb": GlueTask("STS-B", "stsb", _three(
        "stsb",
        Layout(width=10, uid=RUNNING, premise=-3, hypothesis=-2, label=-1),
        Layout(width=9, uid=RUNNING, premise=-2, hypothesis=-1, placeholder="0.0"),
    )),
    "qqp": GlueTask("QQP", "qqp", _three(
        "qqp",
        Layout(width=6, uid=RUNNING, premise=-3, hypothesis=-2, label=-1),
        Layout(width=3, uid=0, premise=-2, hypothesis=-1, placeholder="0"),
    )),
    "mnli": GlueTask("MNLI", "mnli", (
        Split("train.tsv", "mnli_train", _MNLI_TRAIN),
        Split("dev_matched.tsv", "mnli_matched_dev", _MNLI_DEV),
        Split("dev_mismatched.tsv", "mnli_mismatched_dev", _MNLI_DEV),
        Split("test_matched.tsv", "mnli_matched_test", _MNLI_TEST, labelled=False),
        Split("test_mismatched.tsv", "mnli_mismatched_test", _MNLI_TEST, labelled=False),
    )),
    "qnli": GlueTask("QNLI", "qnli", _three(
        "qnli",
        Layout(width=4, uid=0, premise=1, hypothesis=2, label=-1),
        Layout(width=3, uid=0, premise=1, hypothesis=2, placeholder="not_entailment"),
    )),
    "rte": GlueTask("RTE", "rte", _three(
        "rte",
        Layout(width=4, uid=0, premise=-3, hypothesis=-2, label=-1),
        Layout(width=3, uid=0, premise=-2, hypothesis=-1, placeholder="not_entailment"),
    )),
    "wnli": GlueTask("WNLI", "wnli", _three(
        "wnli",
        Layout(width=4, uid=RUNNING, premise=-3, hypothesis=-2, label=-1),
        Layout(width=3, uid=RUNNING, premise=-2, hypothesis=-1, placeholder="0"),
    )),
    # The diagnostic (AX) set is scored by the MNLI head, hence MNLI's labels and placeholder.
    "ax": GlueTask("diagnostic", "mnli", (
        Split("diagnostic.tsv", "ax_test", Layout(width=3, uid=0, premise=1, hypothesis=2,
                                                  placeholder="contradiction"), labelled=False),
    )),
}
OLD_GLUE_TASKS: dict[str, GlueTask] = {
    "qnnli": GlueTask("QNLI", "qnnli", (
        Split("train.tsv", "qnnli_train"),
        Split("dev.tsv", "qnnli_dev"),
        Split("test.tsv", "qnnli_test", labelled=False),
    )),
}
_QNNLI_WIDTH = {True: 4, False: 3}  # old QNLI v1: index question sentence [label]
_QNNLI_TEXTS = ((1, "question"), (2, "sentence"))


@dataclass
class FileReport:
    """What happened to one raw file: the canonical file written and the rows left out."""

    source: Path
    output: Path
    rows: int = 0
    # Both counts are raw lines (a skipped qnnli pair counts 2).
    short_rows: int = 0  # too few columns: skipped with a warning
    dropped: int = 0  # left out by design (MNLI "-"; qnnli pairs that differ or share a label)


@dataclass
class PreproSummary:
    """The result of one run: files written (with counts) and what was skipped."""

    written: list[FileReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def rows(self) -> dict[str, int]:
        """Canonical file stem → rows written (``{"rte_train": 2490, …}``)."""
        return {report.output.stem: report.rows for report in self.written}


def _short_row(source: Path, line_no: int, n_cols: int, min_cols: int, strict: bool, left_out: str = "row") -> None:
    message = f"row has {n_cols} column(s), expected at least {min_cols}"
    if strict:
        raise MTDNNInputError(message, source, line_no)
    logger.warning("%s:%d: %s; %s skipped", source, line_no, message, left_out)


def _check_not_wide(source: Path, line_no: int, n_cols: int, width: int) -> None:
    if n_cols > width:
        raise MTDNNInputError(
            f"row has {n_cols} columns, expected {width} (a tab inside a text? the columns cannot be told apart)",
            source, line_no,
        )


def _check_texts(source: Path, line_no: int, cols: list[str], texts: tuple[tuple[int | None, str], ...]) -> None:
    """An empty or blank premise/hypothesis is an error: the row would train on a text with no words."""
    for index, what in texts:
        if index is not None and not cols[index].strip():
            raise MTDNNInputError(f"{what} (column {index % len(cols) + 1}) is empty", source, line_no)


def _check_label(task_def: TaskDef, raw: str, source: Path, line_no: int) -> None:
    try:
        task_def.encode_label(raw)
    except ValueError as err:
        raise MTDNNInputError(str(err), source, line_no) from None


def _data_lines(source: Path, header: bool) -> Iterator[tuple[int, str]]:
    lines = iter_lines(source)
    if header and next(lines, None) is None:
        raise MTDNNInputError("file is empty (expected a header line)", source)
    return lines


def _no_rows(source: Path, report: FileReport) -> MTDNNInputError:
    left_out = report.short_rows + report.dropped
    detail = f" ({left_out} row(s) left out)" if left_out else ""
    return MTDNNInputError(f"file has no data rows{detail}", source)


def _layout_rows(source: Path, split: Split, task_def: TaskDef, strict: bool, report: FileReport) -> Iterator[list[str]]:
    """Canonical rows of a classification/regression file; raises on the first malformed row."""
    layout = split.layout
    assert layout is not None
    texts = ((layout.premise, "premise"), (layout.hypothesis, "hypothesis"))
    for line_no, line in _data_lines(source, layout.header):
        cols = line.split("\t")
        if len(cols) < layout.width:
            _short_row(source, line_no, len(cols), layout.width, strict)
            report.short_rows += 1
            continue
        _check_not_wide(source, line_no, len(cols), layout.width)
        if layout.label is None:
            label = layout.placeholder
        else:
            label = cols[layout.label]
            if label == layout.drop_label:
                report.dropped += 1
                continue
            _check_label(task_def, label, source, line_no)
        _check_texts(source, line_no, cols, texts)
        uid = str(report.rows) if layout.uid is RUNNING else cols[layout.uid]
        row = [uid, label, cols[layout.premise]]
        if layout.hypothesis is not None:
            row.append(cols[layout.hypothesis])
        report.rows += 1
        yield row
    if report.rows == 0:
        raise _no_rows(source, report)


def _qnnli_rows(source: Path, split: Split, task_def: TaskDef, strict: bool, rng: random.Random,
                report: FileReport) -> Iterator[list[str]]:
    """QNLI v1 ranking rows: consecutive lines share a question and become one two-candidate row."""
    lines = list(_data_lines(source, header=True))
    if len(lines) % 2:
        raise MTDNNInputError(f"odd number of data rows ({len(lines)}): QNLI v1 rows come in pairs", source)
    width = _QNNLI_WIDTH[split.labelled]
    for (line1, text1), (line2, text2) in zip(lines[0::2], lines[1::2]):
        pair = [(line1, text1.split("\t")), (line2, text2.split("\t"))]
        for no, cols in pair:
            _check_not_wide(source, no, len(cols), width)
        short = [(no, cols) for no, cols in pair if len(cols) < width]
        if short:
            for no, cols in short:
                _short_row(source, no, len(cols), width, strict, f"pair of lines {line1}-{line2}")
            # The partner line goes too: a candidate list needs both rows of the pair.
            report.short_rows += 2
            continue
        for no, cols in pair:
            _check_texts(source, no, cols, _QNNLI_TEXTS)
        if pair[0][1][1] != pair[1][1][1]:
            logger.warning("%s:%d: the pair's two questions differ; pair skipped", source, line1)
            report.dropped += 2
            continue
        if split.labelled:
            rng.shuffle(pair)
            labels = [cols[-1] for _, cols in pair]
            for (no, _), label in zip(pair, labels):
                _check_label(task_def, label, source, no)
            if labels[0] == labels[1]:
                report.dropped += 2
                continue
        else:
            labels = ["entailment", "entailment"]
        for no, cols in pair:
            if "," in cols[0]:
                raise MTDNNInputError(f"index {cols[0]!r} contains ',' (ruid is comma-joined)", source, no)
        (_, first), (_, second) = pair
        report.rows += 1
        yield [str(report.rows - 1), f"{first[0]},{second[0]}", ",".join(labels), first[1], first[2], second[2]]
    if report.rows == 0:
        raise _no_rows(source, report)


def _selected_tasks(names: str | None, old_glue: bool) -> tuple[dict[str, GlueTask], set[str]]:
    """The tasks to convert and the subset the user named explicitly."""
    known = dict(GLUE_TASKS)
    if old_glue:
        known.update(OLD_GLUE_TASKS)
    if names is None:
        return known, set()
    chosen: dict[str, GlueTask] = {}
    for name in (part.strip().lower() for part in names.split(",")):
        if not name:
            continue
        if name in OLD_GLUE_TASKS and not old_glue:
            raise MTDNNInputError(f"--tasks: {name!r} (QNLI v1 ranking) needs --old_glue")
        if name not in known:
            raise MTDNNInputError(f"--tasks: unknown task {name!r}; expected one of {', '.join(known)}")
        chosen[name] = known[name]
    if not chosen:
        raise MTDNNInputError("--tasks: no task named")
    return chosen, set(chosen)


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags of this script."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root_dir", default="data", help="folder holding the GLUE task folders")
    parser.add_argument("--old_glue", action="store_true", help="also build QNLI v1 ranking data (qnnli)")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated subset of cola,sst,mrpc,stsb,qqp,mnli,qnli,rte,wnli,ax (qnnli with --old_glue)")
    parser.add_argument("--strict", action="store_true", help="rows with too few columns are errors, not warnings (too many columns: always an error)")
    parser.add_argument("--seed", type=int, default=13, help="seed of the qnnli candidate shuffle")
    parser.add_argument("--task_def", default=str(DEFAULT_TASK_DEF), help="task definitions used to check labels")
    return parser


def run(root_dir: str | Path, tasks: str | None = None, old_glue: bool = False, strict: bool = False,
        seed: int = 13, task_def: str | Path = DEFAULT_TASK_DEF) -> PreproSummary:
    """Convert the GLUE files under ``root_dir`` into ``root_dir/canonical_data``; return what was done."""
    root = Path(root_dir)
    if not root.is_dir():
        raise MTDNNInputError("--root_dir: folder not found", root)
    chosen, named = _selected_tasks(tasks, old_glue)
    task_defs = load_task_defs(task_def)
    out_dir = root / "canonical_data"
    # One generator across qnnli train then dev, as upstream seeded once: same shuffles as its files.
    rng = random.Random(seed)
    summary = PreproSummary()
    for name, task in chosen.items():
        folder = root / task.folder
        present = [split for split in task.splits if (folder / split.source).is_file()]
        if not present:
            what = "folder not found" if not folder.is_dir() else \
                f"none of {', '.join(split.source for split in task.splits)} found"
            if name in named:
                raise MTDNNInputError(f"task {name!r}: {what}", folder)
            logger.warning("%s: %s; task %s skipped", folder, what, name)
            summary.skipped.append(f"{name}: {folder} ({what})")
            continue
        definition = get_task_def(task_defs, task.task_def, task_def)
        for split in task.splits:
            source = folder / split.source
            if split not in present:
                logger.warning("%s: file not found; %s skipped", source, split.output)
                summary.skipped.append(f"{split.output}: {source} (file not found)")
                continue
            report = FileReport(source=source, output=out_dir / f"{split.output}.tsv")
            if split.layout is None:
                rows = _qnnli_rows(source, split, definition, strict, rng, report)
            else:
                rows = _layout_rows(source, split, definition, strict, report)
            write_canonical(report.output, rows)
            summary.written.append(report)
    _log_summary(summary)
    return summary


def _log_summary(summary: PreproSummary) -> None:
    for report in summary.written:
        extra = ""
        if report.short_rows:
            extra += f", {report.short_rows} short row(s) skipped"
        if report.dropped:
            extra += f", {report.dropped} row(s) dropped by design"
        logger.info("wrote %s: %d rows (from %s%s)", report.output, report.rows, report.source, extra)
    for skipped in summary.skipped:
        logger.info("skipped %s", skipped)
    logger.info("%d file(s) written, %d skipped", len(summary.written), len(summary.skipped))


def main(argv: list[str] | None = None) -> PreproSummary:
    """Parse ``argv`` and run the conversion; returns the summary."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run(args.root_dir, tasks=args.tasks, old_glue=args.old_glue, strict=args.strict,
               seed=args.seed, task_def=args.task_def)


if __name__ == "__main__":
    run_cli(main)

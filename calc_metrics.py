"""Compute a task's metrics from a score file against the gold labels of a canonical TSV.

    python calc_metrics.py --task_def experiments/glue/glue_task_def.yml --task rte \
        --std_input data/canonical_data/rte_dev.tsv --score checkpoint/rte_dev_scores_epoch_0.json

Gold labels come from the canonical TSV (``uid<TAB>label<TAB>...``). The score file must
hold exactly n_class scores per uid (classification: the flat list of class
probabilities; regression: one score); uids are matched as strings and every uid must be
on both sides. Predictions are the argmax of the scores (regression: the score itself).
One line per metric is printed. Classification and regression tasks are supported.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.file_io import iter_lines
from data_utils.log_utils import setup_logging
from data_utils.metrics import calc_metrics
from data_utils.score_files import read_score_file, scores_by_uid
from data_utils.task_def import TaskDef, get_task_def, load_task_defs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of calc_metrics.py."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task_def", default="experiments/glue/glue_task_def.yml", help="YAML task definitions")
    parser.add_argument("--task", required=True, help="task (or dataset) name, e.g. rte or mnli_matched")
    parser.add_argument("--std_input", required=True, help="canonical TSV with the gold labels")
    parser.add_argument("--score", required=True, help="score file written by train.py / predict.py")
    return parser.parse_args(argv)


def read_gold_labels(path: str | Path, task_def: TaskDef) -> dict[str, int | float]:
    """uid → encoded gold label from the first two columns of a canonical TSV (in file order)."""
    golds: dict[str, int | float] = {}
    for line_no, line in iter_lines(path):
        columns = line.split("\t")
        if len(columns) < 2:
            raise MTDNNInputError("expected at least the columns uid and label", path, line_no)
        uid, raw_label = columns[0], columns[1]
        if uid in golds:
            raise MTDNNInputError(f"uid {uid!r} appears more than once", path, line_no)
        try:
            golds[uid] = task_def.encode_label(raw_label)
        except ValueError as err:
            raise MTDNNInputError(f"label: {err}", path, line_no) from None
    if not golds:
        raise MTDNNInputError("no rows", path)
    return golds


def _matched_scores(golds: dict[str, Any], scores: dict[str, list[float]], std_input: str, score_path: str) -> list[list[float]]:
    """Each gold uid's scores, in canonical order; a uid on only one side is an error naming it."""
    missing = [uid for uid in golds if uid not in scores]
    if missing:
        raise MTDNNInputError(f"{len(missing)} uid(s) of {std_input} have no scores, first {missing[0]!r}", score_path)
    extra = [uid for uid in scores if uid not in golds]
    if extra:
        raise MTDNNInputError(f"{len(extra)} scored uid(s) are not in {std_input}, first {extra[0]!r}", score_path)
    return [scores[uid] for uid in golds]


def evaluate(task_def: TaskDef, std_input: str, score_path: str) -> dict[str, Any]:
    """Metrics of ``task_def.metric_meta`` for a score file against a canonical TSV's gold labels."""
    if not task_def.spec.scored_per_row:
        raise MTDNNInputError(
            f"task {task_def.name}: calc_metrics supports classification and regression tasks, "
            f"not {task_def.task_type.name}"
        )
    golds = read_gold_labels(std_input, task_def)
    per_uid = scores_by_uid(read_score_file(score_path), task_def.n_class, score_path)
    rows = np.asarray(_matched_scores(golds, per_uid, std_input, score_path))
    if task_def.spec.real_valued:
        predictions = rows[:, 0].tolist()
        label_names = None
    else:
        predictions = rows.argmax(axis=1).tolist()
        label_names = list(task_def.labels) if task_def.labels else [str(i) for i in range(task_def.n_class)]
    return calc_metrics(task_def.metric_meta, list(golds.values()), predictions, rows.reshape(-1).tolist(), label_names)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print and return the metrics of one score file."""
    args = parse_args(argv)
    setup_logging()
    task_def = get_task_def(load_task_defs(args.task_def), args.task, args.task_def)
    metrics = evaluate(task_def, args.std_input, args.score)
    for name, value in metrics.items():
        print(f"{name}: {json.dumps(value)}")
    return metrics


if __name__ == "__main__":
    run_cli(main)

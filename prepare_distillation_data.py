"""Soft labels for knowledge distillation: average the teachers' class probabilities per uid.

Each teacher scores the student's training file (``predict.py``, once per teacher checkpoint),
then the scores are averaged into the file (here the kd file goes beside the features as
dataset ``rte_kd``, which ``train.py`` reads as task ``rte``: the name's prefix):

    python predict.py --task rte --checkpoint teacher1/model_2.pt \\
        --prep_input data/canonical_data/bert-base-uncased/rte_train.json --score rte_train_teacher1.json
    python prepare_distillation_data.py --task_def experiments/glue/glue_task_def.yml --task rte \\
        --input data/canonical_data/bert-base-uncased/rte_train.json \\
        --teacher_scores rte_train_teacher1.json,rte_train_teacher2.json \\
        --output data/canonical_data/bert-base-uncased/rte_kd_train.json
    python train.py --data_dir data/canonical_data/bert-base-uncased \\
        --train_datasets rte_kd --test_datasets rte --mkd_opt 1 ...

The output is the input with a ``softlabel`` list (the averaged probabilities) added to every
line; line order and all other keys are kept. Upstream's canonical-TSV form also works: a
``.tsv`` input gets a JSON-list column after the label with --add_soft_label (``prepro_std.py``
turns it into ``softlabel``); without it a binary task's label becomes the class-1 probability:

    python prepare_distillation_data.py --task_def experiments/glue/glue_task_def.yml --task rte \\
        --std_input data/canonical_data/rte_train.tsv --score rte_train_teacher1.json,rte_train_teacher2.json \\
        --std_output data/canonical_data/rte_kd_train.tsv --add_soft_label

Every teacher must score exactly the input's uids with n_class softmax probabilities each, and
the task's type must have per-class soft labels (classification). Nothing is written unless
all checks pass; the output is replaced atomically.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.log_utils import setup_logging
from data_utils.soft_labels import add_soft_labels
from data_utils.task_def import get_task_def, load_task_defs

logger = logging.getLogger("mt_dnn")


def score_paths(text: str) -> list[Path]:
    """``a.json,b.json`` → the teachers' score files; an empty entry is an error."""
    paths = [part.strip() for part in text.split(",")]
    if not all(paths):
        raise MTDNNInputError(f"--teacher_scores {text!r}: an empty file name in the comma-separated list")
    return [Path(path) for path in paths]


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of prepare_distillation_data.py."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task_def", default="experiments/glue/glue_task_def.yml",
                   help="YAML task definitions (default: %(default)s)")
    p.add_argument("--task", required=True, help="task or dataset name, e.g. rte (required, no default)")
    p.add_argument("--input", "--std_input", dest="input", required=True,
                   help="tokenized JSON lines (prepro_std.py output), or a canonical TSV when it ends in .tsv "
                   "(required, no default)")
    p.add_argument("--teacher_scores", "--score", dest="teacher_scores", required=True,
                   help="comma-separated score files of the teachers on --input, from predict.py or train.py "
                   "(required, no default)")
    p.add_argument("--output", "--std_output", dest="output", required=True,
                   help="file to write, in the input's format (required, no default)")
    p.add_argument("--add_soft_label", action="store_true",
                   help="canonical TSV only: insert the probabilities as a column after the label; without it a "
                   "binary task's label becomes the class-1 probability (default: off; JSON lines always get "
                   "a 'softlabel' key)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Write --output with the teachers' averaged soft labels; returns the number of rows."""
    args = build_parser().parse_args(argv)
    setup_logging()
    task_def = get_task_def(load_task_defs(args.task_def), args.task, args.task_def)
    teachers = score_paths(args.teacher_scores)
    count = add_soft_labels(Path(args.input), teachers, Path(args.output), task_def, args.add_soft_label)
    logger.info("wrote %s: %d rows, soft labels averaged over %d teacher(s)", args.output, count, len(teachers))
    return count


if __name__ == "__main__":
    run_cli(main)

"""Score a tokenized JSON-lines file with one task head of a trained MT-DNN checkpoint.

    python predict.py --task rte --checkpoint checkpoint/model_2.pt \
        --prep_input data/canonical_data/bert-base-uncased/rte_dev.json \
        --with_label --score rte_dev_scores.json

The network (encoder and every head) is rebuilt from the checkpoint alone (or from a
``scripts/export_hf.py`` folder), so it runs on CPU with no network access; ``--task`` picks a head by task or dataset name
(``mnli_matched`` → ``mnli``), ``--task_id`` by position. The score file is the one
``train.py`` writes: ``{"metrics", "predictions", "uids", "scores"}``. With
``--with_label`` the metrics (the task's ``metric_meta``, or ``--metric ACC,F1``) are
computed against the file's labels and printed, one ``NAME: value`` line each.
``--task_def`` (optional) names a YAML whose definition of the task must agree with the
checkpoint's head; its ``metric_meta`` is then the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from data_utils.errors import MTDNNInputError, run_cli
from data_utils.log_utils import setup_logging
from data_utils.metrics import METRIC_FUNCTIONS
from data_utils.score_files import write_score_file
from data_utils.task_def import Metric, TaskDef, get_task_def, load_task_defs
from mt_dnn.api import MTDNNPredictor, head_name
from mt_dnn.batcher import Collater, TaskDataset, build_eval_loader
from mt_dnn.checkpoint import RunCheckpoint
from mt_dnn.encoder import encoder_limits
from mt_dnn.host_memory import DEFAULT_PRIMITIVE_CACHE, bound_primitive_caches
from mt_dnn.inference import EvalSettings, evaluate, flat_scores, format_metrics

logger = logging.getLogger("mt_dnn")

# Fields that shape a head: a YAML may change what is reported, never these.
_HEAD_FIELDS = ("n_class", "data_format", "task_type", "enable_san", "actf")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of predict.py."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task_def", default=None, help="YAML task definitions (optional; must agree with the checkpoint)")
    p.add_argument("--task", default=None, help="task or dataset name, e.g. rte or mnli_matched")
    p.add_argument("--task_id", type=int, default=None, help="position of the task's head in the checkpoint")
    p.add_argument("--checkpoint", required=True, help="model_*.pt written by train.py, or a scripts/export_hf.py folder")
    p.add_argument("--prep_input", required=True, help="tokenized JSON lines (prepro_std.py output)")
    p.add_argument("--with_label", action="store_true", help="the input carries real labels: compute metrics")
    p.add_argument("--score", required=True, help="score file to write")
    p.add_argument("--metric", default=None, help="comma-separated metric names overriding the task's, e.g. ACC,F1")
    p.add_argument("--max_seq_len", type=int, default=512,
                   help="as in training: examples are scored whole; longer ones are counted in a warning")
    p.add_argument("--batch_size_eval", type=int, default=8)
    p.add_argument(
        "--cuda",
        action=argparse.BooleanOptionalAction,
        default=torch.cuda.is_available(),
        help="run on the GPU (on by default when torch sees one); --no-cuda runs on the CPU",
    )
    return p


def parse_metrics(text: str) -> tuple[Metric, ...]:
    """``ACC,F1`` → metrics (names case-insensitive); an unknown or unsupported name is an error."""
    supported = {metric.name.lower(): metric for metric in METRIC_FUNCTIONS}
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise MTDNNInputError("--metric is empty")
    unknown = [name for name in names if name.lower() not in supported]
    if unknown:
        raise MTDNNInputError(f"--metric: unknown metric {unknown[0]!r} (supported: {', '.join(m.name for m in METRIC_FUNCTIONS)})")
    return tuple(supported[name.lower()] for name in names)


def check_input_fits_head(path: str, names: list[str], task_def: TaskDef) -> None:
    """Refuse features whose file name (``<dataset>_<split>.json``) names another head's task of the checkpoint."""
    stem = Path(path).name.split(".")[0]
    dataset = stem.rsplit("_", 1)[0] if stem.rsplit("_", 1)[-1] in ("train", "dev", "test") else stem
    owner = head_name(names, dataset)
    if owner is not None and owner != task_def.name:
        raise MTDNNInputError(
            f"holds dataset {dataset!r} of task {owner}, but the head chosen is task {task_def.name}'s "
            f"({task_def.task_type.name}); pass --task {owner}, or rename the file if it really is {task_def.name} data",
            path,
        )


def select_task(run: RunCheckpoint, task: str | None, task_id: int | None, checkpoint: str) -> int:
    """The head index of ``--task`` (task or dataset name) and/or ``--task_id``; they must agree."""
    names = run.task_names
    listing = f"the checkpoint's tasks: {', '.join(f'{i}={n}' for i, n in enumerate(names))}"
    if task_id is not None and not 0 <= task_id < len(names):
        raise MTDNNInputError(f"--task_id {task_id} is out of range ({listing})", checkpoint)
    if task is None:
        if task_id is None:
            raise MTDNNInputError("give --task (or --task_id)")
        return task_id
    name = head_name(names, task)
    if name is None:
        raise MTDNNInputError(f"task {task!r} has no head in this checkpoint ({listing})", checkpoint)
    index = names.index(name)
    if task_id is not None and task_id != index:
        raise MTDNNInputError(f"--task {task} is head {index}, not --task_id {task_id} ({listing})", checkpoint)
    return index


def reconcile_with_yaml(task_def: TaskDef, dataset: str, yaml_path: str) -> TaskDef:
    """The checkpoint's task with the YAML's ``metric_meta``; a YAML head that differs is an error."""
    defined = get_task_def(load_task_defs(yaml_path), dataset, yaml_path)
    for field in _HEAD_FIELDS:
        ours, theirs = getattr(task_def, field), getattr(defined, field)
        if ours != theirs:
            raise MTDNNInputError(
                f"task {task_def.name}: {field} is {theirs!r} here but {ours!r} in the checkpoint's head", yaml_path
            )
    return dataclasses.replace(task_def, metric_meta=defined.metric_meta)


def load_input(path: str, task_def: TaskDef, max_seq_len: int, max_positions: int | None) -> TaskDataset:
    """The checked input file, every example scored whole as ``train.py``'s evaluation does."""
    dataset = TaskDataset(path, task_def, task_def.name, max_seq_len)
    lengths = dataset.lengths()
    if max_positions is not None:
        for sample, length in zip(dataset.samples, lengths):
            if length > max_positions:
                raise MTDNNInputError(
                    f"uid {sample['uid']!r} has {length} tokens, more than the encoder's {max_positions} positions", path
                )
    longer = sum(length > max_seq_len for length in lengths)
    if longer:
        logger.warning("%d examples are longer than --max_seq_len %d; scored whole, as in training", longer, max_seq_len)
    return dataset


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write the score file of ``--prep_input``; returns (and with ``--with_label`` prints) the metrics."""
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.batch_size_eval < 1:
        raise MTDNNInputError("--batch_size_eval must be at least 1")
    metric_meta = parse_metrics(args.metric) if args.metric is not None else None
    if args.cuda and not torch.cuda.is_available():
        logger.warning("--cuda: no GPU is available, running on CPU")
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    if device.type == "cpu":  # before the first product: a bf16 run's kernels, one per batch length, cached as in training
        bound_primitive_caches(DEFAULT_PRIMITIVE_CACHE)

    run = MTDNNPredictor.from_checkpoint(args.checkpoint, device).run
    task_id = select_task(run, args.task, args.task_id, args.checkpoint)
    task_def = run.task_defs[task_id]
    if args.task_def is not None:
        task_def = reconcile_with_yaml(task_def, args.task or task_def.name, args.task_def)
    if metric_meta is not None:
        task_def = dataclasses.replace(task_def, metric_meta=metric_meta)
    logger.info("task %s (head %d of %s): %s", task_def.name, task_id, ", ".join(run.task_names), args.checkpoint)
    check_input_fits_head(args.prep_input, run.task_names, task_def)

    dataset = load_input(args.prep_input, task_def, args.max_seq_len, run.encoder_config.get("max_position_embeddings"))
    limits = encoder_limits(run.network.bert)
    dataset.check_fits(None, limits.vocab_size, limits.type_vocab_size)
    loader = build_eval_loader(dataset, args.batch_size_eval, Collater(run.pad_token_id, args.max_seq_len, keep_samples=True))
    # The run's own precision (fp32, or --bf16/--fp16 autocast) and --max_answer_len; no optimizer.
    settings = EvalSettings.of_run(run.model_opts, run.train_opts, device)
    result = evaluate(run.network, loader, task_def, with_labels=args.with_label, settings=settings)

    decoded = result.decoded
    write_score_file(args.score, result.metrics, decoded.predictions, decoded.uids, flat_scores(decoded))
    logger.info("wrote %s (%d examples)", Path(args.score), len(decoded.uids))
    if args.with_label:
        logger.info("%s: %s", task_def.name, format_metrics(result.metrics))
        for name, value in result.metrics.items():
            print(f"{name}: {json.dumps(value)}")
    return result.metrics


if __name__ == "__main__":
    run_cli(main)

"""Evaluation of one dataset split with a network: predictions → metrics → score files (SPEC §7).

Nothing here needs an optimizer: ``predict.py`` and ``train.py`` pass the network itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from data_utils.metrics import calc_metrics
from data_utils.score_files import glue_submission_name, score_file_name, write_glue_submission, write_score_file
from data_utils.task_def import TaskDef
from mt_dnn.batch import Batch
from mt_dnn.batcher import restore_order, unshard
from mt_dnn.distributed import DistContext, gather_objects
from mt_dnn.options import ModelOptions, TrainOptions, autocast_context, autocast_dtype
from mt_dnn.tasks import Decoded, DecodeOptions, get_task_handler

if TYPE_CHECKING:
    from mt_dnn.matcher import SANBertNetwork

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Metrics (empty for unlabelled test splits) and per-sample outputs of one split, and the decoding
    settings used (``TaskHandler.fit_decoding``; empty for most task types)."""

    metrics: dict[str, Any]
    decoded: Decoded
    decoding: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSettings:
    """How a network is run for evaluation: device, autocast dtype (None = float32), decoding options,
    and the ranks whose shards of a dataset are gathered back (one process by default)."""

    device: torch.device = torch.device("cpu")
    amp_dtype: torch.dtype | None = None
    decode: DecodeOptions = DecodeOptions()
    dist: DistContext = DistContext()

    @classmethod
    def of_run(
        cls, model_opts: ModelOptions, train_opts: TrainOptions, device: torch.device, dist: DistContext = DistContext()
    ) -> EvalSettings:
        """The settings a run trained with: its autocast precision and ``--max_answer_len``."""
        return cls(device, autocast_dtype(train_opts), DecodeOptions(max_answer_len=model_opts.san.max_answer_len), dist)


def predict_logits(network: SANBertNetwork, batch: Batch, task_id: int, settings: EvalSettings) -> torch.Tensor:
    """Float32 logits of one batch, network in eval mode."""
    network.eval()
    batch = batch.to(settings.device)
    # Under --fsdp no inference mode: FSDP keeps the parameters it gathers, which could not train afterwards.
    with torch.no_grad(), torch.inference_mode(not settings.dist.fsdp), autocast_context(settings.device, settings.amp_dtype):
        logits = network(batch.input_ids, batch.token_type_ids, batch.attention_mask, task_id)
    return logits.float()


def predict_dataset(
    network: SANBertNetwork, loader: torch.utils.data.DataLoader, task_def: TaskDef, settings: EvalSettings
) -> Decoded:
    """Run the network over a loader and decode every batch with the task's handler."""
    handler = get_task_handler(task_def.task_type)
    task_id = network.task_id(task_def.name)
    merged = Decoded(uids=[], predictions=[], scores=[], golds=[])
    for batch in loader:
        part = handler.decode(predict_logits(network, batch, task_id, settings).cpu(), batch, settings.decode)
        merged.uids.extend(part.uids)
        merged.predictions.extend(part.predictions)
        merged.scores.extend(part.scores)
        merged.golds.extend(part.golds)
    order = getattr(loader.sampler, "order", None)
    if order is not None:
        merged = Decoded(*(restore_order(values, order) for values in (merged.uids, merged.predictions, merged.scores, merged.golds)))
    if settings.dist.enabled:
        # Each rank scored its contiguous shard (build_eval_loader with rank/world_size): rank order is dataset order.
        source = loader.dataset
        total = len(source.dataset) if isinstance(source, torch.utils.data.Subset) else len(source)
        parts = gather_objects(merged, settings.dist)
        merged = Decoded(*(unshard([getattr(part, field) for part in parts], total) for field in ("uids", "predictions", "scores", "golds")))
    return handler.finalize(merged, task_def)


def evaluate(
    network: SANBertNetwork,
    loader: torch.utils.data.DataLoader,
    task_def: TaskDef,
    with_labels: bool,
    settings: EvalSettings = EvalSettings(),
    decoding: dict[str, Any] | None = None,
) -> EvalResult:
    """Predict a split and, when it carries real labels, compute the task's metrics.

    ``decoding``: settings another split chose (train.py passes a dataset's dev choice to its test
    split); without them a labelled split chooses its own. Settings in use are recorded in the
    metrics under ``"decoding"``.
    """
    handler = get_task_handler(task_def.task_type)
    decoded = predict_dataset(network, loader, task_def, settings)
    if decoding is None:
        decoding = handler.fit_decoding(decoded) if with_labels else {}
    decoded, decoding = handler.apply_decoding(decoded, decoding, task_def)
    metrics: dict[str, Any] = {}
    if with_labels:
        metrics = calc_metrics(task_def.metric_meta, decoded.golds, decoded.predictions, decoded.scores, task_def.labels)
    if decoding:
        metrics["decoding"] = decoding
    return EvalResult(metrics, decoded, decoding)


def write_eval_outputs(
    result: EvalResult,
    output_dir: str | Path,
    dataset: str,
    split: str,
    task_def: TaskDef,
    glue_format: bool,
    epoch: int | None = None,
    updates: int | None = None,
) -> Path:
    """Write the score file (and, with ``glue_format``, the GLUE submission TSV of tasks that have one)."""
    decoded = result.decoded
    path = score_file_name(output_dir, dataset, split, epoch=epoch, updates=updates)
    write_score_file(path, result.metrics, decoded.predictions, decoded.uids, flat_scores(decoded))
    if glue_format and get_task_handler(task_def.task_type).glue_submission:
        tsv = glue_submission_name(output_dir, dataset, split, epoch=epoch, updates=updates)
        write_glue_submission(tsv, decoded.uids, decoded.predictions, task_def)
    return path


def flat_scores(decoded: Decoded) -> list[Any]:
    """Scores as score files hold them: one flat list (n_class probabilities per example for classification)."""
    return [value for score in decoded.scores for value in (score if isinstance(score, list) else [score])]


def format_metrics(metrics: dict[str, Any]) -> str:
    """One-line summary of numeric metrics, e.g. ``ACC 71.84 F1 80.12``."""
    parts = []
    for name, value in metrics.items():
        if isinstance(value, float):
            parts.append(f"{name} {value:.2f}")
        elif isinstance(value, dict):
            parts.extend(f"{name}.{k} {v:.2f}" for k, v in value.items() if isinstance(v, float))
    return " ".join(parts) if parts else "(no labels)"


"""Extractive question answering (SQuAD v1.1, v2.0, ReCoRD): start/end logits over tokens.

A question may span several overflow windows; ``finalize`` joins them by uid, keeping the
best-scoring span and the lowest no-answer score. A question's score is its no-answer margin
(no-answer score minus best span score). v2 answers "" where the margin exceeds a threshold
chosen on the dev split (best F1, ``fit_decoding``) and reused for the test split; a split
scored without one uses 0.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from data_utils.squad_eval import apply_null_threshold, find_best_threshold
from data_utils.task_def import TaskDef, TaskType
from module.dropout_wrapper import DropoutWrapper
from mt_dnn.tasks.base import Decoded, DecodeOptions, EncoderFeatures, HeadContext, TaskHandler
from mt_dnn.tasks.registry import register_task_handler

if TYPE_CHECKING:
    from mt_dnn.batch import Batch
    from mt_dnn.loss import Criterion

logger = logging.getLogger(__name__)

_MASKED = -1e4
# Score file value of the margin of a question no window offered a span for (JSON has no infinity).
_NO_SPAN_MARGIN = 1e9


class SpanHead(nn.Module):
    """``Linear(H, 2)`` on every token → [N, L, 2] start/end logits (padding masked)."""

    def __init__(self, hidden_size: int, dropout_p: float, vb_dropout: bool):
        super().__init__()
        self.dropout = DropoutWrapper(dropout_p, enable_vbp=vb_dropout)
        self.proj = nn.Linear(hidden_size, 2)

    def forward(self, features: EncoderFeatures) -> torch.Tensor:
        logits = self.proj(self.dropout(features.sequence_output))
        pad = features.attention_mask.eq(0).unsqueeze(-1)
        return logits.masked_fill(pad, _MASKED)


def _answers(sample: dict) -> list[str]:
    answer = sample.get("answer", [])
    return [answer] if isinstance(answer, str) else list(answer)


def best_span(
    start: list[float], end: list[float], offsets: list, max_answer_len: int, n_best: int = 20
) -> tuple[float, int, int]:
    """Highest start+end score over valid context spans: ``(score, start, end)`` or ``(-inf, 0, 0)``."""
    valid = [i for i, offset in enumerate(offsets) if offset is not None and len(offset) == 2]
    starts = sorted(valid, key=lambda i: start[i], reverse=True)[:n_best]
    ends = sorted(valid, key=lambda i: end[i], reverse=True)[:n_best]
    best = (float("-inf"), 0, 0)
    for s in starts:
        for e in ends:
            if s <= e < s + max_answer_len and start[s] + end[e] > best[0]:
                best = (start[s] + end[e], s, e)
    return best


@register_task_handler
class SpanHandler(TaskHandler):
    """SQuAD v1.1-style spans: every question has an answer."""

    task_type = TaskType.SpanClassification

    def build_head(self, task_def: TaskDef, ctx: HeadContext) -> nn.Module:
        return SpanHead(ctx.hidden_size, ctx.dropout_p, ctx.vb_dropout)

    def prepare_labels(self, samples: list[dict], seq_len: int) -> torch.Tensor:
        # [start, end, is_impossible]; TaskDataset has checked the shape and the range.
        return torch.tensor([sample["label"] for sample in samples], dtype=torch.long)

    def compute_loss(self, criterion: Criterion, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return criterion((logits[..., 0], logits[..., 1]), (batch.labels[:, 0], batch.labels[:, 1]))

    def distill_targets_view(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return logits.transpose(1, 2).reshape(-1, logits.size(1))

    def decode(self, logits: torch.Tensor, batch: Batch, options: DecodeOptions = DecodeOptions()) -> Decoded:
        samples = batch.samples or []
        predictions, scores, golds = [], [], []
        start_all = logits[..., 0].float().tolist()
        end_all = logits[..., 1].float().tolist()
        for sample, start, end in zip(samples, start_all, end_all):
            offsets = sample.get("offset_mapping") or []
            score, first, last = best_span(start, end, offsets, options.max_answer_len)
            context = sample.get("context", "")
            text = context[offsets[first][0] : offsets[last][1]] if score > float("-inf") else ""
            null_index = int(sample.get("null_ans_index", 0))
            null_score = start[null_index] + end[null_index]
            predictions.append(text)
            scores.append([score, null_score])
            golds.append(_answers(sample))
        return Decoded(uids=list(batch.uids), predictions=predictions, scores=scores, golds=golds)

    def finalize(self, decoded: Decoded, task_def: TaskDef) -> Decoded:
        best: dict[str, tuple[float, str, float, list[str]]] = {}
        for uid, text, (score, null_score), gold in zip(
            decoded.uids, decoded.predictions, decoded.scores, decoded.golds
        ):
            previous = best.get(uid)
            if previous is None:
                best[uid] = (score, text, null_score, gold)
            else:
                top_score, top_text = (score, text) if score > previous[0] else previous[:2]
                best[uid] = (top_score, top_text, min(null_score, previous[2]), gold)
        uids = list(best)
        # The best non-null answer of each question and its no-answer margin; v2 thresholds it in apply_decoding.
        predictions = [best[uid][1] for uid in uids]
        scores = [best[uid][2] - best[uid][0] if best[uid][0] > float("-inf") else _NO_SPAN_MARGIN for uid in uids]
        return Decoded(uids=uids, predictions=predictions, scores=scores, golds=[best[u][3] for u in uids])


@register_task_handler
class SpanYNHandler(SpanHandler):
    """SQuAD v2.0-style spans: a question may have no answer (the [CLS] position)."""

    task_type = TaskType.SpanClassificationYN

    def fit_decoding(self, decoded: Decoded) -> dict[str, Any]:
        """The no-answer margin threshold with the best official v2.0 F1 on this labelled split."""
        chosen = find_best_threshold([str(p) for p in decoded.predictions], decoded.scores, decoded.golds)
        return {"null_threshold": chosen["best_f1_thresh"], "chosen_by": "best F1 on labelled data (the dev split)"}

    def apply_decoding(self, decoded: Decoded, settings: dict[str, Any], task_def: TaskDef) -> tuple[Decoded, dict[str, Any]]:
        """Answer "" where the no-answer margin exceeds the chosen threshold (0 when none was chosen)."""
        if "null_threshold" not in settings:
            logger.warning("%s: no dev split chose a null-answer threshold for these predictions; using 0", task_def.name)
            settings = {"null_threshold": 0.0, "chosen_by": "default (no dev split)"}
        predictions = apply_null_threshold(decoded.predictions, decoded.scores, float(settings["null_threshold"]))
        return Decoded(decoded.uids, predictions, decoded.scores, decoded.golds), settings

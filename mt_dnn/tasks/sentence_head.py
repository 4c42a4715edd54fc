"""The head shared by the sentence(-pair) task types: classification, regression, ranking.

SPEC §4: the pooled [CLS] vector → task dropout → linear layer, or a task-own pooler when
the YAML sets ``actf``, or the SAN answer module when ``enable_san`` is set on a pair task.
"""
from __future__ import annotations

import torch
from torch import nn

from data_utils.errors import MTDNNInputError
from data_utils.task_def import DataFormat, TaskDef
from module.dropout_wrapper import DropoutWrapper
from module.pooler import Pooler
from module.san import SANClassifier, split_premise_hypothesis
from mt_dnn.tasks.base import EncoderFeatures, HeadContext

_PAIR_FORMATS = (DataFormat.PremiseAndOneHypothesis, DataFormat.PremiseAndMultiHypothesis)


class PooledClassifierHead(nn.Module):
    """Pooled [CLS] → dropout → ``Linear(H, n_out)``; with ``actf`` a task-own pooler first."""

    def __init__(self, hidden_size: int, n_out: int, dropout_p: float, actf: str | None, vb_dropout: bool):
        super().__init__()
        self.own_pooler = Pooler(hidden_size, actf=actf, dropout_p=dropout_p) if actf else None
        self.dropout = DropoutWrapper(0.0 if actf else dropout_p, enable_vbp=vb_dropout)
        self.proj = nn.Linear(hidden_size, n_out)

    def forward(self, features: EncoderFeatures) -> torch.Tensor:
        pooled = self.own_pooler(features.sequence_output) if self.own_pooler is not None else features.pooled_output
        return self.proj(self.dropout(pooled))


class SANHead(nn.Module):
    """The SAN answer module over premise/hypothesis token states (pair tasks)."""

    def __init__(self, hidden_size: int, n_out: int, dropout_p: float, ctx: HeadContext):
        super().__init__()
        san = ctx.san
        self.sep_token_id = ctx.sep_token_id
        self.san = SANClassifier(
            hidden_size,
            hidden_size,
            n_out,
            dropout_p,
            num_turn=san.num_turn,
            mem_type=san.mem_type,
            mem_drop_p=san.mem_drop_p,
            mem_cum_type=san.mem_cum_type,
            weight_norm_on=san.weight_norm_on,
            att_hidden_size=san.att_hidden_size,
            sum_att_type=san.sum_att_type,
            enable_vbp=ctx.vb_dropout,
        )

    def forward(self, features: EncoderFeatures) -> torch.Tensor:
        premise, premise_mask, hypothesis, hypothesis_mask = split_premise_hypothesis(
            features.sequence_output,
            features.token_type_ids,
            features.attention_mask,
            input_ids=features.input_ids,
            sep_token_id=self.sep_token_id,
        )
        return self.san(premise, premise_mask, hypothesis, hypothesis_mask)


def build_sentence_head(task_def: TaskDef, ctx: HeadContext, n_out: int, san_allowed: bool) -> nn.Module:
    """The head shared by classification, regression and ranking tasks."""
    if task_def.enable_san:
        if not san_allowed:
            raise MTDNNInputError(f"task {task_def.name}: enable_san is not available for {task_def.task_type.name}")
        if task_def.data_format not in _PAIR_FORMATS:
            raise MTDNNInputError(f"task {task_def.name}: enable_san needs a premise/hypothesis data format")
        return SANHead(ctx.hidden_size, n_out, ctx.dropout_p, ctx)
    return PooledClassifierHead(ctx.hidden_size, n_out, ctx.dropout_p, task_def.actf, ctx.vb_dropout)

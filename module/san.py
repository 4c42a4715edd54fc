"""Stochastic Answer Network (Liu, Duh & Gao 2018) as a pair-classification head, and the
helper that cuts an encoder's output into premise and hypothesis memories (SPEC §4).

Shapes: B batch, Lp / Lh premise / hypothesis length, H hidden size, K turns, C classes.
Masks are bool with True marking padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from module.dropout_wrapper import DropoutWrapper

_NEG_INF = float("-inf")


class SelfAttnSummary(nn.Module):
    """Summarise a sequence into one vector: s = Σ_j α_j·drop(h_j), α = softmax_j(score(drop(h_j)))."""

    def __init__(self, input_size: int, dropout: DropoutWrapper, mlp_hidden_size: int | None = None):
        super().__init__()
        self.dropout = dropout
        if mlp_hidden_size is None:
            self.score = nn.Linear(input_size, 1)
        else:
            self.score = nn.Sequential(
                nn.Linear(input_size, mlp_hidden_size), nn.ReLU(), nn.Linear(mlp_hidden_size, 1)
            )

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """Map x [B, L, H] with padding mask [B, L] to [B, H]."""
        x = self.dropout(x)
        scores = self.score(x).squeeze(-1).masked_fill(x_mask, _NEG_INF)
        alpha = F.softmax(scores, dim=-1)
        return torch.bmm(alpha.unsqueeze(1).to(x.dtype), x).squeeze(1)


class BilinearAttention(nn.Module):
    """Attention scores of a sequence w.r.t. a vector: score_i = drop(x_i)·(W·drop(y) + b), padding −inf."""

    def __init__(self, x_size: int, y_size: int, dropout: DropoutWrapper, weight_norm_on: bool = False):
        super().__init__()
        self.dropout = dropout
        self.linear = nn.Linear(y_size, x_size)
        if weight_norm_on:
            weight_norm(self.linear)

    def forward(self, x: torch.Tensor, y: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """Scores [B, L] of x [B, L, Hx] against y [B, Hy]."""
        wy = self.linear(self.dropout(y))
        scores = torch.bmm(self.dropout(x), wy.unsqueeze(2).to(x.dtype)).squeeze(2)
        return scores.masked_fill(x_mask, _NEG_INF)


class SANClassifier(nn.Module):
    """Multi-step answer module: K turns of attention over the premise driven by a GRU state.

    Returns log-probabilities [B, C] (the log of the mean of the turns' softmax; in training
    a random subset of turns, at least one per example, is averaged). With ``mem_type=0`` it
    returns the last turn's raw logits instead. With a single output (``label_size == 1``,
    a ranking score) a softmax over one class is constant, so the turns' raw scores are
    averaged instead.
    """

    def __init__(
        self,
        x_size: int,
        h_size: int,
        label_size: int,
        dropout_p: float = 0.0,
        num_turn: int = 5,
        mem_type: int = 1,
        mem_drop_p: float = 0.1,
        mem_cum_type: str = "simple",
        weight_norm_on: bool = False,
        att_hidden_size: int = 128,
        sum_att_type: str = "bilinear",
        enable_vbp: bool = True,
    ):
        super().__init__()
        if x_size != h_size:
            raise ValueError(f"SAN needs premise and state sizes to match (x_size={x_size}, h_size={h_size})")
        if num_turn < 1:
            raise ValueError(f"num_turn must be >= 1, got {num_turn}")
        if mem_type not in (0, 1):
            raise ValueError(f"mem_type must be 0 (last turn) or 1 (average of turns), got {mem_type}")
        if mem_cum_type not in ("simple", "mlp"):
            raise ValueError(f"mem_cum_type must be 'simple' or 'mlp', got {mem_cum_type!r}")
        if sum_att_type != "bilinear":
            raise ValueError(f"only sum_att_type 'bilinear' is implemented, got {sum_att_type!r}")
        if not 0.0 <= mem_drop_p < 1.0:
            raise ValueError(f"mem_drop_p must be in [0, 1), got {mem_drop_p}")
        self.label_size = label_size
        self.num_turn = num_turn
        self.mem_type = mem_type
        self.mem_drop_p = mem_drop_p
        self.dropout = DropoutWrapper(dropout_p, enable_vbp=enable_vbp)
        mlp_hidden = att_hidden_size if mem_cum_type == "mlp" else None
        self.query_wsum = SelfAttnSummary(h_size, self.dropout, mlp_hidden_size=mlp_hidden)
        self.attn = BilinearAttention(x_size, h_size, self.dropout, weight_norm_on=weight_norm_on)
        self.rnn = nn.GRUCell(x_size, h_size)
        self.classifier = nn.Linear(4 * x_size, label_size)
        if weight_norm_on:
            weight_norm(self.classifier)
            weight_norm(self.rnn, name="weight_ih")
            weight_norm(self.rnn, name="weight_hh")

    def turn_logits(
        self,
        premise: torch.Tensor,
        premise_mask: torch.Tensor,
        hypothesis: torch.Tensor,
        hypothesis_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Logits of every turn, [B, K, C]."""
        premise_mask, hypothesis_mask = premise_mask.bool(), hypothesis_mask.bool()
        state = self.query_wsum(hypothesis, hypothesis_mask)
        logits = []
        for turn in range(self.num_turn):
            beta = F.softmax(self.attn(premise, state, premise_mask), dim=-1)
            x_t = torch.bmm(beta.unsqueeze(1).to(premise.dtype), premise).squeeze(1)
            features = torch.cat([x_t, state, (x_t - state).abs(), x_t * state], dim=-1)
            # The prediction uses the state that attended; the GRU update comes after.
            logits.append(self.classifier(self.dropout(features)))
            if turn + 1 < self.num_turn:
                state = self.rnn(x_t, self.dropout(state))
        return torch.stack(logits, dim=1)

    def forward(
        self,
        premise: torch.Tensor,
        premise_mask: torch.Tensor,
        hypothesis: torch.Tensor,
        hypothesis_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Scores [B, C]: log of averaged turn probabilities (mem_type 1) or last-turn logits (0)."""
        logits = self.turn_logits(premise, premise_mask, hypothesis, hypothesis_mask)
        if self.mem_type == 0:
            return logits[:, -1]
        return self._average_turns(logits.float())

    def _average_turns(self, logits: torch.Tensor) -> torch.Tensor:
        batch, turns = logits.shape[:2]
        if self.training and self.mem_drop_p > 0.0:
            keep = self._kept_turns(batch, turns, logits.device)
        else:
            keep = torch.ones(batch, turns, dtype=torch.bool, device=logits.device)
        kept = keep.sum(dim=1, keepdim=True)
        if self.label_size == 1:
            return (logits * keep.unsqueeze(-1)).sum(dim=1) / kept
        log_probs = F.log_softmax(logits, dim=-1).masked_fill(~keep.unsqueeze(-1), _NEG_INF)
        return torch.logsumexp(log_probs, dim=1) - kept.log()

    def _kept_turns(self, batch: int, turns: int, device: torch.device) -> torch.Tensor:
        """Stochastic prediction dropout: drop each turn with mem_drop_p, always keeping one random turn."""
        keep = torch.rand(batch, turns, device=device) >= self.mem_drop_p
        forced = torch.randint(turns, (batch, 1), device=device)
        return keep.scatter(1, forced, True)


def split_premise_hypothesis(
    hidden: torch.Tensor,
    type_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    sep_token_id: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut right-padded encoder states [B, L, H] into (premise, premise_mask, hypothesis, hypothesis_mask).

    The premise is positions [0, plen) (with [CLS] and the first separator), the hypothesis
    [plen, len) (with the last separator); masks are True at padding. plen is the number of
    real tokens with type id 0; a row without any non-zero type id (RoBERTa-style tokenizers)
    ends its premise at its first ``sep_token_id`` instead, which needs ``input_ids``.
    plen is kept within [1, len - 1] so that neither attention runs over an empty segment.
    """
    real = attention_mask.bool()
    lengths = real.sum(dim=1)
    plen = ((type_ids == 0) & real).sum(dim=1)
    typed = ((type_ids != 0) & real).any(dim=1)
    if not bool(typed.all()):
        if input_ids is None or sep_token_id is None:
            raise ValueError(
                "rows without type ids need input_ids and sep_token_id to find the premise/hypothesis boundary"
            )
        is_sep = (input_ids == sep_token_id) & real
        first_sep = is_sep.int().argmax(dim=1)
        sep_plen = torch.where(is_sep.any(dim=1), first_sep + 1, lengths)
        plen = torch.where(typed, plen, sep_plen)
    plen = torch.minimum(plen, lengths - 1).clamp_min(1)
    premise, premise_mask = _gather_segment(hidden, torch.zeros_like(plen), plen)
    hypothesis, hypothesis_mask = _gather_segment(hidden, plen, lengths - plen)
    return premise, premise_mask, hypothesis, hypothesis_mask


def _gather_segment(
    hidden: torch.Tensor, start: torch.Tensor, seg_len: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows hidden[b, start_b : start_b + seg_len_b], left-aligned and zero-padded, plus the pad mask."""
    width = max(int(seg_len.max()), 1)
    offsets = torch.arange(width, device=hidden.device)
    mask = offsets.unsqueeze(0) >= seg_len.unsqueeze(1)
    positions = (start.unsqueeze(1) + offsets.unsqueeze(0)).clamp(max=hidden.size(1) - 1)
    index = positions.unsqueeze(-1).expand(-1, -1, hidden.size(2))
    segment = hidden.gather(1, index).masked_fill(mask.unsqueeze(-1), 0.0)
    return segment, mask

"""Dropout used by the task heads: variational (token-shared) on sequences, plain elsewhere."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropoutWrapper(nn.Module):
    """Dropout whose mask on a [B, L, H] tensor is drawn per example × feature and shared by all L tokens.

    Sharing the mask across tokens (variational dropout) is what the SAN paper uses: every
    token of a sequence loses the same features, so attention sees a consistent view.
    2-D (and other) inputs get ordinary element-wise dropout. Identity at eval or with p = 0.
    """

    def __init__(self, dropout_p: float = 0.0, enable_vbp: bool = True):
        super().__init__()
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
        self.dropout_p = float(dropout_p)
        self.enable_vbp = enable_vbp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply dropout to ``x`` (variational on 3-D inputs when enabled)."""
        if not self.training or self.dropout_p == 0.0:
            return x
        if self.enable_vbp and x.dim() == 3:
            keep = 1.0 - self.dropout_p
            mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(keep).div_(keep)
            return x * mask
        return F.dropout(x, p=self.dropout_p, training=True)

    def extra_repr(self) -> str:
        return f"dropout_p={self.dropout_p}, enable_vbp={self.enable_vbp}"

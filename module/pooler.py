"""A BERT-style pooler: dropout on the first token's state, a dense layer, an activation."""
from __future__ import annotations

import torch
from torch import nn

from module.dropout_wrapper import DropoutWrapper

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "linear": nn.Identity,
}


def activation_fn(name: str) -> nn.Module:
    """Return a fresh activation module for ``name`` (tanh, gelu, relu or linear)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


class Pooler(nn.Module):
    """Pool a sequence to one vector: act(W · drop(h_CLS) + b)."""

    def __init__(self, hidden_size: int, actf: str = "tanh", dropout_p: float = 0.0):
        super().__init__()
        self.dropout = DropoutWrapper(dropout_p)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = activation_fn(actf)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Map hidden states [B, L, H] to pooled vectors [B, H]."""
        first_token = self.dropout(hidden_states[:, 0])
        return self.activation(self.dense(first_token))

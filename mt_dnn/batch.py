"""The ``Batch`` a task type sees, and the ``Item`` the collater receives (no task logic here)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch

from data_utils.task_def import TaskDef


class Item(NamedTuple):
    """One sample as the collater receives it, with the dataset it came from."""

    dataset: str
    task_def: TaskDef
    sample: dict


@dataclass
class Batch:
    """One padded batch of one dataset, ready for the network."""

    dataset: str
    task_def: TaskDef
    input_ids: torch.Tensor  # [N, L]; multi-hypothesis: N = B * k rows, sample-major
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    uids: list[str]
    pairwise_size: int = 1
    soft_labels: torch.Tensor | None = None
    samples: list[dict] | None = None

    def _map_tensors(self, fn) -> Batch:
        changes = {f.name: fn(getattr(self, f.name)) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **changes)

    def to(self, device: torch.device | str) -> Batch:
        """A copy with every tensor on ``device``."""
        # Asynchronous only from pinned memory, where it is safe.
        return self._map_tensors(lambda t: t.to(device, non_blocking=t.is_pinned()))

    def pin_memory(self) -> Batch:
        """A copy in pinned memory (lets ``DataLoader(pin_memory=True)`` handle batches)."""
        return self._map_tensors(lambda t: t.pin_memory())

    @property
    def batch_size(self) -> int:
        """Number of samples B (not rows)."""
        return len(self.uids)

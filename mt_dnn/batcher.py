"""From tokenized JSON lines to padded tensors: per-task datasets, the collater, word dropout.

``TaskDataset`` loads one ``{name}_{split}.json`` file (SPEC §3.3), checks every line and
truncates over-long training examples (never drops them). ``MultiTaskDataset`` maps the
sampler's ``(dataset_index, sample_index)`` pairs to samples, and ``Collater`` pads one
dataset's samples into a ``Batch``. The sampler (paper's Algorithm 1) is in
``mt_dnn/sampler.py`` and re-exported here, where upstream kept it.

Training::

    loader = DataLoader(MultiTaskDataset(train_sets), batch_sampler=MultiTaskBatchSampler(train_sets, 32),
                        collate_fn=Collater(tokenizer.pad_token_id, 512), num_workers=2)

Evaluation, sharded over ``world_size`` ranks: ``build_eval_loader`` gives rank ``r`` the
``r``-th of ``world_size`` contiguous, equally long shards (the last one padded by repeating
the final example, so every rank runs the same number of batches). Gather each rank's
per-sample outputs in rank order, concatenate, and keep the first ``len(dataset)``
(``unshard``): that is the dataset's own order.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from data_utils.errors import MTDNNInputError
from data_utils.file_io import iter_json_lines
from data_utils.formats import get_data_format
from data_utils.formats.base import is_number
from data_utils.task_def import TaskDef
from mt_dnn.batch import Batch, Item
from mt_dnn.sampler import MultiTaskBatchSampler, shard_batch
from mt_dnn.tasks import get_task_handler

logger = logging.getLogger(__name__)

__all__ = [
    "Batch",
    "Collater",
    "Item",
    "MultiTaskBatchSampler",
    "MultiTaskDataset",
    "TaskDataset",
    "apply_word_dropout",
    "build_eval_loader",
    "shard_batch",
    "shard_indices",
    "unshard",
]

class TaskDataset(torch.utils.data.Dataset):
    """All examples of one tokenized JSON-lines file, checked line by line."""

    def __init__(
        self,
        path: str | Path,
        task_def: TaskDef,
        dataset_name: str,
        max_seq_len: int | None = None,
        is_train: bool = False,
    ):
        if max_seq_len is not None and max_seq_len < 2:
            raise MTDNNInputError(f"--max_seq_len must be at least 2, got {max_seq_len}")
        self.path = Path(path)
        self.task_def = task_def
        self.dataset_name = dataset_name
        self.max_seq_len = max_seq_len
        self.is_train = is_train
        self.samples: list[dict] = []
        self._lengths: list[int] = []
        self.n_truncated = 0
        self.has_soft_labels = False  # every line carries a 'softlabel' (all or none do)
        # (value, line) of the longest example as stored (after any truncation), the largest token id
        # and the largest type id: what must fit the encoder's positions, vocabulary and type vocabulary.
        self.longest = (0, 0)
        self.largest_token_id = (0, 0)
        self.largest_type_id = (0, 0)
        self._format = get_data_format(task_def.data_format)
        self._load()

    def _load(self) -> None:
        pairwise_size: int | None = None
        soft_label_size: int | None = None
        first_line: int | None = None
        for line_no, sample in iter_json_lines(self.path):
            try:
                if not isinstance(sample, dict):
                    raise ValueError("a line must hold one JSON object")
                length, k = self._check(sample)
                soft = self._check_soft_label(sample)
            except (ValueError, KeyError, TypeError) as err:
                message = f"missing key {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
                raise MTDNNInputError(message, self.path, line_no) from None
            if first_line is None:
                first_line, pairwise_size, soft_label_size = line_no, k, soft
            elif k != pairwise_size:
                raise MTDNNInputError(
                    f"{k} hypotheses where line {first_line} has {pairwise_size}; all must have the same number",
                    self.path,
                    line_no,
                )
            elif soft != soft_label_size:
                raise MTDNNInputError(
                    f"'softlabel' of size {soft} where line {first_line} has {soft_label_size}; "
                    "every line needs one of the same size, or none at all",
                    self.path,
                    line_no,
                )
            if self.is_train and self.max_seq_len is not None and length > self.max_seq_len:
                length = self._truncate(sample)
                self.n_truncated += 1
            self.samples.append(sample)
            self._lengths.append(length)
            if length > self.longest[0]:
                self.longest = (length, line_no)
            for tokens, types, _ in self._format.token_rows(sample):
                token_id, type_id = max(tokens), max(types)
                if token_id > self.largest_token_id[0]:
                    self.largest_token_id = (token_id, line_no)
                if type_id > self.largest_type_id[0]:
                    self.largest_type_id = (type_id, line_no)
        if not self.samples:
            raise MTDNNInputError("no examples: the file is empty", self.path)
        self.has_soft_labels = soft_label_size is not None
        logger.info(
            "loaded %d examples of %s from %s%s",
            len(self.samples),
            self.dataset_name,
            self.path,
            f" ({self.n_truncated} truncated to --max_seq_len {self.max_seq_len})" if self.n_truncated else "",
        )

    def _check(self, sample: dict) -> tuple[int, int | None]:
        """Validate one sample in place (uid → str, mask built); returns (length, hypotheses)."""
        sample["uid"] = str(sample["uid"])
        return self._format.check_sample(sample, self.task_def)

    def _check_soft_label(self, sample: dict) -> int | None:
        soft = sample.get("softlabel")
        if soft is None:
            return None
        if not isinstance(soft, list) or not soft or not all(is_number(v) for v in soft):
            raise ValueError(f"'softlabel' must be a non-empty list of numbers, got {soft!r}")
        if self.task_def.spec.soft_label_per_class and len(soft) != self.task_def.n_class:
            raise ValueError(
                f"'softlabel' has {len(soft)} probabilities; task {self.task_def.name} has {self.task_def.n_class} classes"
            )
        return len(soft)

    def _truncate(self, sample: dict) -> int:
        """Cut an over-long training example to ``max_seq_len`` in place; returns the new length."""
        return self._format.truncate(sample, self.max_seq_len)

    def check_fits(self, position_limit: int | None, vocab_size: int | None, type_vocab_size: int | None) -> None:
        """``MTDNNInputError`` naming the line of the longest example or largest id when it does not fit the
        encoder: more tokens than it has positions, a token id beyond its vocabulary, a type id beyond its
        type vocabulary (a limit of None is not checked)."""
        length, line = self.longest
        if position_limit is not None and length > position_limit:
            raise MTDNNInputError(
                f"an example of {length} tokens, longer than the encoder's {position_limit} positions "
                f"(re-run prepro_std.py with --max_seq_len {position_limit})",
                self.path,
                line,
            )
        token_id, line = self.largest_token_id
        if vocab_size is not None and token_id >= vocab_size:
            raise MTDNNInputError(
                f"token id {token_id} is beyond the encoder's vocabulary of {vocab_size} "
                "(features made with another model's tokenizer?)",
                self.path,
                line,
            )
        type_id, line = self.largest_type_id
        if type_vocab_size is not None and type_id >= type_vocab_size:
            raise MTDNNInputError(f"type id {type_id} is beyond the encoder's {type_vocab_size} token types", self.path, line)

    def lengths(self) -> list[int]:
        """Token length of every example (the longest hypothesis for multi-hypothesis data)."""
        return list(self._lengths)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Item:
        return Item(self.dataset_name, self.task_def, self.samples[index])


class MultiTaskDataset(torch.utils.data.Dataset):
    """Several ``TaskDataset``s addressed by the sampler's ``(dataset_index, sample_index)``."""

    def __init__(self, datasets: Sequence[TaskDataset]):
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return sum(len(dataset) for dataset in self.datasets)

    def __getitem__(self, index: tuple[int, int]) -> Item:
        dataset_index, sample_index = index
        return self.datasets[dataset_index][sample_index]


class Collater:
    """Pads a list of one dataset's items into a ``Batch`` (``collate_fn`` of a DataLoader)."""

    def __init__(self, pad_token_id: int, max_seq_len: int, do_padding: bool = False, keep_samples: bool = False,
                 pad_to_multiple_of: int = 1):
        self.pad_token_id = pad_token_id
        self.max_seq_len = max_seq_len
        self.do_padding = do_padding
        self.keep_samples = keep_samples
        self.pad_to_multiple_of = pad_to_multiple_of

    def padded_length(self, longest: int) -> int:
        """The length a batch whose longest row has ``longest`` tokens is padded to."""
        seq_len = max(longest, self.max_seq_len) if self.do_padding else longest
        if self.pad_to_multiple_of > 1:  # fewer distinct shapes: oneDNN's cached kernels are reused
            rounded = -(-seq_len // self.pad_to_multiple_of) * self.pad_to_multiple_of
            seq_len = max(seq_len, min(rounded, self.max_seq_len))
        return seq_len

    def __call__(self, items: Sequence[Item]) -> Batch:
        """Collate ``items`` (all from one dataset) into padded tensors and labels."""
        if not items:
            raise ValueError("cannot collate an empty batch")
        dataset, task_def = items[0].dataset, items[0].task_def
        if any(item.dataset != dataset for item in items):
            raise ValueError(f"a batch mixes datasets: {sorted({item.dataset for item in items})}")
        samples = [item.sample for item in items]
        per_sample = [get_data_format(task_def.data_format).token_rows(s) for s in samples]
        # Every sample of a dataset has the same number of rows (k hypotheses, or 1).
        k = len(per_sample[0])
        rows = [row for sample_rows in per_sample for row in sample_rows]
        seq_len = self.padded_length(max(len(tokens) for tokens, _, _ in rows))
        input_ids = torch.full((len(rows), seq_len), self.pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(rows), seq_len), dtype=torch.long)
        attention_mask = torch.zeros((len(rows), seq_len), dtype=torch.long)
        for row, (tokens, types, mask) in enumerate(rows):
            n = len(tokens)
            input_ids[row, :n] = torch.tensor(tokens, dtype=torch.long)
            token_type_ids[row, :n] = torch.tensor(types, dtype=torch.long)
            attention_mask[row, :n] = torch.tensor(mask, dtype=torch.long)
        soft_labels = None
        if all("softlabel" in s for s in samples):
            soft_labels = torch.tensor([s["softlabel"] for s in samples], dtype=torch.float)
        return Batch(
            dataset=dataset,
            task_def=task_def,
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            labels=get_task_handler(task_def.task_type).prepare_labels(samples, seq_len),
            uids=[s["uid"] for s in samples],
            pairwise_size=k,
            soft_labels=soft_labels,
            samples=samples if self.keep_samples else None,
        )


def apply_word_dropout(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    p: float,
    unk_id: int,
    special_ids: Sequence[int],
    generator: torch.Generator,
) -> torch.Tensor:
    """``--dropout_w``: a copy of ``input_ids`` where real, non-special tokens become UNK with probability ``p``."""
    if p <= 0:
        return input_ids
    draws = torch.rand(input_ids.shape, generator=generator, device=generator.device).to(input_ids.device)
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype, device=input_ids.device))
    drop = (draws < p) & attention_mask.bool() & ~special
    return input_ids.masked_fill(drop, unk_id)


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous share of ``range(n)``; all shares equally long (padded with ``n - 1``)."""
    size = math.ceil(n / world_size)
    return [min(i, n - 1) for i in range(rank * size, (rank + 1) * size)]


def unshard(per_rank: Sequence[Sequence[Any]], n: int) -> list[Any]:
    """Per-sample outputs gathered from every rank (in rank order) → the dataset's order."""
    return [value for shard in per_rank for value in shard][:n]


class LengthSortedSampler(torch.utils.data.Sampler):
    """Visits examples longest first so evaluation batches carry little padding; ``order`` maps back."""

    def __init__(self, lengths: Sequence[int]):
        self.order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def build_eval_loader(
    dataset: TaskDataset,
    batch_size: int,
    collater: Collater,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """A loader over ``dataset`` (or rank ``rank``'s shard of it; see ``unshard``), longest examples first.

    Outputs come in ``loader.sampler.order``; ``restore_order`` puts them back in dataset order.
    """
    source: torch.utils.data.Dataset = dataset
    lengths = dataset.lengths()
    if world_size > 1:
        indices = shard_indices(len(dataset), rank, world_size)
        source = torch.utils.data.Subset(dataset, indices)
        lengths = [lengths[i] for i in indices]
    return torch.utils.data.DataLoader(
        source,
        batch_size=batch_size,
        sampler=LengthSortedSampler(lengths),
        collate_fn=collater,
        num_workers=num_workers,
    )


def restore_order(values: Sequence[Any], order: Sequence[int]) -> list[Any]:
    """Per-sample outputs produced in ``order`` (a permutation) → the dataset's order."""
    restored: list[Any] = [None] * len(order)
    for value, index in zip(values, order):
        restored[index] = value
    return restored

"""The multi-task batch sampler: the paper's Algorithm 1, reshuffled every epoch (SPEC §6).

Every epoch, each task's examples are shuffled and cut into batches, and the batches of all
tasks are shuffled together, so a task comes up in proportion to its number of batches. The
order is a pure function of ``(seed, epoch)``: resuming a run is ``set_epoch(e, start=done)``.

Options, as upstream's flags:
- ``mix_opt > 0``: the auxiliary tasks' batches first (shuffled), then the main task's (the
  first dataset).
- ``ratio r > 0`` with two tasks or more: all main-task batches plus
  ``int(min(r * n_main, n_aux))`` auxiliary batches drawn without replacement from the
  pooled auxiliary batches, a fresh draw every epoch.
- ``sampling="temperature"``: the epoch keeps the total number of batches, but each step's
  task is drawn with probability proportional to ``n_batches ** (1 / T)``; a task whose
  batches run out is reshuffled and reused.
- ``data_sort_on``: examples of a task are sorted by length before cutting (ties in a fresh
  random order), so a batch holds examples of similar length.
- ``bin_on``: examples go into length bins of ``bin_size`` tokens; bin ``k`` (lengths in
  ``(k*bin_size, (k+1)*bin_size]``) is cut into batches of
  ``max(1, int(batch_size * bin_grow_ratio**k))``, so long examples come in smaller batches.
  Either way each example is still used once per epoch, and the batches are shuffled.
- ``group_by_length`` (``train.py``'s default): each task's shuffled examples are taken in
  groups of ``GROUP_BATCHES`` batches, each group sorted by length before it is cut, so a batch
  holds examples of similar length (little padding) while the grouping changes every epoch. A
  task keeps its number of batches, so the task proportions do not change.
- ``max_tokens > 0``: batches (grouped by length as above) are cut when one more example would
  make ``batch size × longest example`` exceed ``max_tokens`` (or the batch would exceed
  ``batch_size``), so short examples come in larger batches; an example longer than the budget
  gets a batch of its own. The number of batches then depends on the epoch's shuffle:
  ``len(sampler)`` is that of the current epoch and ``total_batches(epochs)`` sums a run's.

Distributed (``world_size > 1``): every rank builds the same global order and takes its
contiguous shard of each global batch, so all ranks run the same task at every step and the
shards of a step are disjoint. A global batch whose size is not a multiple of
``world_size`` (including one smaller than ``world_size``) is first padded by repeating its
own examples from the start, so no shard is ever empty; those few examples count twice in
that step. ``batch_size`` is the global batch size (as upstream).

All options but the data and the batch size are one ``SamplerOptions``::

    MultiTaskBatchSampler(train_sets, 32, options=SamplerOptions(mix_opt=1, seed=7))

The keyword arguments of before (``mix_opt=1, seed=7, ...``, also positionally after
``batch_size`` in the old order) are still accepted and go into the options.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from data_utils.errors import MTDNNInputError

if TYPE_CHECKING:
    from mt_dnn.options import DataOptions

SAMPLING_MODES = ("proportional", "temperature")

GlobalBatch = tuple[int, list[int]]

# A length group of ``group_by_length``: this many batches' worth of shuffled examples sorted together.
GROUP_BATCHES = 50


class SizedByLength(Protocol):
    """What the sampler needs from a dataset: the length of every example."""

    def lengths(self) -> list[int]: ...


def shard_batch(indices: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous shard of one global batch, padded by repetition when uneven."""
    if world_size == 1:
        return list(indices)
    padded = list(indices)
    short = -len(padded) % world_size
    padded += [padded[j % len(indices)] for j in range(short)]
    size = len(padded) // world_size
    return padded[rank * size : (rank + 1) * size]


@dataclass(frozen=True)
class SamplerOptions:
    """How batches are cut and tasks mixed: every option of the sampler but the data and the batch size."""

    mix_opt: int = 0
    ratio: float = 0.0
    sampling: str = "proportional"
    temperature: float = 1.0
    seed: int = 2018
    bin_on: bool = False
    bin_size: int = 64
    bin_grow_ratio: float = 0.5
    data_sort_on: bool = False
    group_by_length: bool = False
    max_tokens: int = 0
    rank: int = 0
    world_size: int = 1

    @classmethod
    def of_run(cls, data: DataOptions, seed: int) -> SamplerOptions:
        """The options of a single-process training run: its data options and its seed."""
        return cls(
            mix_opt=data.mix_opt,
            ratio=data.ratio,
            sampling=data.sampling,
            temperature=data.sampling_temperature,
            seed=seed,
            bin_on=data.bin_on,
            bin_size=data.bin_size,
            bin_grow_ratio=data.bin_grow_ratio,
            data_sort_on=data.data_sort_on,
            group_by_length=data.group_by_length,
            max_tokens=data.max_tokens_per_batch,
        )


# In the order of the sampler's keyword arguments before SamplerOptions (positional calls map onto it).
_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(SamplerOptions))


def _merge_options(options: SamplerOptions | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SamplerOptions:
    """``options`` (default ``SamplerOptions()``) with the old-style arguments, if any, replacing its fields."""
    options = SamplerOptions() if options is None else options
    if not isinstance(options, SamplerOptions):
        raise TypeError(f"MultiTaskBatchSampler: options must be a SamplerOptions, got {type(options).__name__}")
    if len(args) > len(_OPTION_NAMES):
        raise TypeError(f"MultiTaskBatchSampler takes at most {2 + len(_OPTION_NAMES)} positional arguments")
    given = dict(zip(_OPTION_NAMES, args))
    for name in kwargs:
        if name not in _OPTION_NAMES:
            raise TypeError(f"MultiTaskBatchSampler got an unexpected keyword argument {name!r}")
        if name in given:
            raise TypeError(f"MultiTaskBatchSampler got multiple values for argument {name!r}")
    given.update(kwargs)
    return dataclasses.replace(options, **given) if given else options


class MultiTaskBatchSampler(torch.utils.data.Sampler):
    """Yields one batch at a time as ``[(dataset_index, sample_index), ...]``, all of one dataset.

    ``MultiTaskBatchSampler(datasets, batch_size, options=SamplerOptions(...))``; the options'
    fields may also be given as keyword arguments (``seed=7``), which replace those of ``options``.
    They read as attributes too (``sampler.seed``).
    """

    def __init__(
        self,
        datasets: Sequence[SizedByLength],
        batch_size: int,
        *legacy_args: Any,
        options: SamplerOptions | None = None,
        **legacy_kwargs: Any,
    ):
        options = _merge_options(options, legacy_args, legacy_kwargs)
        sampling, temperature, ratio = options.sampling, options.temperature, options.ratio
        rank, world_size = options.rank, options.world_size
        if not datasets:
            raise MTDNNInputError("the multi-task sampler needs at least one training dataset")
        if batch_size < 1:
            raise MTDNNInputError(f"--batch_size must be at least 1, got {batch_size}")
        if sampling not in SAMPLING_MODES:
            raise MTDNNInputError(f"--sampling must be one of {list(SAMPLING_MODES)}, got {sampling!r}")
        if sampling == "temperature" and not temperature > 0:
            raise MTDNNInputError(f"--sampling_temperature must be positive, got {temperature}")
        if sampling == "temperature" and (options.mix_opt > 0 or ratio > 0):
            raise MTDNNInputError("--sampling temperature cannot be combined with --mix_opt or --ratio")
        if ratio < 0:
            raise MTDNNInputError(f"--ratio must not be negative, got {ratio}")
        if options.bin_on and (options.bin_size < 1 or not options.bin_grow_ratio > 0):
            raise MTDNNInputError(
                f"--bin_size must be ≥ 1 and --bin_grow_ratio > 0, got {options.bin_size}, {options.bin_grow_ratio}"
            )
        if options.max_tokens < 0:
            raise MTDNNInputError(f"--max_tokens_per_batch must not be negative, got {options.max_tokens}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise MTDNNInputError(f"rank {rank} is not in a world of size {world_size}")
        self._lengths = [np.asarray(dataset.lengths(), dtype=np.int64) for dataset in datasets]
        for index, lengths in enumerate(self._lengths):
            if len(lengths) == 0:
                raise MTDNNInputError(f"training dataset #{index} has no examples")
        self.batch_size = batch_size
        self.options = options
        # (epoch, start) of the next iteration; (epoch, handed out) of the current one.
        self._epoch, self._start = 0, 0
        self._active_epoch, self._handed_out = 0, 0
        self._plans: dict[int, list[GlobalBatch]] = {}  # the latest epochs' plans (token-budget batches only)
        self._length = None if options.max_tokens else self._epoch_length()

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found the usual way: the options' fields (sampler.seed, ...).
        options = self.__dict__.get("options")
        if options is not None and name in _OPTION_NAMES:
            return getattr(options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OPTION_NAMES:
            raise AttributeError(f"sampler.{name} is read-only: build the sampler with other SamplerOptions")
        super().__setattr__(name, value)

    # ---- sizes -------------------------------------------------------------------------
    def _task_batch_sizes(self, task: int) -> list[int]:
        """Sizes of one task's batches in an epoch (independent of the shuffle)."""
        if not self.options.bin_on:
            n = len(self._lengths[task])
            return [min(self.batch_size, n - i) for i in range(0, n, self.batch_size)]
        sizes = []
        for bin_index, members in self._bins(self._lengths[task]).items():
            size = self._bin_batch_size(bin_index)
            sizes += [min(size, len(members) - i) for i in range(0, len(members), size)]
        return sizes

    def _epoch_length(self) -> int:
        counts = [len(self._task_batch_sizes(task)) for task in range(len(self._lengths))]
        if self.options.ratio > 0 and len(counts) > 1:
            return counts[0] + int(min(self.options.ratio * counts[0], sum(counts[1:])))
        return sum(counts)

    def __len__(self) -> int:
        """Number of (global) batches in the current epoch: its number of updates."""
        if self._length is not None:
            return self._length
        return len(self._plan(self._active_epoch))

    def total_batches(self, epochs: int) -> int:
        """Number of (global) batches in epochs ``0 .. epochs - 1``: what the learning-rate schedule spans."""
        if self._length is not None:
            return self._length * epochs
        return sum(len(self._plan(epoch)) for epoch in range(epochs))

    # ---- one task's batches ------------------------------------------------------------
    def _bins(self, lengths: np.ndarray) -> dict[int, np.ndarray]:
        bin_of = np.maximum(0, (lengths - 1) // self.options.bin_size)
        return {int(b): np.flatnonzero(bin_of == b) for b in np.unique(bin_of)}

    def _bin_batch_size(self, bin_index: int) -> int:
        return max(1, int(self.batch_size * self.options.bin_grow_ratio**bin_index))

    def _cut(self, members: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
        """Consecutive batches of ``members``: ``batch_size`` each, or under the ``max_tokens`` budget too."""
        if not self.options.max_tokens:
            return [members[i : i + self.batch_size].tolist() for i in range(0, len(members), self.batch_size)]
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for index in members.tolist():
            length = int(lengths[index])
            too_many = len(current) >= self.batch_size
            if current and (too_many or (len(current) + 1) * max(longest, length) > self.options.max_tokens):
                batches.append(current)
                current, longest = [], 0
            current.append(index)
            longest = max(longest, length)
        return batches + [current] if current else batches

    def _task_batches(self, task: int, rng: np.random.Generator) -> list[list[int]]:
        """One task's examples, shuffled (and grouped by length if asked), cut into batches."""
        lengths = self._lengths[task]
        order = rng.permutation(len(lengths))
        batches: list[list[int]] = []
        if self.options.bin_on:
            bin_of = np.maximum(0, (lengths[order] - 1) // self.options.bin_size)
            for bin_index in np.unique(bin_of):
                members = order[bin_of == bin_index]
                size = self._bin_batch_size(int(bin_index))
                batches += [members[i : i + size].tolist() for i in range(0, len(members), size)]
        else:
            if self.options.data_sort_on:
                # A stable sort of a fresh permutation: equal lengths meet in a new order each epoch.
                order = order[np.argsort(lengths[order], kind="stable")]
                batches = self._cut(order, lengths)
            elif self.options.group_by_length or self.options.max_tokens:
                # Groups of whole batches, so a task keeps its batch count under group_by_length alone.
                group = self.batch_size * GROUP_BATCHES
                for start in range(0, len(order), group):
                    members = order[start : start + group]
                    batches += self._cut(members[np.argsort(lengths[members], kind="stable")], lengths)
            else:
                batches = self._cut(order, lengths)
        return [batches[i] for i in rng.permutation(len(batches))]

    def largest_batches(self) -> list[list[tuple[int, int]]]:
        """Per task, the batch of its longest examples as this sampler cuts it (this rank's share):
        no batch of an epoch pads to more tokens, so none takes more memory in an update."""
        batches = []
        for task, lengths in enumerate(self._lengths):
            if self.options.bin_on:
                candidates = [members[np.argsort(-lengths[members], kind="stable")][: self._bin_batch_size(b)]
                              for b, members in self._bins(lengths).items()]
                indices = max(candidates, key=lambda m: len(m) * int(lengths[m].max())).tolist()
            else:
                longest_first = np.argsort(-lengths, kind="stable")[: self.batch_size]
                indices = self._cut(longest_first, lengths)[0]
            batches.append([(task, i) for i in shard_batch(indices, self.options.rank, self.options.world_size)])
        return batches

    # ---- the epoch's plan --------------------------------------------------------------
    def _plan(self, epoch: int) -> list[GlobalBatch]:
        """``epoch_plan(epoch)``, kept for the latest two epochs (token-budget epochs differ in length)."""
        if epoch not in self._plans:
            if len(self._plans) >= 2:
                del self._plans[min(self._plans)]
            self._plans[epoch] = self.epoch_plan(epoch)
        return self._plans[epoch]

    def epoch_plan(self, epoch: int) -> list[GlobalBatch]:
        """The full global order of an epoch: ``[(dataset_index, [sample indices]), ...]``."""
        rng = np.random.default_rng([self.options.seed, epoch])
        per_task = [self._task_batches(task, rng) for task in range(len(self._lengths))]
        if self.options.sampling == "temperature":
            return self._temperature_plan(per_task, rng)
        main = [(0, batch) for batch in per_task[0]]
        aux = [(task, batch) for task in range(1, len(per_task)) for batch in per_task[task]]
        if self.options.ratio > 0 and aux:
            picks = int(min(self.options.ratio * len(main), len(aux)))
            aux = [aux[i] for i in rng.choice(len(aux), size=picks, replace=False)]
        if self.options.mix_opt > 0:
            return [aux[i] for i in rng.permutation(len(aux))] + main
        plan = main + aux
        return [plan[i] for i in rng.permutation(len(plan))]

    def _temperature_plan(self, per_task: list[list[list[int]]], rng: np.random.Generator) -> list[GlobalBatch]:
        counts = np.array([len(batches) for batches in per_task], dtype=np.float64)
        weights = counts ** (1.0 / self.options.temperature)
        tasks = rng.choice(len(per_task), size=int(counts.sum()), p=weights / weights.sum())
        queues = [list(reversed(batches)) for batches in per_task]
        plan = []
        for task in tasks.tolist():
            if not queues[task]:
                queues[task] = list(reversed(self._task_batches(task, rng)))
            plan.append((task, queues[task].pop()))
        return plan

    # ---- iteration and resume ----------------------------------------------------------
    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make the next iteration epoch ``epoch``'s order, skipping its first ``start`` batches."""
        if not 0 <= start <= len(self):
            raise MTDNNInputError(f"cannot resume at batch {start} of an epoch of {len(self)} batches")
        self._epoch, self._start = epoch, start
        self._active_epoch, self._handed_out = epoch, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, start = self._epoch, self._start
        self._active_epoch, self._handed_out = epoch, start
        plan = self._plan(epoch) if self.options.max_tokens else self.epoch_plan(epoch)
        for task, indices in plan[start:]:
            self._handed_out += 1
            yield [(task, index) for index in shard_batch(indices, self.options.rank, self.options.world_size)]
        # Without an explicit set_epoch the next pass is the next epoch, never a replay.
        self._epoch, self._start = epoch + 1, 0

    def _config(self) -> dict[str, Any]:
        return {
            "seed": self.options.seed,
            "batch_size": self.batch_size,
            "dataset_sizes": [len(lengths) for lengths in self._lengths],
            "mix_opt": self.options.mix_opt,
            "ratio": self.options.ratio,
            "sampling": self.options.sampling,
            "temperature": self.options.temperature,
            "bin_on": self.options.bin_on,
            "bin_size": self.options.bin_size,
            "bin_grow_ratio": self.options.bin_grow_ratio,
            "data_sort_on": self.options.data_sort_on,
            "group_by_length": self.options.group_by_length,
            "max_tokens": self.options.max_tokens,
        }

    def state_dict(self, batches_done: int | None = None) -> dict[str, Any]:
        """JSON-safe resume point: the current epoch and how many of its batches were used.

        A ``DataLoader`` with workers draws batches ahead of the training loop, so the loop
        should pass the number of batches it has consumed in the current epoch; without it
        the count of batches handed out so far is used (exact with ``num_workers=0``).
        """
        epoch = self._active_epoch
        done = self._handed_out if batches_done is None else batches_done
        if done >= len(self):
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "start": done, "config": self._config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``; the data and options must be the ones it was saved with."""
        saved = state.get("config", {})
        for key, value in self._config().items():
            if key in saved and saved[key] != value:
                raise MTDNNInputError(
                    f"cannot resume the sampler: {key} was {saved[key]!r} when the checkpoint was saved, now {value!r}"
                )
        self.set_epoch(int(state["epoch"]), int(state["start"]))

"""MultiTaskBatchSampler: per-epoch reshuffling, resume, mix_opt, ratio, temperature, length grouping, DDP shards."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from data_utils.errors import MTDNNInputError
from mt_dnn.sampler import MultiTaskBatchSampler, shard_batch


class FakeDataset:
    """Only what the sampler reads: one length per example."""

    def __init__(self, lengths: list[int]):
        self._lengths = lengths

    def lengths(self) -> list[int]:
        return list(self._lengths)


def sized(*sizes: int) -> list[FakeDataset]:
    return [FakeDataset([1 + (i * 7) % 50 for i in range(n)]) for n in sizes]


def epoch(sampler: MultiTaskBatchSampler, e: int, start: int = 0) -> list[list[tuple[int, int]]]:
    sampler.set_epoch(e, start)
    return list(sampler)


def test_each_epoch_covers_every_example_once_in_a_new_order():
    datasets = sized(23, 50, 7)
    sampler = MultiTaskBatchSampler(datasets, batch_size=4, seed=5)
    orders = []
    for e in range(3):
        batches = epoch(sampler, e)
        assert len(batches) == len(sampler) == 6 + 13 + 2
        for batch in batches:
            assert len({task for task, _ in batch}) == 1
            assert 1 <= len(batch) <= 4
        pairs = [pair for batch in batches for pair in batch]
        assert sorted(pairs) == sorted((t, i) for t, n in enumerate((23, 50, 7)) for i in range(n))
        orders.append(batches)
    assert orders[0] != orders[1] and orders[1] != orders[2]
    # Examples are reshuffled, not just the batch order: batch contents change between epochs.
    assert {tuple(b) for b in orders[0]} != {tuple(b) for b in orders[1]}
    # The order is a pure function of (seed, epoch).
    again = MultiTaskBatchSampler(datasets, batch_size=4, seed=5)
    assert epoch(again, 1) == orders[1]
    assert epoch(MultiTaskBatchSampler(datasets, batch_size=4, seed=6), 1) != orders[1]


def test_tasks_are_interleaved_not_blocked():
    batches = epoch(MultiTaskBatchSampler(sized(40, 40), batch_size=4, seed=1), 0)
    tasks = [batch[0][0] for batch in batches]
    switches = sum(a != b for a, b in zip(tasks, tasks[1:]))
    assert switches > 4


def test_set_epoch_start_yields_the_tail():
    sampler = MultiTaskBatchSampler(sized(30, 11), batch_size=3, seed=9)
    full = epoch(sampler, 4)
    for start in (0, 1, 7, len(full) - 1, len(full)):
        assert epoch(sampler, 4, start) == full[start:]
    with pytest.raises(MTDNNInputError):
        sampler.set_epoch(4, len(full) + 1)


def test_without_set_epoch_the_next_pass_is_the_next_epoch():
    sampler = MultiTaskBatchSampler(sized(30, 11), batch_size=3, seed=9)
    first, second = list(sampler), list(sampler)
    reference = MultiTaskBatchSampler(sized(30, 11), batch_size=3, seed=9)
    assert first == epoch(reference, 0)
    assert second == epoch(reference, 1)


def test_state_dict_round_trip_resumes_exactly():
    datasets = sized(30, 11, 5)
    sampler = MultiTaskBatchSampler(datasets, batch_size=3, seed=3)
    sampler.set_epoch(2)
    iterator = iter(sampler)
    consumed = [next(iterator) for _ in range(5)]
    state = json.loads(json.dumps(sampler.state_dict()))  # must be JSON-safe
    assert (state["epoch"], state["start"]) == (2, 5)
    rest = list(iterator)

    resumed = MultiTaskBatchSampler(datasets, batch_size=3, seed=3)
    resumed.load_state_dict(state)
    assert list(resumed) == rest
    assert consumed + rest == epoch(MultiTaskBatchSampler(datasets, batch_size=3, seed=3), 2)

    # The training loop's own count wins (workers prefetch ahead of it).
    assert sampler.state_dict(batches_done=3)["start"] == 3
    # A finished epoch resumes at the start of the next one.
    assert (sampler.state_dict()["epoch"], sampler.state_dict()["start"]) == (3, 0)


def test_load_state_dict_rejects_other_data_or_options():
    state = MultiTaskBatchSampler(sized(30, 11), batch_size=3, seed=3).state_dict()
    with pytest.raises(MTDNNInputError, match="batch_size"):
        MultiTaskBatchSampler(sized(30, 11), batch_size=4, seed=3).load_state_dict(state)
    with pytest.raises(MTDNNInputError, match="dataset_sizes"):
        MultiTaskBatchSampler(sized(31, 11), batch_size=3, seed=3).load_state_dict(state)


def test_mix_opt_puts_auxiliary_batches_first():
    sampler = MultiTaskBatchSampler(sized(20, 12, 8), batch_size=4, mix_opt=1, seed=2)
    orders = [epoch(sampler, e) for e in range(2)]
    for batches in orders:
        tasks = [batch[0][0] for batch in batches]
        assert tasks == [t for t in tasks if t != 0] + [0] * 5
        assert set(tasks[:5]) == {1, 2}
        assert sorted(pair for b in batches for pair in b) == sorted(
            (t, i) for t, n in enumerate((20, 12, 8)) for i in range(n)
        )
    assert orders[0][:5] != orders[1][:5]  # auxiliary batches reshuffled every epoch


def test_ratio_draws_auxiliary_batches_without_replacement():
    # main: 10 batches; auxiliary: 20 + 20 = 40 batches; r = 0.5 → 10 + 5 per epoch.
    sampler = MultiTaskBatchSampler(sized(40, 80, 80), batch_size=4, ratio=0.5, seed=11)
    assert len(sampler) == 15
    draws = []
    for e in range(3):
        batches = epoch(sampler, e)
        assert len(batches) == 15
        counts = Counter(batch[0][0] for batch in batches)
        assert counts[0] == 10 and counts[1] + counts[2] == 5
        assert sorted(pair for b in batches if b[0][0] == 0 for pair in b) == [(0, i) for i in range(40)]
        aux_pairs = [pair for b in batches if b[0][0] != 0 for pair in b]
        assert len(aux_pairs) == len(set(aux_pairs)) == 20
        draws.append(set(aux_pairs))
    assert draws[0] != draws[1]  # a fresh draw every epoch
    # The draw is capped by what the auxiliary tasks have.
    assert len(MultiTaskBatchSampler(sized(40, 80, 80), batch_size=4, ratio=10.0)) == 50
    # With mix_opt, the drawn auxiliary batches come first.
    mixed = epoch(MultiTaskBatchSampler(sized(40, 80, 80), batch_size=4, ratio=0.5, mix_opt=1, seed=11), 0)
    assert [b[0][0] == 0 for b in mixed] == [False] * 5 + [True] * 10
    # A single task ignores the ratio.
    assert len(MultiTaskBatchSampler(sized(40), batch_size=4, ratio=0.5)) == 10


def _task_frequencies(temperature: float, epochs: int = 25) -> list[float]:
    sampler = MultiTaskBatchSampler(sized(360, 40), batch_size=4, sampling="temperature", temperature=temperature, seed=4)
    counts, steps = Counter(), 0
    for e in range(epochs):
        batches = epoch(sampler, e)
        assert len(batches) == len(sampler) == 100
        counts.update(batch[0][0] for batch in batches)
        steps += len(batches)
    return [counts[0] / steps, counts[1] / steps]


def test_temperature_sampling_proportions():
    # 90 vs 10 batches: T=1 is proportional; a large T is near uniform.
    proportional = _task_frequencies(1.0)
    assert proportional[0] == pytest.approx(0.9, abs=0.03)
    uniform = _task_frequencies(1e6)
    assert uniform[0] == pytest.approx(0.5, abs=0.04)
    # T=2: sqrt(90) / (sqrt(90) + sqrt(10)) = 0.75.
    assert _task_frequencies(2.0)[0] == pytest.approx(0.75, abs=0.04)


def test_temperature_sampling_is_seeded_and_reuses_exhausted_tasks():
    make = lambda seed: MultiTaskBatchSampler(sized(360, 40), batch_size=4, sampling="temperature", temperature=1e6, seed=seed)
    first = epoch(make(4), 3)
    assert first == epoch(make(4), 3)
    assert first != epoch(make(5), 3)
    small = [pair for batch in first if batch[0][0] == 1 for pair in batch]
    assert len(small) > 40  # task 1 has 40 examples but ~50 steps: reshuffled and reused
    assert set(small) == {(1, i) for i in range(40)}
    with pytest.raises(MTDNNInputError):
        MultiTaskBatchSampler(sized(10, 10), batch_size=2, sampling="temperature", ratio=0.5)


def test_data_sort_on_groups_similar_lengths():
    lengths = [(i * 37) % 101 + 1 for i in range(60)]
    sampler = MultiTaskBatchSampler([FakeDataset(lengths), FakeDataset(lengths[:20])], batch_size=6, data_sort_on=True)
    for e in range(2):
        batches = epoch(sampler, e)
        assert sorted(pair for b in batches for pair in b) == sorted(
            [(0, i) for i in range(60)] + [(1, i) for i in range(20)]
        )
        task0 = sorted(([lengths[i] for _, i in b] for b in batches if b[0][0] == 0), key=min)
        assert all(max(a) <= min(b) for a, b in zip(task0, task0[1:]))
        assert sum(b[0][0] == 0 for b in batches) == 10  # task proportions unchanged


def test_bin_on_batches_stay_within_a_bin_with_shrinking_size():
    lengths = [10] * 20 + [70] * 9 + [200] * 3
    sampler = MultiTaskBatchSampler([FakeDataset(lengths)], batch_size=8, bin_on=True, bin_size=64, bin_grow_ratio=0.5)
    batches = epoch(sampler, 0)
    # bin 0: 20 examples in batches of 8 → 3; bin 1: 9 in 4s → 3; bin 3: 3 in 1s → 3.
    assert len(batches) == len(sampler) == 9
    for batch in batches:
        bins = {(lengths[i] - 1) // 64 for _, i in batch}
        assert len(bins) == 1
        assert len(batch) <= {0: 8, 1: 4, 3: 1}[bins.pop()]
    assert sorted(i for b in batches for _, i in b) == list(range(len(lengths)))


def test_distributed_shards_are_disjoint_and_cover_the_global_batch():
    datasets = sized(32, 17)
    world = 4
    reference = epoch(MultiTaskBatchSampler(datasets, batch_size=8, seed=7), 1)
    per_rank = [epoch(MultiTaskBatchSampler(datasets, batch_size=8, seed=7, rank=r, world_size=world), 1) for r in range(world)]
    assert all(len(batches) == len(reference) for batches in per_rank)
    for step, global_batch in enumerate(reference):
        shards = [batches[step] for batches in per_rank]
        assert all(shard for shard in shards)
        assert len({pair[0] for shard in shards for pair in shard}) == 1  # same task on every rank
        if len(global_batch) % world == 0:
            flat = [pair for shard in shards for pair in shard]
            assert len(flat) == len(set(flat))
            assert sorted(flat) == sorted(global_batch)
        else:
            # Uneven (17 = 8 + 8 + 1): padded by repetition, never an empty shard.
            assert {pair for shard in shards for pair in shard} == set(global_batch)
            assert len({len(shard) for shard in shards}) == 1


def test_shard_batch_pads_small_batches():
    assert [shard_batch([5, 6], r, 4) for r in range(4)] == [[5], [6], [5], [6]]
    assert [shard_batch([1, 2, 3, 4, 5, 6], r, 3) for r in range(3)] == [[1, 2], [3, 4], [5, 6]]
    assert shard_batch([1, 2, 3], 0, 1) == [1, 2, 3]


def test_bad_options_are_rejected():
    with pytest.raises(MTDNNInputError):
        MultiTaskBatchSampler(sized(5), batch_size=0)
    with pytest.raises(MTDNNInputError):
        MultiTaskBatchSampler(sized(5), batch_size=2, sampling="annealed")
    with pytest.raises(MTDNNInputError):
        MultiTaskBatchSampler(sized(5), batch_size=2, rank=2, world_size=2)
    with pytest.raises(MTDNNInputError):
        MultiTaskBatchSampler([], batch_size=2)


def _padding(batches: list[list[tuple[int, int]]], datasets: list[FakeDataset]) -> float:
    """Padded-token fraction of batches padded to their longest example."""
    lengths = [d.lengths() for d in datasets]
    real = sum(lengths[t][i] for batch in batches for t, i in batch)
    padded = sum(len(batch) * max(lengths[t][i] for t, i in batch) for batch in batches)
    return 1 - real / padded


def test_group_by_length_keeps_counts_and_randomness_and_cuts_padding():
    datasets = [FakeDataset([1 + (i * 37) % 120 for i in range(900)]), FakeDataset([5 + (i * 11) % 60 for i in range(333)])]
    plain = MultiTaskBatchSampler(datasets, batch_size=8, seed=3)
    grouped = MultiTaskBatchSampler(datasets, batch_size=8, seed=3, group_by_length=True)
    assert len(grouped) == len(plain) == 113 + 42  # each task keeps its number of batches
    epochs = [epoch(grouped, e) for e in range(2)]
    for batches in epochs:
        pairs = [pair for batch in batches for pair in batch]
        assert sorted(pairs) == sorted((t, i) for t, d in enumerate(datasets) for i in range(len(d.lengths())))
        assert Counter(batch[0][0] for batch in batches) == Counter({0: 113, 1: 42})
    assert {tuple(b) for b in epochs[0]} != {tuple(b) for b in epochs[1]}  # regrouped every epoch
    assert _padding(epochs[0], datasets) < 0.25 * _padding(epoch(plain, 0), datasets)
    # Exact resume: the tail of an epoch from a state dict equals the straight run's.
    grouped.set_epoch(1, start=40)
    state = grouped.state_dict(batches_done=40)
    again = MultiTaskBatchSampler(datasets, batch_size=8, seed=3, group_by_length=True)
    again.load_state_dict(state)
    assert list(again) == epochs[1][40:]


def test_token_budget_batches_fit_and_the_schedule_counts_every_epoch():
    lengths = [2 + (i * 29) % 126 for i in range(500)]
    datasets = [FakeDataset(lengths)]
    sampler = MultiTaskBatchSampler(datasets, batch_size=64, seed=1, max_tokens=512)
    counts = []
    for e in range(3):
        batches = epoch(sampler, e)
        counts.append(len(batches))
        sampler.set_epoch(e)
        assert len(sampler) == len(batches)
        assert sorted(i for batch in batches for _, i in batch) == list(range(500))
        for batch in batches:
            longest = max(lengths[i] for _, i in batch)
            assert len(batch) <= 64 and (len(batch) * longest <= 512 or len(batch) == 1)
        # Short examples come in larger batches than long ones.
        by_length = sorted(batches, key=lambda b: max(lengths[i] for _, i in b))
        assert len(by_length[0]) > 2 * len(by_length[-1])
    assert sampler.total_batches(3) == sum(counts)
    assert MultiTaskBatchSampler(datasets, batch_size=64, seed=1).total_batches(3) == 3 * 8
    # An example longer than the budget gets a batch of its own instead of failing.
    lone = MultiTaskBatchSampler([FakeDataset([300, 10, 10])], batch_size=8, seed=0, max_tokens=100)
    assert sorted(len(b) for b in epoch(lone, 0)) == [1, 2]
    with pytest.raises(MTDNNInputError, match="max_tokens_per_batch"):
        MultiTaskBatchSampler(datasets, batch_size=8, max_tokens=-1)


def test_token_budget_shards_cover_each_global_batch():
    datasets = [FakeDataset([3 + (i * 13) % 90 for i in range(200)])]
    whole = epoch(MultiTaskBatchSampler(datasets, batch_size=32, seed=4, max_tokens=700), 0)
    shards = [epoch(MultiTaskBatchSampler(datasets, batch_size=32, seed=4, max_tokens=700, rank=r, world_size=2), 0)
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(whole)
    for batch, first, second in zip(whole, *shards):
        assert set(first + second) == set(batch)


def test_largest_batches_hold_each_tasks_longest_examples():
    lengths = [[5, 40, 7, 33, 12, 40, 2], [9, 3, 60, 1]]
    datasets = [FakeDataset(x) for x in lengths]
    plain = MultiTaskBatchSampler(datasets, batch_size=3, seed=0).largest_batches()
    assert plain == [[(0, 1), (0, 5), (0, 3)], [(1, 2), (1, 0), (1, 1)]]
    # Under a token budget the batch of the longest rows is cut as an epoch cuts it; no epoch pads more tokens.
    budget = MultiTaskBatchSampler(datasets, batch_size=3, seed=0, max_tokens=80)
    assert budget.largest_batches() == [[(0, 1), (0, 5)], [(1, 2)]]
    most = max(len(b) * max(lengths[b[0][0]][i] for _, i in b) for b in epoch(budget, 0))
    assert most <= max(len(b) * max(lengths[b[0][0]][i] for _, i in b) for b in budget.largest_batches())
    # Each rank probes its own share of the global batch.
    shards = [MultiTaskBatchSampler(datasets, batch_size=3, seed=0, rank=r, world_size=2).largest_batches()
              for r in range(2)]
    assert [shards[0][0], shards[1][0]] == [[(0, 1), (0, 5)], [(0, 3), (0, 1)]]

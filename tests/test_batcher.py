"""TaskDataset loading/validation/truncation, the Collater, word dropout, loaders (real MiniLM-tokenized GLUE rows)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data_utils.errors import MTDNNInputError
from data_utils.task_def import load_task_defs
from mt_dnn.batcher import (
    Collater,
    MultiTaskBatchSampler,
    MultiTaskDataset,
    TaskDataset,
    apply_word_dropout,
    build_eval_loader,
    restore_order,
    shard_indices,
    unshard,
)

ROOT = Path(__file__).resolve().parents[1]
FEATURES = Path(__file__).resolve().parent / "data" / "features"
GLUE = load_task_defs(ROOT / "experiments/glue/glue_task_def.yml")
NER = load_task_defs(ROOT / "experiments/ner/ner_task_def.yml")["ner"]
SQUAD = load_task_defs(ROOT / "experiments/squad/squad_task_def.yml")["squad"]
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103


def raw(name: str) -> list[dict]:
    return [json.loads(line) for line in (FEATURES / name).read_text().splitlines()]


def dataset(name: str, task_def, **kwargs) -> TaskDataset:
    return TaskDataset(FEATURES / f"{name}_train.json", task_def, name, **kwargs)


# ---- loading and truncation -----------------------------------------------------------
def test_loads_every_row_with_string_uids_and_lengths():
    rte = dataset("rte", GLUE["rte"])
    rows = raw("rte_train.json")
    assert len(rte) == 12
    assert [s["uid"] for s in rte.samples] == [str(r["uid"]) for r in rows]
    assert rte.lengths() == [len(r["token_id"]) for r in rows]
    assert rte[3].dataset == "rte" and rte[3].sample["token_id"] == rows[3]["token_id"]
    ner = dataset("ner", NER)
    assert all(s["attention_mask"] == [1] * len(s["token_id"]) for s in ner.samples)  # built when absent
    squad = dataset("squad", SQUAD)
    assert squad.samples[0]["attention_mask"] == raw("squad_train.json")[0]["mask"]


def test_long_training_examples_are_truncated_not_dropped():
    rows = raw("rte_train.json")
    rte = dataset("rte", GLUE["rte"], max_seq_len=64, is_train=True)
    assert len(rte) == len(rows)
    long_rows = [i for i, r in enumerate(rows) if len(r["token_id"]) > 64]
    assert rte.n_truncated == len(long_rows) > 0
    for i, (sample, row) in enumerate(zip(rte.samples, rows)):
        if i in long_rows:
            assert sample["token_id"] == row["token_id"][:63] + [SEP]
            assert sample["type_id"] == row["type_id"][:63] + [1]
            assert sample["attention_mask"] == [1] * 64
            assert rte.lengths()[i] == 64
        else:
            assert sample["token_id"] == row["token_id"]
    # Evaluation data keeps its full length.
    assert dataset("rte", GLUE["rte"], max_seq_len=64).lengths() == [len(r["token_id"]) for r in rows]


def test_truncation_of_tags_hypotheses_and_spans():
    ner = dataset("ner", NER, max_seq_len=6, is_train=True)
    row = raw("ner_train.json")[0]
    assert ner.samples[0]["token_id"] == row["token_id"][:5] + [SEP]
    assert ner.samples[0]["label"] == row["label"][:5] + [NER.labels.index("SEP")]
    assert len(ner.samples[0]["attention_mask"]) == 6

    qnnli = dataset("qnnli", GLUE["qnnli"], max_seq_len=36, is_train=True)
    for sample, original in zip(qnnli.samples, raw("qnnli_train.json")):
        for tokens, types, mask, full in zip(sample["token_id"], sample["type_id"], sample["attention_mask"], original["token_id"]):
            assert len(tokens) == len(types) == len(mask) == min(36, len(full))
            assert tokens[-1] == SEP and tokens[:-1] == full[: len(tokens) - 1]

    # The answer (tokens 12..14) survives a cut at 17 tokens but not one at 10: then it points at [CLS].
    assert dataset("squad", SQUAD, max_seq_len=17, is_train=True).samples[0]["label"] == [12, 14, 0]
    cut = dataset("squad", SQUAD, max_seq_len=10, is_train=True).samples[0]
    assert cut["label"] == [0, 0, 0] and len(cut["token_id"]) == len(cut["mask"]) == 10


# ---- bad input: one line naming file and line ----------------------------------------
def write(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "rte_train.json"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def good_row(**changes) -> dict:
    row = {"uid": "1", "label": 1, "token_id": [101, 7, 102], "type_id": [0, 0, 0], "attention_mask": [1, 1, 1]}
    row.update(changes)
    return row


def drop(key: str) -> dict:
    row = good_row()
    del row[key]
    return row


@pytest.mark.parametrize(
    "task,bad,needle",
    [
        ("rte", "{not json", "malformed JSON"),
        ("rte", drop("label"), "missing key 'label'"),
        ("rte", drop("token_id"), "missing key 'token_id'"),
        ("rte", good_row(label=2), "not a class id in [0, 2)"),
        ("rte", good_row(label="entailment"), "not a class id"),
        ("rte", good_row(type_id=[0, 0]), "token_id has 3 entries but type_id has 2"),
        ("rte", good_row(attention_mask=[1]), "attention_mask"),
        ("rte", good_row(token_id=[101, "x", 102]), "integers"),
        ("rte", good_row(softlabel=["a"]), "softlabel"),
        ("rte", "[1, 2]", "one JSON object"),
        ("stsb", good_row(label="high"), "not a finite number"),
        ("ner", good_row(label=[10, 12, 11]), "tag id 12 is not in [0, 12)"),
        ("ner", good_row(label=[10, 11]), "one tag id per token"),
        ("squad", good_row(label=[1, 5, 0], mask=[1, 1, 1]), "not inside the 3 tokens"),
        ("qnnli", good_row(token_id=[[101, 102], [101, 102]], type_id=[[0, 0], [0, 0]], attention_mask=[[1, 1], [1, 1]], label=2), "hypotheses"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, task, bad, needle):
    task_def = {"ner": NER, "squad": SQUAD}.get(task) or GLUE[task]
    ok = good_row(label=[10, 0, 11]) if task == "ner" else good_row()
    if task == "squad":
        ok = good_row(label=[1, 1, 0])
    if task == "qnnli":
        ok = good_row(token_id=[[101, 102], [101, 102]], type_id=[[0, 0], [0, 0]], attention_mask=[[1, 1], [1, 1]], label=0)
    path = write(tmp_path, [ok, ok, bad, ok])
    with pytest.raises(MTDNNInputError) as info:
        TaskDataset(path, task_def, task, is_train=True, max_seq_len=16)
    message = str(info.value)
    assert message.startswith(f"{path}:3: ")
    assert needle in message and "\n" not in message


def test_file_level_errors(tmp_path):
    with pytest.raises(MTDNNInputError, match="file not found"):
        TaskDataset(tmp_path / "missing.json", GLUE["rte"], "rte")
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(MTDNNInputError, match=f"{empty}: no examples"):
        TaskDataset(empty, GLUE["rte"], "rte")
    mixed = write(tmp_path, [good_row(softlabel=[0.2, 0.8]), good_row()])
    with pytest.raises(MTDNNInputError, match=f"{mixed}:2: 'softlabel'"):
        TaskDataset(mixed, GLUE["rte"], "rte")
    two, three = [[101, 102]] * 2, [[101, 102]] * 3
    uneven = write(tmp_path, [good_row(token_id=two, type_id=two, attention_mask=two, label=0),
                              good_row(token_id=three, type_id=three, attention_mask=three, label=0)])
    with pytest.raises(MTDNNInputError, match=f"{uneven}:2: 3 hypotheses where line 1 has 2"):
        TaskDataset(uneven, GLUE["qnnli"], "qnnli")


# ---- collater ------------------------------------------------------------------------
def test_dynamic_padding_and_fixed_padding():
    rte = dataset("rte", GLUE["rte"])
    items = [rte[i] for i in (0, 2, 5)]  # lengths 21, 59, 51
    batch = Collater(pad_token_id=7, max_seq_len=128)(items)
    assert batch.dataset == "rte" and batch.task_def is GLUE["rte"]
    assert batch.input_ids.shape == batch.token_type_ids.shape == batch.attention_mask.shape == (3, 59)
    for row, item in enumerate(items):
        n = len(item.sample["token_id"])
        assert batch.input_ids[row, :n].tolist() == item.sample["token_id"]
        assert batch.input_ids[row, n:].eq(7).all() and batch.attention_mask[row, n:].eq(0).all()
        assert batch.token_type_ids[row, :n].tolist() == item.sample["type_id"]
        assert batch.token_type_ids[row, n:].eq(0).all() and batch.attention_mask[row, :n].eq(1).all()
    assert batch.labels.dtype == torch.long and batch.labels.tolist() == [s.sample["label"] for s in items]
    assert batch.uids == ["0", "2", "5"] and batch.batch_size == 3 and batch.pairwise_size == 1
    assert batch.samples is None and batch.soft_labels is None

    padded = Collater(pad_token_id=0, max_seq_len=128, do_padding=True, keep_samples=True)(items)
    assert padded.input_ids.shape == (3, 128) and padded.samples == [i.sample for i in items]
    # An evaluation example longer than max_seq_len is padded to its own length, never cut.
    assert Collater(0, 32, do_padding=True)(items).input_ids.shape == (3, 59)


def test_pad_to_multiple_of_rounds_the_length_up_to_max_seq_len():
    rte = dataset("rte", GLUE["rte"])
    items = [rte[i] for i in (0, 2, 5)]  # lengths 21, 59, 51
    plain = Collater(7, 128)(items)
    batch = Collater(7, 128, pad_to_multiple_of=8)(items)
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.token_type_ids.shape == (3, 64)
    assert torch.equal(batch.input_ids[:, :59], plain.input_ids) and batch.input_ids[:, 59:].eq(7).all()
    assert torch.equal(batch.attention_mask[:, :59], plain.attention_mask) and batch.attention_mask[:, 59:].eq(0).all()
    assert Collater(7, 60, pad_to_multiple_of=8)(items).input_ids.shape == (3, 60)  # capped at max_seq_len
    assert Collater(7, 32, pad_to_multiple_of=8)(items).input_ids.shape == (3, 59)  # never cut
    assert Collater(7, 128, pad_to_multiple_of=1)(items).input_ids.shape == (3, 59)
    ner = dataset("ner", NER)
    tagged = Collater(0, 512, pad_to_multiple_of=16)([ner[i] for i in range(4)])
    assert tagged.labels.shape == tagged.input_ids.shape and tagged.input_ids.shape[1] % 16 == 0


def test_regression_labels_and_soft_labels(tmp_path):
    stsb = dataset("stsb", GLUE["stsb"])
    batch = Collater(0, 128)([stsb[i] for i in range(3)])
    assert batch.labels.dtype == torch.float32
    assert batch.labels.tolist() == pytest.approx([r["label"] for r in raw("stsb_train.json")[:3]])
    path = write(tmp_path, [good_row(softlabel=[0.25, 0.75]), good_row(label=0, softlabel=[0.9, 0.1])])
    soft = TaskDataset(path, GLUE["rte"], "rte")
    batch = Collater(0, 16)([soft[0], soft[1]])
    assert batch.soft_labels.tolist() == [[0.25, 0.75], pytest.approx([0.9, 0.1])]


def test_multi_hypothesis_rows_are_flattened_sample_major():
    qnnli = dataset("qnnli", GLUE["qnnli"])
    items = [qnnli[i] for i in range(3)]
    batch = Collater(0, 512)(items)
    assert batch.pairwise_size == 2 and batch.batch_size == 3
    assert batch.input_ids.shape[0] == 6
    for i, item in enumerate(items):
        for h in range(2):
            tokens = item.sample["token_id"][h]
            assert batch.input_ids[2 * i + h, : len(tokens)].tolist() == tokens
            assert batch.attention_mask[2 * i + h].sum().item() == len(tokens)
    assert batch.labels.tolist() == [item.sample["olabel"].index(1) for item in items]


def test_sequence_labels_are_padded_with_minus_one():
    ner = dataset("ner", NER)
    items = [ner[i] for i in range(4)]
    batch = Collater(0, 512)(items)
    width = max(len(i.sample["token_id"]) for i in items)
    assert batch.labels.shape == (4, width)
    for row, item in enumerate(items):
        tags = item.sample["label"]
        assert batch.labels[row, : len(tags)].tolist() == tags
        assert batch.labels[row, len(tags) :].eq(-1).all()
    assert "X" in [NER.labels[t] for t in items[2].sample["label"]]  # the date splits into word pieces


def test_span_labels():
    squad = dataset("squad", SQUAD)
    batch = Collater(0, 512)([squad[0]])
    assert batch.labels.tolist() == [[12, 14, 0]]
    assert batch.to("cpu").labels.tolist() == [[12, 14, 0]]


def test_collater_refuses_mixed_datasets():
    with pytest.raises(ValueError, match="mixes datasets"):
        Collater(0, 128)([dataset("rte", GLUE["rte"])[0], dataset("cola", GLUE["cola"])[0]])


# ---- word dropout --------------------------------------------------------------------
def test_word_dropout_spares_special_tokens_and_padding_and_is_reproducible():
    rte = dataset("rte", GLUE["rte"])
    batch = Collater(PAD, 128)([rte[i] for i in range(6)])
    special = [PAD, UNK, CLS, SEP, MASK]
    real = batch.attention_mask.bool() & ~torch.isin(batch.input_ids, torch.tensor(special))

    everything = apply_word_dropout(batch.input_ids, batch.attention_mask, 1.0, UNK, special, torch.Generator().manual_seed(0))
    assert everything[real].eq(UNK).all()
    assert torch.equal(everything[~real], batch.input_ids[~real])

    generator = torch.Generator().manual_seed(123)
    state = generator.get_state()
    first = apply_word_dropout(batch.input_ids, batch.attention_mask, 0.3, UNK, special, generator)
    dropped = (first != batch.input_ids).sum().item()
    assert 0.15 * real.sum().item() < dropped < 0.45 * real.sum().item()
    assert torch.equal(first[~real], batch.input_ids[~real])
    generator.set_state(state)
    assert torch.equal(apply_word_dropout(batch.input_ids, batch.attention_mask, 0.3, UNK, special, generator), first)
    assert not torch.equal(apply_word_dropout(batch.input_ids, batch.attention_mask, 0.3, UNK, special, generator), first)
    assert apply_word_dropout(batch.input_ids, batch.attention_mask, 0.0, UNK, special, generator) is batch.input_ids


# ---- loaders -------------------------------------------------------------------------
def test_training_loader_with_the_multi_task_sampler():
    sets = [dataset("rte", GLUE["rte"], max_seq_len=64, is_train=True), dataset("cola", GLUE["cola"], is_train=True),
            dataset("qnnli", GLUE["qnnli"], is_train=True)]
    sampler = MultiTaskBatchSampler(sets, batch_size=4, seed=1)
    loader = torch.utils.data.DataLoader(MultiTaskDataset(sets), batch_sampler=sampler, collate_fn=Collater(0, 64), num_workers=1)
    seen = {name: [] for name in ("rte", "cola", "qnnli")}
    for batch in loader:
        seen[batch.dataset] += batch.uids
        assert batch.input_ids.shape[1] <= 64 or batch.dataset == "qnnli"
    assert sorted(seen["rte"]) == sorted(s["uid"] for s in sets[0].samples)
    assert sorted(seen["cola"]) == [str(i) for i in range(8)]
    assert len(seen["qnnli"]) == 6


def test_eval_loader_sorts_by_length_and_restore_order_undoes_it():
    rte = dataset("rte", GLUE["rte"])
    loader = build_eval_loader(rte, 5, Collater(0, 512, keep_samples=True))
    batches = list(loader)
    lengths = [int(n) for b in batches for n in b.attention_mask.sum(dim=1)]
    assert lengths == sorted(lengths, reverse=True)  # longest first: little padding per batch
    uids = [u for b in batches for u in b.uids]
    assert uids != [s["uid"] for s in rte.samples]
    assert restore_order(uids, loader.sampler.order) == [s["uid"] for s in rte.samples]
    for world in (1, 3, 5, 13):
        shards = []
        for r in range(world):
            shard_loader = build_eval_loader(rte, 2, Collater(0, 512), r, world)
            shards.append(restore_order([u for b in shard_loader for u in b.uids], shard_loader.sampler.order))
        assert len({len(s) for s in shards}) == 1  # every rank runs the same number of batches
        assert unshard(shards, len(rte)) == [s["uid"] for s in rte.samples]
    assert shard_indices(5, 1, 2) == [3, 4, 4]

"""Safety net for a refactor of ``mt_dnn/`` and ``train.py``: behaviour that must not move.

- the fp16 update unscales the gradients before it clips them;
- the SAN premise/hypothesis cut, position by position (type ids, and the first separator);
- ``--encode_mode`` writes the encoder's own hidden states, cut to each row's length;
- an unlabelled ``{name}_test.json`` is scored without metrics, in file order, with a GLUE TSV;
- the sampler flags (``--mix_opt``, ``--ratio``, ``--sampling temperature``, ``--bin_on``,
  ``--data_sort_on``) reach the sampler and give the documented epoch;
- resuming a ``--bf16`` or ``--fp16`` run is bit-exact, grad-scaler state included.

Everything runs on the tiny random BERT of ``conftest.py`` on CPU.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_train import (
    assert_same_weights,
    keeping_resume_states,
    load_checkpoint,
    resume_state,
    strict_json,
    train_args,
)

from module.san import split_premise_hypothesis
from mt_dnn.model import MTDNNModel
from mt_dnn.options import AdvOptions, TrainOptions
from train import main

CPU = torch.device("cpu")
MAX_SEQ_LEN = 64  # what train_args passes as --max_seq_len


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def logged_tasks(output_dir: Path) -> list[str]:
    """The task of every update, from the training log (run with ``--log_per_updates 1``)."""
    tasks = []
    for line in (output_dir / "mt-dnn-train.log").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if "task" in words and "update" in words:
            at = words.index("task")
            if words[at + 2] == "update":
                tasks.append(words[at + 1])
    return tasks


def cpu_fp16_autocast_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            out = torch.nn.functional.linear(torch.ones(1, 3), torch.ones(2, 3))
        return out.dtype == torch.float16
    except (RuntimeError, ValueError):
        return False


needs_cpu_fp16 = pytest.mark.skipif(not cpu_fp16_autocast_works(), reason="no float16 autocast on CPU in this torch")


# ---- 1. fp16: unscale, then clip -------------------------------------------------------------
@needs_cpu_fp16
def test_fp16_update_clips_the_unscaled_gradient(task_defs, make_batch, build_network):
    # Plain SGD (no momentum, no decay, no warmup): the update is exactly -lr · clipped gradient.
    lr, clip = 1.0, 0.01
    rte = dataclasses.replace(task_defs["rte"], dropout_p=0.0)
    batch = make_batch("rte", 4, task_def=rte)
    network = build_network([rte], seed=0, bert_dropout_p=0.0)
    reference = build_network([rte], seed=0, bert_dropout_p=0.0)
    options = TrainOptions(
        fp16=True, optimizer="sgd", momentum=0.0, weight_decay=0.0, learning_rate=lr, warmup=0.0,
        global_grad_clipping=clip, grad_clipping=0.0,
    )
    model = MTDNNModel(network, [rte], options, AdvOptions(), 10, CPU)
    scale = model.scaler.get_scale()
    assert model.scaler.is_enabled() and scale > 1  # a scale that matters
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    loss = model.update(batch)
    assert loss is not None and math.isfinite(loss) and model.updates == 1
    assert model.scaler.get_scale() == scale, "the fp16 step overflowed and was skipped: pick other rows"

    # The same loss under the same autocast, without any scaler, clipped by hand.
    reference.train()
    with torch.autocast("cpu", dtype=torch.float16):
        logits = reference(batch.input_ids, batch.token_type_ids, batch.attention_mask, 0)
    ref_loss = F.cross_entropy(logits.float(), batch.labels)
    assert ref_loss.item() == pytest.approx(loss, rel=1e-4)
    ref_loss.backward()
    names = [name for name, p in reference.named_parameters() if p.grad is not None]
    grad = torch.cat([dict(reference.named_parameters())[n].grad.float().flatten() for n in names])
    raw_norm = float(grad.norm())
    assert raw_norm > 10 * clip, "clipping must be active for this test to mean anything"
    expected = -lr * grad * (clip / (raw_norm + 1e-6))

    params = dict(network.named_parameters())
    delta = torch.cat([(params[n].detach() - before[n]).flatten() for n in names])
    untouched = [n for n in before if n not in names]
    assert all(torch.equal(params[n].detach(), before[n]) for n in untouched)
    # The step has the clipped length (a clip of scaled gradients would be ~65536× shorter) ...
    assert float(delta.norm()) == pytest.approx(lr * clip, rel=1e-3)
    # ... and the direction of the true gradient, element by element.
    torch.testing.assert_close(delta, expected, rtol=1e-2, atol=1e-5)
    assert float((delta - expected).norm() / expected.norm()) < 1e-2


# ---- 2. SAN premise / hypothesis split -------------------------------------------------------
def numbered_hidden(batch: int, length: int, width: int = 3) -> torch.Tensor:
    """hidden[b, t, d] = 1000·b + 10·t + d + 1: every value names its row, position and feature (none is 0)."""
    b = torch.arange(batch).view(-1, 1, 1)
    t = torch.arange(length).view(1, -1, 1)
    d = torch.arange(width).view(1, 1, -1)
    return (1000 * b + 10 * t + d + 1).float()


def expected_segment(hidden: torch.Tensor, spans: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows hidden[b, start:stop] left-aligned in a zero tensor as wide as the longest span, and its pad mask."""
    width = max(stop - start for start, stop in spans)
    out = torch.zeros(hidden.size(0), width, hidden.size(2))
    mask = torch.ones(hidden.size(0), width, dtype=torch.bool)
    for row, (start, stop) in enumerate(spans):
        out[row, : stop - start] = hidden[row, start:stop]
        mask[row, : stop - start] = False
    return out, mask


def assert_split(result, hidden, premise_spans, hypothesis_spans) -> None:
    premise, premise_mask, hypothesis, hypothesis_mask = result
    want_p, want_p_mask = expected_segment(hidden, premise_spans)
    want_h, want_h_mask = expected_segment(hidden, hypothesis_spans)
    assert premise_mask.dtype == torch.bool and hypothesis_mask.dtype == torch.bool
    assert premise_mask.tolist() == want_p_mask.tolist()
    assert hypothesis_mask.tolist() == want_h_mask.tolist()
    assert torch.equal(premise, want_p), (premise[..., 0], want_p[..., 0])
    assert torch.equal(hypothesis, want_h), (hypothesis[..., 0], want_h[..., 0])


def test_split_by_type_ids_is_exact_and_ignores_padding():
    # row 0: [CLS] p [SEP] | h [SEP] pad pad  -> premise 0..2, hypothesis 3..4
    # row 1: [CLS] [SEP] | h h h [SEP] pad    -> premise 0..1, hypothesis 2..5
    # row 2: a padded position with type id 1 must not move the cut (premise 0..3, hypothesis 4..6)
    type_ids = torch.tensor([
        [0, 0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 1, 1],
    ])
    attention = torch.tensor([
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1],
    ])
    hidden = numbered_hidden(3, 7)
    result = split_premise_hypothesis(hidden, type_ids, attention)
    assert_split(result, hidden, [(0, 3), (0, 2), (0, 4)], [(3, 5), (2, 6), (4, 7)])

    padded_types = type_ids.clone()
    padded_types[0, 5:] = 1  # type id 1 on padding (some tokenizers pad with the last segment id)
    assert_split(split_premise_hypothesis(hidden, padded_types, attention), hidden,
                 [(0, 3), (0, 2), (0, 4)], [(3, 5), (2, 6), (4, 7)])


def test_split_without_type_ids_cuts_after_the_first_separator():
    sep, pad = 2, 1
    # <s> a b </s> </s> c </s> pad pad -> premise <s> a b </s> (0..3), hypothesis </s> c </s> (4..6)
    # <s> a </s> </s> b c d e </s>     -> premise 0..2, hypothesis 3..8
    # <s> a b c pad ... (no separator) -> the premise stops one short of the end: 0..2, hypothesis 3..3
    input_ids = torch.tensor([
        [0, 11, 12, sep, sep, 13, sep, pad, pad],
        [0, 11, sep, sep, 12, 13, 14, 15, sep],
        [0, 11, 12, 13, pad, pad, pad, pad, pad],
    ])
    attention = (input_ids != pad).long()
    hidden = numbered_hidden(3, 9)
    result = split_premise_hypothesis(hidden, torch.zeros_like(input_ids), attention, input_ids=input_ids, sep_token_id=sep)
    assert_split(result, hidden, [(0, 4), (0, 3), (0, 3)], [(4, 7), (3, 9), (3, 4)])

    # A separator id on a padded position is not a separator.
    input_ids[2, 5] = sep
    result = split_premise_hypothesis(hidden, torch.zeros_like(input_ids), attention, input_ids=input_ids, sep_token_id=sep)
    assert_split(result, hidden, [(0, 4), (0, 3), (0, 3)], [(4, 7), (3, 9), (3, 4)])


def test_split_mixes_typed_and_untyped_rows_per_row():
    sep = 102
    input_ids = torch.tensor([
        [101, 7, 8, sep, 9, sep],      # typed: type ids decide (premise 0..4)
        [101, 7, sep, 8, 9, sep],      # untyped: first separator decides (premise 0..2)
    ])
    type_ids = torch.tensor([[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    attention = torch.ones_like(input_ids)
    hidden = numbered_hidden(2, 6)
    result = split_premise_hypothesis(hidden, type_ids, attention, input_ids=input_ids, sep_token_id=sep)
    assert_split(result, hidden, [(0, 5), (0, 3)], [(5, 6), (3, 6)])


# ---- 3. --encode_mode ------------------------------------------------------------------------
def test_encode_mode_writes_the_encoders_hidden_states(tiny_model_dir, features_dir, tmp_path):
    from transformers import AutoModel

    data = tmp_path / "data"
    data.mkdir()
    rte_rows = read_rows(features_dir / "rte_dev.json")
    # rte has a test file (it is encoded, not dev); stsb has only a dev file.
    test_rows = [{**rte_rows[i], "uid": f"t{i}"} for i in (7, 0, 10, 3, 5)]
    write_rows(data / "rte_dev.json", rte_rows)
    write_rows(data / "rte_test.json", test_rows)
    shutil.copy(features_dir / "stsb_dev.json", data / "stsb_dev.json")
    out = tmp_path / "out"
    main(train_args(tiny_model_dir, data, out, "--encode_mode", datasets="rte,stsb"))

    encoder = AutoModel.from_pretrained(tiny_model_dir).eval()
    for name, rows in (("rte", test_rows), ("stsb", read_rows(data / "stsb_dev.json"))):
        saved = torch.load(out / f"{name}_encoding.pt", map_location="cpu", weights_only=True)
        assert set(saved) >= {"uids", "encodings"}
        assert len(saved["uids"]) == len(saved["encodings"]) == len(rows)
        assert sorted(saved["uids"]) == sorted(row["uid"] for row in rows)
        by_uid = {row["uid"]: row for row in rows}
        for uid, encoding in zip(saved["uids"], saved["encodings"]):
            row = by_uid[uid]
            with torch.no_grad():
                states = encoder(
                    input_ids=torch.tensor([row["token_id"]]),
                    token_type_ids=torch.tensor([row["type_id"]]),
                    attention_mask=torch.tensor([row["attention_mask"]]),
                ).last_hidden_state[0]
            assert encoding.dtype == torch.float32
            assert encoding.shape == (sum(row["attention_mask"]), 32), uid
            torch.testing.assert_close(encoding, states[: sum(row["attention_mask"])], atol=1e-5, rtol=1e-5)
    # Encoding trains nothing and saves no model.
    assert not list(out.glob("model_*.pt"))


# ---- 4. the test split -----------------------------------------------------------------------
def test_test_split_is_scored_without_metrics_in_file_order(tiny_model_dir, features_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(features_dir / "rte_train.json", data / "rte_train.json")
    shutil.copy(features_dir / "rte_dev.json", data / "rte_dev.json")
    dev_rows = read_rows(data / "rte_dev.json")
    # Unlabelled test rows (label 0 as a placeholder), neither in length nor in uid order.
    picks = [(7, "40"), (2, "12"), (10, "33"), (0, "5"), (5, "27"), (3, "18")]
    write_rows(data / "rte_test.json", [{**dev_rows[i], "uid": uid, "label": 0} for i, uid in picks])
    out = tmp_path / "out"
    main(train_args(tiny_model_dir, data, out, "--epochs", "1", "--glue_format_on", datasets="rte"))

    dev = strict_json(out / "rte_dev_scores_epoch_0.json")
    test = strict_json(out / "rte_test_scores_epoch_0.json")
    assert set(dev["metrics"]) == {"ACC"}
    assert test["metrics"] == {}
    assert test["uids"] == [uid for _, uid in picks]
    assert len(test["predictions"]) == len(picks) and len(test["scores"]) == 2 * len(picks)
    # The same rows, scored by the same model: the test scores are the dev scores of those rows.
    for position, (row, _) in enumerate(picks):
        assert test["scores"][2 * position : 2 * position + 2] == pytest.approx(dev["scores"][2 * row : 2 * row + 2], abs=1e-5)
        assert test["predictions"][position] == dev["predictions"][row]

    tsv = (out / "rte_test_scores_epoch_0.tsv").read_text(encoding="utf-8").splitlines()
    assert tsv[0] == "index\tprediction"
    assert len(tsv) == 1 + len(picks)
    label_names = ["not_entailment", "entailment"]
    expected_rows = sorted(zip(test["uids"], test["predictions"]), key=lambda pair: int(pair[0]))
    assert [line.split("\t") for line in tsv[1:]] == [[uid, label_names[p]] for uid, p in expected_rows]
    assert (out / "rte_dev_scores_epoch_0.tsv").is_file()


# ---- 5. sampler flags through train.py --------------------------------------------------------
def binned_batches(lengths: list[int], batch_size: int, bin_size: int, grow: float) -> int:
    """Batches of one task under --bin_on: bin k holds lengths in (k·bin_size, (k+1)·bin_size]."""
    per_bin = Counter(max(0, (n - 1) // bin_size) for n in lengths)
    total = 0
    for k, members in per_bin.items():
        size = max(1, int(batch_size * grow**k))
        total += math.ceil(members / size)
    return total


def one_epoch(tiny_model_dir, features_dir, out, datasets, *flags) -> dict:
    main(train_args(tiny_model_dir, features_dir, out, "--epochs", "1", "--log_per_updates", "1", *flags, datasets=datasets))
    assert strict_json(out / f"{datasets.split(',')[0]}_dev_scores_epoch_0.json")["predictions"]
    return load_checkpoint(out / "last.pt")  # the resumable state, with the sampler's


def test_mix_opt_runs_auxiliary_batches_first(tiny_model_dir, features_dir, tmp_path):
    checkpoint = one_epoch(tiny_model_dir, features_dir, tmp_path, "rte,stsb", "--mix_opt", "1")
    assert checkpoint["sampler"]["config"]["mix_opt"] == 1
    # rte (main): 12 rows → 3 batches of 4; stsb: 6 rows → 2 batches.
    assert checkpoint["updates"] == 5
    assert logged_tasks(tmp_path) == ["stsb", "stsb", "rte", "rte", "rte"]


@pytest.mark.parametrize("ratio", [0.5, 3.0])
def test_ratio_keeps_every_main_batch_and_a_share_of_auxiliary_ones(ratio, tiny_model_dir, features_dir, tmp_path):
    # Batch size 2: stsb (main) has 3 batches, rte (auxiliary) 6.
    n_main, n_aux = 3, 6
    expected_aux = int(min(ratio * n_main, n_aux))  # 1 for 0.5, capped at 6 for 3.0
    checkpoint = one_epoch(
        tiny_model_dir, features_dir, tmp_path, "stsb,rte", "--ratio", str(ratio), "--batch_size", "2"
    )
    assert checkpoint["sampler"]["config"]["ratio"] == ratio
    assert checkpoint["updates"] == n_main + expected_aux
    assert Counter(logged_tasks(tmp_path)) == {"stsb": n_main, "rte": expected_aux}
    log = (tmp_path / "mt-dnn-train.log").read_text(encoding="utf-8")
    assert f"{n_main + expected_aux} batches per epoch" in log


def test_temperature_sampling_keeps_the_epoch_length(tiny_model_dir, features_dir, tmp_path):
    checkpoint = one_epoch(
        tiny_model_dir, features_dir, tmp_path, "rte,stsb", "--sampling", "temperature", "--sampling_temperature", "2"
    )
    config = checkpoint["sampler"]["config"]
    assert config["sampling"] == "temperature" and config["temperature"] == 2.0
    assert checkpoint["updates"] == 5
    tasks = logged_tasks(tmp_path)
    assert len(tasks) == 5 and set(tasks) <= {"rte", "stsb"}
    assert (checkpoint["sampler"]["epoch"], checkpoint["sampler"]["start"]) == (1, 0)


def test_bin_on_cuts_long_examples_into_smaller_batches(tiny_model_dir, features_dir, tmp_path):
    bin_size, grow = 32, 0.5
    checkpoint = one_epoch(
        tiny_model_dir, features_dir, tmp_path, "rte,stsb", "--bin_on", "--bin_size", str(bin_size),
        "--bin_grow_ratio", str(grow),
    )
    config = checkpoint["sampler"]["config"]
    assert config["bin_on"] is True and config["bin_size"] == bin_size and config["bin_grow_ratio"] == grow
    # Training rows are truncated to --max_seq_len before they are binned.
    expected = {
        name: binned_batches([min(len(r["token_id"]), MAX_SEQ_LEN) for r in read_rows(features_dir / f"{name}_train.json")],
                             4, bin_size, grow)
        for name in ("rte", "stsb")
    }
    assert expected == {"rte": 7, "stsb": 2}  # without --bin_on: 3 and 2
    assert checkpoint["updates"] == sum(expected.values())
    assert Counter(logged_tasks(tmp_path)) == expected


def test_data_sort_on_runs_and_reaches_the_sampler(tiny_model_dir, features_dir, tmp_path):
    checkpoint = one_epoch(tiny_model_dir, features_dir, tmp_path, "rte,stsb", "--data_sort_on")
    assert checkpoint["sampler"]["config"]["data_sort_on"] is True
    assert checkpoint["updates"] == 5
    assert Counter(logged_tasks(tmp_path)) == {"rte": 3, "stsb": 2}


# ---- 6. bit-exact resume in mixed precision ---------------------------------------------------
@pytest.mark.parametrize("precision", ["--bf16", pytest.param("--fp16", marks=needs_cpu_fp16)])
def test_mixed_precision_resume_is_bit_identical(precision, tiny_model_dir, features_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    with keeping_resume_states():
        main(train_args(tiny_model_dir, features_dir, straight, precision))
    epoch_0 = resume_state(straight, "model_0.pt")
    main(train_args(tiny_model_dir, features_dir, resumed, precision, "--resume", "--model_ckpt", str(epoch_0)))

    first, a, b = (load_checkpoint(p) for p in (epoch_0, straight / "last.pt", resumed / "last.pt"))
    assert a["config"]["train"][precision[2:]] is True
    assert a["updates"] == b["updates"] == 10
    # Training moved the weights in the second epoch (so equality below is not trivial).
    assert not all(torch.equal(first["state"][k], v) for k, v in a["state"].items())
    assert_same_weights(straight / "model_1.pt", resumed / "model_1.pt")
    assert a["scheduler"] == b["scheduler"]
    for name in ("rte_dev_scores_epoch_1.json", "stsb_dev_scores_epoch_1.json"):
        assert (straight / name).read_text() == (resumed / name).read_text()
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for index, slots in state_a.items():
        for slot, value in slots.items():
            other = state_b[index][slot]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, (index, slot)
    if precision == "--fp16":
        assert a["scaler"] and a["scaler"]["scale"] > 0
        assert a["scaler"] == b["scaler"]
        assert a["scaler"] != first["scaler"]  # the scaler's state moved over the second epoch
    else:
        assert not a["scaler"] and not b["scaler"]  # bf16 needs no scaler
